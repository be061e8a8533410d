//! Instants and ranges: parsing the time formats sources use, and half-open time ranges.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Why a time could not be parsed or a range built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// The text matched none of the accepted layouts.
    #[error("{0:?} is not a time: use RFC 3339, 'yyyy-MM-dd HH:mm[:ss]', epoch seconds or epoch milliseconds")]
    Unrecognised(String),
    /// The text had the layout but an impossible field (month 13, 25 o'clock).
    #[error("{0:?} has an impossible date or time")]
    Impossible(String),
    /// A local time skipped by a daylight-saving change.
    #[error("{time} does not exist in {zone} (skipped by a daylight-saving change)")]
    NonexistentLocal {
        /// The local time.
        time: String,
        /// The zone.
        zone: String,
    },
    /// An epoch number too large or small to be a time.
    #[error("{0} is out of range for epoch {1}")]
    EpochOutOfRange(i64, &'static str),
    /// A date that is not `yyyy-MM-dd`.
    #[error("{0:?} is not a date: use yyyy-MM-dd")]
    BadDate(String),
    /// An unknown IANA zone name.
    #[error("{0:?} is not an IANA time zone name (such as Europe/London or UTC)")]
    UnknownZone(String),
    /// A range that ends before or where it starts.
    #[error("the range is empty or reversed: {from} is not before {to}")]
    EmptyRange {
        /// The start.
        from: String,
        /// The end.
        to: String,
    },
}

/// Parses an IANA zone name.
pub fn parse_zone(name: &str) -> Result<Tz, TimeError> {
    Tz::from_str(name.trim()).map_err(|_| TimeError::UnknownZone(name.to_owned()))
}

/// How to read a time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// Recognise the layout from the text: digits only are epoch seconds, or epoch milliseconds
    /// from 12 digits on (seconds of that size are past the year 5000); text with an offset or `Z`
    /// is RFC 3339; anything else is local `yyyy-MM-dd HH:mm[:ss]` in the given zone.
    #[default]
    Auto,
    /// RFC 3339 / ISO 8601 with an offset.
    Rfc3339,
    /// `yyyy-MM-dd HH:mm[:ss[.fff]]` (or with `T`) in the given zone.
    Local,
    /// Whole or fractional seconds since the Unix epoch.
    EpochSeconds,
    /// Milliseconds since the Unix epoch.
    EpochMillis,
}

impl FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "rfc3339" | "iso8601" => Ok(Self::Rfc3339),
            "local" => Ok(Self::Local),
            "epoch" | "epoch-s" | "epoch-seconds" | "unix" => Ok(Self::EpochSeconds),
            "epoch-ms" | "epoch-millis" | "unix-ms" => Ok(Self::EpochMillis),
            other => Err(format!(
                "unknown time format {other:?}: use auto, rfc3339, local, epoch-s or epoch-ms"
            )),
        }
    }
}

/// Parses one instant according to `format`, reading zone-less local times in `zone`.
pub fn parse_instant(text: &str, format: TimeFormat, zone: Tz) -> Result<DateTime<Utc>, TimeError> {
    let s = text.trim();
    match format {
        TimeFormat::EpochSeconds => parse_epoch_seconds(s),
        TimeFormat::EpochMillis => parse_epoch_millis(s),
        TimeFormat::Rfc3339 => parse_rfc3339(s),
        TimeFormat::Local => parse_local(s, zone),
        TimeFormat::Auto => {
            let b = s.as_bytes();
            if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
                if b.len() >= 12 {
                    parse_epoch_millis(s)
                } else {
                    parse_epoch_seconds(s)
                }
            } else if b.first() == Some(&b'-') || (b.contains(&b'.') && !b.contains(&b'-')) {
                parse_epoch_seconds(s)
            } else if has_offset(b) {
                parse_rfc3339(s)
            } else {
                parse_local(s, zone)
            }
        }
    }
}

/// Whether an ISO-like text ends in `Z` or a `+hh:mm`/`-hh:mm` offset after the time part.
fn has_offset(b: &[u8]) -> bool {
    if matches!(b.last(), Some(b'Z' | b'z')) {
        return true;
    }
    // An offset sign after position 10 (past the date's own dashes).
    b.len() > 16 && b[11..].iter().any(|&c| c == b'+' || c == b'-')
}

fn parse_epoch_seconds(s: &str) -> Result<DateTime<Utc>, TimeError> {
    if let Ok(secs) = s.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0).ok_or(TimeError::EpochOutOfRange(secs, "seconds"));
    }
    let f: f64 = s
        .parse()
        .map_err(|_| TimeError::Unrecognised(s.to_owned()))?;
    if !f.is_finite() || f.abs() > 1e13 {
        return Err(TimeError::Unrecognised(s.to_owned()));
    }
    let millis = (f * 1000.0).round() as i64;
    DateTime::from_timestamp_millis(millis).ok_or(TimeError::EpochOutOfRange(millis, "ms"))
}

fn parse_epoch_millis(s: &str) -> Result<DateTime<Utc>, TimeError> {
    let ms: i64 = s
        .parse()
        .map_err(|_| TimeError::Unrecognised(s.to_owned()))?;
    DateTime::from_timestamp_millis(ms).ok_or(TimeError::EpochOutOfRange(ms, "milliseconds"))
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, TimeError> {
    if let Some((naive, rest)) = parse_naive_prefix(s.as_bytes()) {
        let naive = naive.map_err(|()| TimeError::Impossible(s.to_owned()))?;
        let offset_secs = match rest {
            b"Z" | b"z" => Some(0),
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = two_digits(*h1, *h2);
                let m = two_digits(*m1, *m2);
                match (h, m) {
                    (Some(h), Some(m)) if h < 24 && m < 60 => {
                        let secs = i64::from(h * 3600 + m * 60);
                        Some(if *sign == b'-' { -secs } else { secs })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(off) = offset_secs {
            return Ok(naive.and_utc() - chrono::Duration::seconds(off));
        }
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| TimeError::Unrecognised(s.to_owned()))
}

fn parse_local(s: &str, zone: Tz) -> Result<DateTime<Utc>, TimeError> {
    match parse_naive_prefix(s.as_bytes()) {
        Some((Ok(naive), [])) => local_to_utc(naive, zone),
        Some((Err(()), [])) => Err(TimeError::Impossible(s.to_owned())),
        _ => Err(TimeError::Unrecognised(s.to_owned())),
    }
}

/// Resolves a local time in a zone: the earlier of two on a fall-back night, an error in a gap.
pub fn local_to_utc(naive: NaiveDateTime, zone: Tz) -> Result<DateTime<Utc>, TimeError> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(TimeError::NonexistentLocal {
            time: naive.to_string(),
            zone: zone.name().to_owned(),
        }),
    }
}

fn two_digits(a: u8, b: u8) -> Option<u32> {
    if a.is_ascii_digit() && b.is_ascii_digit() {
        Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    } else {
        None
    }
}

/// Parses `yyyy-MM-dd[( |T)HH:mm[:ss[.f+]]]` at the start of `b`, returning the rest. The outer
/// `None` means the layout did not match; the inner `Err` means it matched with impossible values.
#[allow(clippy::type_complexity)] // reason: a private parser's two-level result reads clearest here
fn parse_naive_prefix(b: &[u8]) -> Option<(Result<NaiveDateTime, ()>, &[u8])> {
    let date = parse_date_bytes(b.get(..10)?)?;
    let rest = &b[10..];
    let Ok(date) = date else {
        return Some((Err(()), &[]));
    };
    if rest.is_empty() {
        return Some((Ok(date.and_time(NaiveTime::MIN)), rest));
    }
    if !matches!(rest[0], b' ' | b'T' | b't') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let hour = two_digits(rest[1], rest[2])?;
    let minute = two_digits(rest[4], rest[5])?;
    let mut rest = &rest[6..];
    let mut second = 0;
    let mut nanos = 0u32;
    if rest.first() == Some(&b':') {
        second = two_digits(*rest.get(1)?, *rest.get(2)?)?;
        rest = &rest[3..];
        if matches!(rest.first(), Some(b'.' | b',')) {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let mut scale = 100_000_000u32;
            for &d in &rest[1..1 + digits.min(9)] {
                nanos += u32::from(d - b'0') * scale;
                scale /= 10;
            }
            rest = &rest[1 + digits..];
        }
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos);
    Some((time.map(|t| date.and_time(t)).ok_or(()), rest))
}

fn parse_date_bytes(b: &[u8]) -> Option<Result<NaiveDate, ()>> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = two_digits(b[0], b[1])? * 100 + two_digits(b[2], b[3])?;
    let month = two_digits(b[5], b[6])?;
    let day = two_digits(b[8], b[9])?;
    Some(NaiveDate::from_ymd_opt(year as i32, month, day).ok_or(()))
}

/// Parses a `yyyy-MM-dd` date.
pub fn parse_date(text: &str) -> Result<NaiveDate, TimeError> {
    match parse_date_bytes(text.trim().as_bytes()) {
        Some(Ok(d)) => Ok(d),
        _ => Err(TimeError::BadDate(text.to_owned())),
    }
}

/// A half-open range of instants, `[from, to)`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl TimeRange {
    /// Builds a range; `from` must be before `to`.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, TimeError> {
        if from >= to {
            return Err(TimeError::EmptyRange {
                from: from.to_rfc3339(),
                to: to.to_rfc3339(),
            });
        }
        Ok(Self { from, to })
    }

    /// The local days `first..=last` in `zone`, from the first day's midnight to the midnight
    /// after the last day (23 or 25 hours on daylight-saving days).
    pub fn local_days(first: NaiveDate, last: NaiveDate, zone: Tz) -> Result<Self, TimeError> {
        let next = last.succ_opt().ok_or(TimeError::BadDate(last.to_string()))?;
        Self::new(start_of_day(first, zone), start_of_day(next, zone))
    }

    /// The first instant in the range.
    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }
    /// The first instant after the range.
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }
    /// Whether an instant is in the range.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }
    /// The range's length.
    pub fn duration(&self) -> chrono::Duration {
        self.to - self.from
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.from.to_rfc3339(), self.to.to_rfc3339())
    }
}

/// The first instant of a local day. Where a zone skips midnight (a DST change at 00:00, as in
/// some American zones), the day starts at the first local time that exists.
pub fn start_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let mut naive = date.and_time(NaiveTime::MIN);
    // Gaps are at most a few hours; step in 15-minute increments until a local time exists.
    for _ in 0..16 {
        if let Ok(t) = local_to_utc(naive, zone) {
            return t;
        }
        naive += chrono::Duration::minutes(15);
    }
    naive.and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn auto_recognises_every_layout() {
        let z = Tz::Europe__London;
        let f = TimeFormat::Auto;
        let want = utc("2024-07-01T11:30:00Z");
        assert_eq!(parse_instant("2024-07-01T11:30:00Z", f, z).unwrap(), want);
        assert_eq!(parse_instant("2024-07-01T13:30:00+02:00", f, z).unwrap(), want);
        assert_eq!(parse_instant("2024-07-01T11:30:00.000Z", f, z).unwrap(), want);
        assert_eq!(parse_instant("1719833400", f, z).unwrap(), want);
        assert_eq!(parse_instant("1719833400000", f, z).unwrap(), want);
        // London is on BST (+01:00) in July.
        assert_eq!(parse_instant("2024-07-01 12:30", f, z).unwrap(), want);
        assert_eq!(parse_instant("2024-07-01 12:30:00", f, z).unwrap(), want);
        assert_eq!(
            parse_instant("1719833400.5", f, z).unwrap(),
            want + chrono::Duration::milliseconds(500)
        );
    }

    #[test]
    fn bad_times_are_explained() {
        let z = Tz::UTC;
        let f = TimeFormat::Auto;
        assert!(matches!(
            parse_instant("yesterday", f, z),
            Err(TimeError::Unrecognised(_))
        ));
        assert!(matches!(
            parse_instant("2024-13-01 00:00", f, z),
            Err(TimeError::Impossible(_))
        ));
        assert!(matches!(
            parse_instant("2024-01-01 24:00", f, z),
            Err(TimeError::Impossible(_))
        ));
        // 01:30 on the spring-forward night does not exist in London.
        assert!(matches!(
            parse_instant("2024-03-31 01:30", f, Tz::Europe__London),
            Err(TimeError::NonexistentLocal { .. })
        ));
    }

    #[test]
    fn local_days_span_23_and_25_hours_across_dst() {
        let z = Tz::Europe__London;
        let spring = parse_date("2024-03-31").unwrap();
        let autumn = parse_date("2024-10-27").unwrap();
        assert_eq!(
            TimeRange::local_days(spring, spring, z).unwrap().duration(),
            chrono::Duration::hours(23)
        );
        assert_eq!(
            TimeRange::local_days(autumn, autumn, z).unwrap().duration(),
            chrono::Duration::hours(25)
        );
    }

    #[test]
    fn ranges_must_not_be_empty() {
        let t = utc("2024-01-01T00:00:00Z");
        assert!(TimeRange::new(t, t).is_err());
        assert!(TimeRange::new(t + chrono::Duration::seconds(1), t).is_err());
    }

    #[test]
    fn a_zone_that_skips_midnight_starts_its_day_at_one() {
        // Chile's clocks jumped from 2019-09-08 00:00 to 01:00.
        let start = start_of_day(parse_date("2019-09-08").unwrap(), Tz::America__Santiago);
        assert_eq!(start, utc("2019-09-08T04:00:00Z"));
    }
}
