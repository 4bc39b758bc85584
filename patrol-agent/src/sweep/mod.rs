//! The sans-IO sweep core (being written).
