//! Small text formatting for reports: thousands separators, durations and
//! calendar dates from unix milliseconds (through `jiff`): in a given time
//! zone for people, in UTC for file names; and the escapers of the two
//! report templates, [`Terminal`] and [`PrintableHtml`].

use jiff::tz::TimeZone;
use patrol_checks::printable::one_line;

/// askama's escaper for the plain-text report: `report/askama.toml` names
/// it for `.txt` templates, so every value `templates/report.txt` prints
/// (node names, check ids, observed values, messages, remediation from
/// nodes) goes through [`one_line`] the way HTML values go through HTML
/// escaping. The text report is printed by `patrol report` and read in
/// mail clients and terminals.
#[derive(Debug, Clone, Copy)]
pub struct Terminal;

impl askama::filters::Escaper for Terminal {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, text: &str) -> std::fmt::Result {
        dest.write_str(&one_line(text))
    }
}

/// askama's escaper for the HTML report (`askama.toml` names it for
/// `.html` templates): askama's own HTML escaping, after [`one_line`], so
/// a control character or a bidi override from a node shows as a visible
/// escape in the mail too instead of reordering what the reader sees.
#[derive(Debug, Clone, Copy)]
pub struct PrintableHtml;

impl askama::filters::Escaper for PrintableHtml {
    fn write_escaped_str<W: std::fmt::Write>(&self, dest: W, text: &str) -> std::fmt::Result {
        askama::filters::Html.write_escaped_str(dest, &one_line(text))
    }
}

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

/// A unix time in milliseconds as a civil time in `zone` (`jiff` does the
/// calendar). Out-of-range values (past year 9999) clamp to jiff's maximum.
fn zoned(unix_ms: u64, zone: &TimeZone) -> jiff::Zoned {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_zoned(zone.clone())
}

/// `2026-11-22`, the date in `zone`.
pub fn date(unix_ms: u64, zone: &TimeZone) -> String {
    zoned(unix_ms, zone).strftime("%Y-%m-%d").to_string()
}

/// `2026-11-22 03:00 UTC`, `2026-11-22 04:00 CET`: the time in `zone`
/// with the zone's abbreviation.
pub fn date_time(unix_ms: u64, zone: &TimeZone) -> String {
    zoned(unix_ms, zone)
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `20261122-030000` (always UTC) for directory and file names, so that
/// they sort by time whatever the zone.
pub fn stamp(unix_ms: u64) -> String {
    zoned(unix_ms, &TimeZone::UTC)
        .strftime("%Y%m%d-%H%M%S")
        .to_string()
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
        let utc = TimeZone::UTC;
        assert_eq!(date(0, &utc), "1970-01-01");
        // 2026-11-22T03:00:00Z
        assert_eq!(date_time(1_795_316_400_000, &utc), "2026-11-22 03:00 UTC");
        assert_eq!(stamp(1_795_316_400_000), "20261122-030000");
        assert_eq!(date(951_782_400_000, &utc), "2000-02-29");
    }

    #[test]
    fn times_for_people_follow_the_zone_and_file_stamps_stay_utc() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        // 2026-11-22T03:00:00Z: 04:00 in Paris (CET), 12:00 in Tokyo.
        assert_eq!(date_time(1_795_316_400_000, &paris), "2026-11-22 04:00 CET");
        assert_eq!(date_time(1_795_316_400_000, &tokyo), "2026-11-22 12:00 JST");
        // 2026-11-21T23:30:00Z is already the 22nd in Tokyo.
        assert_eq!(date(1_795_303_800_000, &tokyo), "2026-11-22");
        assert_eq!(date(1_795_303_800_000, &TimeZone::UTC), "2026-11-21");
        // Summer time: 2026-07-01T12:00:00Z is 14:00 CEST.
        assert_eq!(
            date_time(1_782_907_200_000, &paris),
            "2026-07-01 14:00 CEST"
        );
        assert_eq!(stamp(1_795_303_800_000), "20261121-233000");
    }
}
