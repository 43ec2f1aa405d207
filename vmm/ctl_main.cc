// flotilla-vmmctl: controls a running flotilla-vmm (see vmm/ctl.h).
#include "vmm/ctl.h"

int main(int argc, char** argv) {
  return flotilla::vmm::runVmmctl(argc, argv);
}
