// flotilla-agent-sim: many simulated agents in one process (see sim_main.h).
#include "controller/sim/sim_main.h"

int main(int argc, char** argv) {
  return flotilla::sim::runSimulatorMain(argc, argv);
}
