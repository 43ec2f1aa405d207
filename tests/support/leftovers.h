// Leftovers: what a test made that is still there after it cleaned up. A test names what it
// made (it knows the names: they carry its pid or its temporary directory) and checks, after
// its objects are gone, that none of it is left on the machine. Only those names are looked
// at, so tests that run at the same time do not disturb the check.
#pragma once

#include <string>
#include <vector>

namespace flotilla::testing {

struct Traces {
  std::vector<std::string> namespaces;  // network namespaces (ip netns names)
  std::vector<std::string> links;       // network interfaces in this namespace
  std::vector<std::string> paths;       // files and directories
  std::vector<std::string> cgroups;     // paths under /sys/fs/cgroup
  // A process whose command line contains one of these (e.g. the test's temporary
  // directory, which every daemon it starts is given) is left over, unless it is a zombie.
  std::vector<std::string> command_lines;
};

// One line per thing still there ("process 1234 (flotilla-vmm --api-socket /tmp/...)"); empty
// when nothing is.
std::vector<std::string> findLeftovers(const Traces& traces);

}  // namespace flotilla::testing
