//! Sealed envelope (being written).
