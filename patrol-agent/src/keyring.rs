//! Cluster keyring (being written).
