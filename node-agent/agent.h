// flotilla-agent: the per-host daemon (docs/agent.md). It serves AgentService over TCP (TLS
// from the cluster CA, or plaintext when configured) and on a local unix socket, keeps the
// host's record in etcd bound to its lease, fences itself when that lease cannot be renewed,
// and runs the host's VMs, which keep running when the agent stops or is upgraded.
#pragma once

namespace flotilla::agent {

// main(): exit status 0 after SIGTERM/SIGINT, 1 when a part cannot start, 2 for a bad
// command line or configuration.
int runAgent(int argc, const char* const* argv);

}  // namespace flotilla::agent
