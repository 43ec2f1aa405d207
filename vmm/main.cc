// flotilla-vmm: one virtual machine on KVM (see vmm/run.h).
#include "vmm/run.h"

int main(int argc, char** argv) {
  return flotilla::vmm::runVmm(argc, argv);
}
