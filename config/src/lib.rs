//! Patrol configuration: the TOML model, defaults and validation.
