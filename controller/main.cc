// flotilla-controller: one replica of the cluster controller (docs/controller.md).
#include "controller/controller.h"

int main(int argc, char** argv) {
  return flotilla::controller::runController(argc, argv);
}
