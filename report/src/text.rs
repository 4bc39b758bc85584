//! Small text formatting for reports: thousands separators, durations and
//! calendar dates from unix milliseconds (UTC, through `jiff`).

/// `9997` -> `9,997`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `1234` ms -> `1.23 s`, `87` -> `87 ms`.
pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

/// Optional milliseconds, `-` when unknown.
pub fn opt_millis(ms: Option<u64>) -> String {
    ms.map(millis).unwrap_or_else(|| "-".to_string())
}

/// A unix time in milliseconds as a UTC civil time (`jiff` does the
/// calendar). Out-of-range values (past year 9999) clamp to jiff's maximum.
fn utc(unix_ms: u64) -> jiff::Zoned {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_zoned(jiff::tz::TimeZone::UTC)
}

/// `2026-11-22` (UTC).
pub fn date(unix_ms: u64) -> String {
    utc(unix_ms).strftime("%Y-%m-%d").to_string()
}

/// `2026-11-22 03:00 UTC`.
pub fn date_time(unix_ms: u64) -> String {
    utc(unix_ms).strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// `20261122-030000` (UTC) for directory and file names.
pub fn stamp(unix_ms: u64) -> String {
    utc(unix_ms).strftime("%Y%m%d-%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(9_997), "9,997");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn dates_from_unix_ms() {
        assert_eq!(date(0), "1970-01-01");
        // 2026-11-22T03:00:00Z
        assert_eq!(date_time(1_795_316_400_000), "2026-11-22 03:00 UTC");
        assert_eq!(stamp(1_795_316_400_000), "20261122-030000");
        assert_eq!(date(951_782_400_000), "2000-02-29");
    }
}
