//! Small text formatting for reports: thousands separators, durations and
//! calendar dates from unix milliseconds (UTC, no time-zone database).

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

/// Year, month, day of a unix time in milliseconds (UTC).
fn civil(unix_ms: u64) -> (i64, u32, u32, u64) {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem)
}

/// `2026-11-22` (UTC).
pub fn date(unix_ms: u64) -> String {
    let (y, m, d, _) = civil(unix_ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-22 03:00 UTC`.
pub fn date_time(unix_ms: u64) -> String {
    let (y, m, d, rem) = civil(unix_ms);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// `20261122-030000` for directory and file names.
pub fn stamp(unix_ms: u64) -> String {
    let (y, m, d, rem) = civil(unix_ms);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
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
