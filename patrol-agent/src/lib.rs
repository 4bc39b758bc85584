//! The Patrol agent library.
