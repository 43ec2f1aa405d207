// flotilla-agent: the per-host daemon (see node-agent/agent.h).
#include "node-agent/agent.h"

int main(int argc, char** argv) {
  return flotilla::agent::runAgent(argc, argv);
}
