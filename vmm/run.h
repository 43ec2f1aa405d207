// The flotilla-vmm program: parse options, build or restore the VM, serve the API, run until
// the VM ends, exit with a status that says how (exit_codes.h).
#pragma once

namespace flotilla::vmm {

int runVmm(int argc, const char* const* argv);

}  // namespace flotilla::vmm
