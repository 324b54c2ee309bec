//! The state of a cluster from its conditions.
