// clusterctl: the command line of a Flotilla cluster (see cli/clusterctl.h). main() only turns
// SIGINT/SIGTERM into an Interrupt: the first stops what clusterctl waits for, the second ends
// it at once.
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "cli/clusterctl.h"
#include "cli/exit_codes.h"

int main(int argc, char** argv) {
  // Blocked before any thread starts, so that every thread (gRPC's too) inherits the mask and
  // the signals reach only the thread below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // clusterctl get vms | head

  flotilla::cli::Interrupt interrupt;
  std::thread([&interrupt, signals] {
    int received = 0;
    int count = 0;
    while (sigwait(&signals, &received) == 0) {
      if (++count > 1) _exit(flotilla::cli::kExitInterrupted);
      interrupt.trigger();
    }
  }).detach();

  flotilla::cli::ClusterctlEnvironment environment;
  environment.out_is_tty = ::isatty(STDOUT_FILENO) == 1;
  environment.interrupt = &interrupt;
  std::vector<std::string> args(argv + 1, argv + argc);
  const int status = flotilla::cli::runClusterctl(args, std::cout, std::cerr, environment);
  std::cout.flush();
  // _exit: the signal thread still waits in sigwait and must not be joined.
  std::cerr.flush();
  _exit(status);
}
