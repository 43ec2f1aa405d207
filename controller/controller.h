// runController: flotilla-controller's main (CLI11 flags, configuration, signals), serving
// ClusterService and running the leader loop.
#pragma once

namespace flotilla::controller {

int runController(int argc, char** argv);

}  // namespace flotilla::controller
