// flotilla-agent-sim's command line: --etcd, --hosts, --listen, --prefix, host shapes, report
// interval, lease TTL, migration duration (docs/simulator.md). It prints "listening on
// HOST:PORT" once every host is registered in etcd, and on SIGTERM/SIGINT revokes every
// host's lease (so that their status keys leave etcd at once) and exits 0.
#pragma once

namespace flotilla::sim {

// Exit codes: 0 after a signal, 1 when it cannot start (etcd unreachable, address in use), 2 on
// bad usage.
int runSimulatorMain(int argc, const char* const* argv);

}  // namespace flotilla::sim
