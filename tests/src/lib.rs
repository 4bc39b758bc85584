//! Patrol integration-test support: the cluster harness and the simulator.
