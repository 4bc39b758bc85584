//! The agent's own enrollment and renewal (see the daemon).
