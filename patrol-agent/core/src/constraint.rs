//! [`SettingsError`]: a setting outside the constraint its doc states, and
//! the few checks (`not zero`, `at least`, `at most`) that every settings
//! struct's `validate` is written with, so each constraint is checked once
//! and reported the same way.

use std::fmt::Debug;

/// A setting breaks its documented constraint. Nothing was started: the
/// settings are checked before a node, transport or daemon is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{field}` {rule} (it is {got})")]
pub struct SettingsError {
    /// The field, as a path from the outermost settings struct, e.g.
    /// `sweep.budget_floor`.
    pub field: &'static str,
    /// The constraint it breaks, as its doc states it, e.g. `must not be
    /// zero`.
    pub rule: String,
    /// The value it has.
    pub got: String,
}

impl SettingsError {
    pub fn new(field: &'static str, rule: impl Into<String>, got: impl Debug) -> SettingsError {
        SettingsError {
            field,
            rule: rule.into(),
            got: format!("{got:?}"),
        }
    }
}

/// `value` must not be zero (the type's default).
pub fn not_zero<T: Default + PartialEq + Debug>(
    field: &'static str,
    value: T,
) -> Result<(), SettingsError> {
    if value == T::default() {
        return Err(SettingsError::new(field, "must not be zero", value));
    }
    Ok(())
}

/// `value` must be at least `min`.
pub fn at_least<T: PartialOrd + Debug>(
    field: &'static str,
    value: T,
    min: T,
) -> Result<(), SettingsError> {
    if value < min {
        return Err(SettingsError::new(
            field,
            format!("must be at least {min:?}"),
            value,
        ));
    }
    Ok(())
}

/// `value` must be at most `max`.
pub fn at_most<T: PartialOrd + Debug>(
    field: &'static str,
    value: T,
    max: T,
) -> Result<(), SettingsError> {
    if value > max {
        return Err(SettingsError::new(
            field,
            format!("must be at most {max:?}"),
            value,
        ));
    }
    Ok(())
}

/// `value` must not exceed the setting `other`, whose value is `limit`.
pub fn not_above<T: PartialOrd + Debug>(
    field: &'static str,
    value: T,
    other: &str,
    limit: T,
) -> Result<(), SettingsError> {
    if value > limit {
        return Err(SettingsError::new(
            field,
            format!("must not exceed `{other}` ({limit:?})"),
            value,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_check_names_the_field_the_rule_and_the_value() {
        assert_eq!(
            not_zero("sweep.tick", Duration::ZERO)
                .unwrap_err()
                .to_string(),
            "setting `sweep.tick` must not be zero (it is 0ns)"
        );
        assert_eq!(
            at_least("max_datagram", 100usize, 512)
                .unwrap_err()
                .to_string(),
            "setting `max_datagram` must be at least 512 (it is 100)"
        );
        assert_eq!(
            not_above("sweep.max_late_partial_bytes", 9usize, "sweep.max_partial_bytes", 8)
                .unwrap_err()
                .to_string(),
            "setting `sweep.max_late_partial_bytes` must not exceed `sweep.max_partial_bytes` (8) (it is 9)"
        );
        assert_eq!(
            at_most("sweep.backstop_deadline_percent", 101u32, 100)
                .unwrap_err()
                .to_string(),
            "setting `sweep.backstop_deadline_percent` must be at most 100 (it is 101)"
        );
        assert!(not_zero("x", 1u32).is_ok());
        assert!(at_least("x", 512usize, 512).is_ok());
        assert!(at_most("x", 8usize, 8).is_ok());
        assert!(not_above("x", 8usize, "y", 8).is_ok());
    }
}
