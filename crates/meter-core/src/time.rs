//! Instants and ranges: parsing the time formats sources use, and half-open time ranges.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::choice::UnknownName;

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
    /// A local time a daylight-saving change repeats, where the file's order does not say
    /// which of the two it is.
    #[error(
        "{time} occurs twice in {zone} (the clocks went back) and the rows' order does not say \
         which: write it with an offset"
    )]
    AmbiguousLocal {
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
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Self::Auto,
            "rfc3339" | "iso8601" => Self::Rfc3339,
            "local" => Self::Local,
            "epoch" | "epoch-s" | "epoch-seconds" | "unix" => Self::EpochSeconds,
            "epoch-ms" | "epoch-millis" | "unix-ms" => Self::EpochMillis,
            _ => {
                let expected = "auto, rfc3339, local, epoch-s or epoch-ms";
                return Err(UnknownName::new("time format", s, expected));
            }
        })
    }
}

/// Parses one instant according to `format`, reading zone-less local times in `zone`.
pub fn parse_instant(text: &str, format: TimeFormat, zone: Tz) -> Result<DateTime<Utc>, TimeError> {
    parse_instant_bytes(text.as_bytes(), format, zone)
}

/// [`parse_instant`] on bytes, so decoders need not check UTF-8 first. The common layouts are
/// parsed by hand without allocating; only unusual text falls back to chrono's parser.
pub fn parse_instant_bytes(
    bytes: &[u8],
    format: TimeFormat,
    zone: Tz,
) -> Result<DateTime<Utc>, TimeError> {
    let b = bytes.trim_ascii();
    match format {
        TimeFormat::EpochSeconds => parse_epoch_seconds(b),
        TimeFormat::EpochMillis => parse_epoch_millis(b),
        TimeFormat::Rfc3339 => parse_rfc3339(b),
        TimeFormat::Local => parse_local(b, zone),
        TimeFormat::Auto => {
            if b.len() >= 10 && b[4] == b'-' {
                // One pass over the civil part; what follows it decides the layout.
                match parse_civil_prefix(b) {
                    Some((Ok(civil), [])) => civil_in_zone(civil, zone, b),
                    Some((Ok(civil), rest)) => match parse_offset(rest) {
                        Some(off) => civil_with_offset(civil, off),
                        None => parse_rfc3339_slow(b),
                    },
                    Some((Err(()), _)) => Err(TimeError::Impossible(text_of(b))),
                    None => parse_rfc3339_slow(b),
                }
            } else if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
                if b.len() >= 12 {
                    parse_epoch_millis(b)
                } else {
                    parse_epoch_seconds(b)
                }
            } else {
                parse_epoch_seconds(b)
            }
        }
    }
}

/// `Z` or `+hh:mm` / `-hh:mm`, as seconds east of UTC.
fn parse_offset(rest: &[u8]) -> Option<i64> {
    match rest {
        b"Z" | b"z" => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            match (two_digits(*h1, *h2), two_digits(*m1, *m2)) {
                (Some(h), Some(m)) if h < 24 && m < 60 => {
                    let secs = i64::from(h * 3600 + m * 60);
                    Some(if *sign == b'-' { -secs } else { secs })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn civil_with_offset(civil: Civil, offset_secs: i64) -> Result<DateTime<Utc>, TimeError> {
    let secs = civil.epoch_seconds() - offset_secs;
    DateTime::from_timestamp(secs, civil.nanos).ok_or(TimeError::EpochOutOfRange(secs, "seconds"))
}

fn civil_in_zone(civil: Civil, zone: Tz, text: &[u8]) -> Result<DateTime<Utc>, TimeError> {
    if zone == Tz::UTC {
        return civil_with_offset(civil, 0);
    }
    let naive = civil
        .naive()
        .ok_or_else(|| TimeError::Impossible(text_of(text)))?;
    local_to_utc(naive, zone)
}

/// Parses a column of instants, remembering the last calendar date seen: rows of one file
/// usually share a date (48 half-hours a day), so most rows only parse a time of day. Results
/// are identical to [`parse_instant_bytes`].
///
/// A local time of the hour a fall-back night repeats is read in row order, per series: the
/// first occurrence until the series goes back in time within that hour, the second after it
/// (as pandas' `ambiguous="infer"` does); a series that goes back twice is refused with
/// [`TimeError::AmbiguousLocal`].
#[derive(Debug, Clone)]
pub struct InstantParser {
    format: TimeFormat,
    zone: Tz,
    last_date: [u8; 10],
    last_day: Option<NaiveDate>,
    /// The last cell parsed and its instant: a file in time order repeats each time for every
    /// meter read at it.
    last_cell: Vec<u8>,
    last_instant: Option<DateTime<Utc>>,
    /// Per series, where it is in a repeated hour: only rows of such hours touch this.
    repeats: std::collections::HashMap<Vec<u8>, Repeat>,
}

/// A series' walk through a repeated hour: the last local time seen, and whether it went back.
#[derive(Debug, Clone, Copy)]
struct Repeat {
    last: NaiveDateTime,
    second: bool,
}

impl InstantParser {
    /// A parser for one column.
    pub fn new(format: TimeFormat, zone: Tz) -> Self {
        Self {
            format,
            zone,
            last_date: [0; 10],
            last_day: None,
            last_cell: Vec::new(),
            last_instant: None,
            repeats: std::collections::HashMap::new(),
        }
    }

    /// Parses one cell of the series `series` (the meter cell, say), resolving a repeated local
    /// hour by the series' row order.
    pub fn parse_in_series(
        &mut self,
        bytes: &[u8],
        series: &[u8],
    ) -> Result<DateTime<Utc>, TimeError> {
        let t = self.parse(bytes)?;
        if self.zone == Tz::UTC || !zone_less(bytes.trim_ascii(), self.format) {
            return Ok(t);
        }
        let naive = t.with_timezone(&self.zone).naive_local();
        let LocalResult::Ambiguous(first, second) = self.zone.from_local_datetime(&naive) else {
            return Ok(t);
        };
        let (first, second) = (first.with_timezone(&Utc), second.with_timezone(&Utc));
        let state = self.repeats.get(series).copied();
        let next = match state {
            Some(r) if r.last.date() == naive.date() && (naive - r.last).num_hours().abs() < 2 => {
                if !r.second && naive > r.last {
                    Repeat {
                        last: naive,
                        second: false,
                    }
                } else if !r.second || naive >= r.last {
                    Repeat {
                        last: naive,
                        second: true,
                    }
                } else {
                    return Err(TimeError::AmbiguousLocal {
                        time: naive.to_string(),
                        zone: self.zone.name().to_owned(),
                    });
                }
            }
            _ => Repeat {
                last: naive,
                second: false,
            },
        };
        self.repeats.insert(series.to_vec(), next);
        Ok(if next.second { second } else { first })
    }

    /// Parses one cell.
    pub fn parse(&mut self, bytes: &[u8]) -> Result<DateTime<Utc>, TimeError> {
        let b = bytes.trim_ascii();
        if let Some(t) = self.last_instant.filter(|_| self.last_cell == b) {
            return Ok(t);
        }
        let t = self.parse_new(b)?;
        self.last_cell.clear();
        self.last_cell.extend_from_slice(b);
        self.last_instant = Some(t);
        Ok(t)
    }

    /// Parses a trimmed cell unlike the last one.
    fn parse_new(&mut self, b: &[u8]) -> Result<DateTime<Utc>, TimeError> {
        let cacheable = matches!(self.format, TimeFormat::Auto | TimeFormat::Rfc3339)
            || (self.format == TimeFormat::Local && self.zone == Tz::UTC);
        if cacheable && b.len() > 10 {
            // Two integer compares rather than a memcmp call: this runs once per row.
            let same = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                == u64::from_le_bytes([
                    self.last_date[0],
                    self.last_date[1],
                    self.last_date[2],
                    self.last_date[3],
                    self.last_date[4],
                    self.last_date[5],
                    self.last_date[6],
                    self.last_date[7],
                ])
                && b[8..10] == self.last_date[8..10];
            if let Some(day) = self.last_day.filter(|_| same) {
                if let Some(t) = self.time_on(day, &b[10..]) {
                    return Ok(t);
                }
            }
        }
        let t = parse_instant_bytes(b, self.format, self.zone)?;
        if cacheable && b.len() > 10 {
            if let Some((Ok(civil), _)) = parse_civil_prefix(&b[..10]) {
                self.last_date.copy_from_slice(&b[..10]);
                self.last_day = NaiveDate::from_ymd_opt(civil.year, civil.month, civil.day);
            }
        }
        Ok(t)
    }

    /// The instant of `rest` (` HH:mm[:ss[.f]]` plus an offset, or none in UTC) on `day`;
    /// `None` when `rest` is not in the fast layout (the full parser then decides).
    fn time_on(&self, day: NaiveDate, rest: &[u8]) -> Option<DateTime<Utc>> {
        let (h, m, sec, nanos, tail) = parse_time_of_day(rest)?;
        if h >= 24 || m >= 60 || sec >= 60 {
            return None;
        }
        let offset = match tail {
            [] if self.format == TimeFormat::Rfc3339 => return None,
            [] if self.zone != Tz::UTC => return None,
            [] => 0,
            _ if self.format == TimeFormat::Local => return None,
            _ => parse_offset(tail)?,
        };
        let time = NaiveTime::from_num_seconds_from_midnight_opt(h * 3600 + m * 60 + sec, nanos)?;
        let utc = day.and_time(time).and_utc();
        if offset == 0 {
            Some(utc)
        } else {
            utc.checked_sub_signed(chrono::Duration::seconds(offset))
        }
    }
}

/// Whether a cell read with `format` is a local time without an offset.
fn zone_less(b: &[u8], format: TimeFormat) -> bool {
    match format {
        TimeFormat::Local => true,
        TimeFormat::Auto => {
            b.len() >= 10
                && b[4] == b'-'
                && !matches!(b.last(), Some(b'Z' | b'z'))
                && !b[10..].iter().any(|c| matches!(c, b'+' | b'-'))
        }
        _ => false,
    }
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_epoch_seconds(b: &[u8]) -> Result<DateTime<Utc>, TimeError> {
    let s = std::str::from_utf8(b).map_err(|_| TimeError::Unrecognised(text_of(b)))?;
    if let Ok(secs) = s.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0)
            .ok_or(TimeError::EpochOutOfRange(secs, "seconds"));
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

fn parse_epoch_millis(b: &[u8]) -> Result<DateTime<Utc>, TimeError> {
    let ms: i64 = std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TimeError::Unrecognised(text_of(b)))?;
    DateTime::from_timestamp_millis(ms).ok_or(TimeError::EpochOutOfRange(ms, "milliseconds"))
}

fn parse_rfc3339(b: &[u8]) -> Result<DateTime<Utc>, TimeError> {
    match parse_civil_prefix(b) {
        Some((Err(()), _)) => Err(TimeError::Impossible(text_of(b))),
        Some((Ok(civil), rest)) => match parse_offset(rest) {
            Some(off) => civil_with_offset(civil, off),
            None => parse_rfc3339_slow(b),
        },
        None => parse_rfc3339_slow(b),
    }
}

/// chrono's full RFC 3339 parser, for what the fast path does not take.
fn parse_rfc3339_slow(b: &[u8]) -> Result<DateTime<Utc>, TimeError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| TimeError::Unrecognised(text_of(b)))
}

fn parse_local(b: &[u8], zone: Tz) -> Result<DateTime<Utc>, TimeError> {
    match parse_civil_prefix(b) {
        Some((Ok(civil), [])) => civil_in_zone(civil, zone, b),
        Some((Err(()), [])) => Err(TimeError::Impossible(text_of(b))),
        _ => Err(TimeError::Unrecognised(text_of(b))),
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

/// A validated calendar date and time of day, without a zone.
#[derive(Debug, Clone, Copy)]
struct Civil {
    year: i32,
    month: u32,
    day: u32,
    secs_of_day: u32,
    nanos: u32,
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl Civil {
    fn new(year: i32, month: u32, day: u32, h: u32, m: u32, s: u32, nanos: u32) -> Option<Self> {
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && h < 24
            && m < 60
            && s < 60;
        valid.then_some(Self {
            year,
            month,
            day,
            secs_of_day: h * 3600 + m * 60 + s,
            nanos,
        })
    }

    /// Seconds since the epoch, reading the civil time as UTC (days from civil, proleptic
    /// Gregorian calendar).
    fn epoch_seconds(&self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + i64::from(self.secs_of_day)
    }

    fn naive(&self) -> Option<NaiveDateTime> {
        let date = NaiveDate::from_ymd_opt(self.year, self.month, self.day)?;
        let time = NaiveTime::from_num_seconds_from_midnight_opt(self.secs_of_day, self.nanos)?;
        Some(date.and_time(time))
    }
}

/// Parses `yyyy-MM-dd[( |T)HH:mm[:ss[.f+]]]` at the start of `b`, returning the rest. The outer
/// `None` means the layout did not match; the inner `Err` means it matched with impossible values.
fn parse_civil_prefix(b: &[u8]) -> Option<(Result<Civil, ()>, &[u8])> {
    let d = b.get(..10)?;
    if d[4] != b'-' || d[7] != b'-' {
        return None;
    }
    let year = (two_digits(d[0], d[1])? * 100 + two_digits(d[2], d[3])?) as i32;
    let month = two_digits(d[5], d[6])?;
    let day = two_digits(d[8], d[9])?;
    let rest = &b[10..];
    if rest.is_empty() {
        return Some((Civil::new(year, month, day, 0, 0, 0, 0).ok_or(()), rest));
    }
    let (hour, minute, second, nanos, rest) = parse_time_of_day(rest)?;
    Some((
        Civil::new(year, month, day, hour, minute, second, nanos).ok_or(()),
        rest,
    ))
}

/// Parses `( |T)HH:mm[:ss[.f+]]` (unvalidated ranges) and returns what follows.
#[allow(clippy::type_complexity)] // reason: a private parser's tuple reads clearest here
fn parse_time_of_day(rest: &[u8]) -> Option<(u32, u32, u32, u32, &[u8])> {
    // The layout of nearly every machine-written time, `THH:MM:SS` then an offset, first.
    if let [b'T' | b' ', h1, h2, b':', m1, m2, b':', s1, s2, tail @ ..] = rest {
        if !matches!(tail.first(), Some(b'.' | b',')) {
            return Some((
                two_digits(*h1, *h2)?,
                two_digits(*m1, *m2)?,
                two_digits(*s1, *s2)?,
                0,
                tail,
            ));
        }
    }
    if rest.len() < 6 || !matches!(rest[0], b' ' | b'T' | b't') || rest[3] != b':' {
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
    Some((hour, minute, second, nanos, rest))
}

fn parse_date_bytes(b: &[u8]) -> Option<Result<NaiveDate, ()>> {
    if b.len() != 10 {
        return None;
    }
    match parse_civil_prefix(b)? {
        (Ok(c), []) => Some(NaiveDate::from_ymd_opt(c.year, c.month, c.day).ok_or(())),
        (Err(()), _) => Some(Err(())),
        _ => None,
    }
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
        let next = last
            .succ_opt()
            .ok_or(TimeError::BadDate(last.to_string()))?;
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
        assert_eq!(
            parse_instant("2024-07-01T13:30:00+02:00", f, z).unwrap(),
            want
        );
        assert_eq!(
            parse_instant("2024-07-01T11:30:00.000Z", f, z).unwrap(),
            want
        );
        assert_eq!(parse_instant("1719833400", f, z).unwrap(), want);
        assert_eq!(parse_instant("1719833400000", f, z).unwrap(), want);
        // London is on BST (+01:00) in July.
        assert_eq!(parse_instant("2024-07-01 12:30", f, z).unwrap(), want);
        assert_eq!(parse_instant("2024-07-01 12:30:00", f, z).unwrap(), want);
        assert_eq!(
            parse_instant("1719833400.5", f, z).unwrap(),
            want + chrono::Duration::milliseconds(500)
        );
        assert_eq!(
            parse_instant("2024-07-01T11:30:00,25Z", f, z).unwrap(),
            want + chrono::Duration::milliseconds(250)
        );
        assert_eq!(
            parse_instant(" 2024-07-01 11:30:00 ", f, Tz::UTC).unwrap(),
            want
        );
        // chrono's parser still takes what the fast path does not (lower-case separators).
        assert_eq!(parse_instant("2024-07-01t11:30:00z", f, z).unwrap(), want);
    }

    #[test]
    fn the_fast_path_agrees_with_chrono_over_four_centuries() {
        let mut t = utc("1970-01-01T00:00:00Z");
        let end = utc("2400-03-01T00:00:00Z");
        while t < end {
            let text = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            assert_eq!(
                parse_instant(&text, TimeFormat::Auto, Tz::UTC).unwrap(),
                t,
                "{text}"
            );
            let local = t.format("%Y-%m-%d %H:%M:%S").to_string();
            assert_eq!(
                parse_instant(&local, TimeFormat::Local, Tz::UTC).unwrap(),
                t - chrono::Duration::milliseconds(t.timestamp_subsec_millis().into()),
                "{local}"
            );
            t += chrono::Duration::seconds(86_400 * 13 + 3_671) + chrono::Duration::milliseconds(7);
        }
        assert!(matches!(
            parse_instant("2023-02-29T00:00:00Z", TimeFormat::Auto, Tz::UTC),
            Err(TimeError::Impossible(_))
        ));
        assert!(parse_instant("2024-02-29T00:00:00Z", TimeFormat::Auto, Tz::UTC).is_ok());
        assert!(matches!(
            parse_instant("1900-02-29", TimeFormat::Auto, Tz::UTC),
            Err(TimeError::Impossible(_))
        ));
    }

    #[test]
    fn the_column_parser_agrees_with_the_plain_one() {
        let cells = [
            "2024-03-31T00:30:00Z",
            "2024-03-31T01:30:00+01:00",
            "2024-03-31T23:59:59.5Z",
            "2024-03-31 12:00",
            "2024-03-31",
            "2024-03-31T25:00:00Z",
            "2024-04-01T00:00:00-05:00",
            "2024-04-01T00:00:00Z",
            "1711929600",
            "2024-04-01x",
            "2024-04-01T00:00:00+1:00",
        ];
        for zone in [Tz::UTC, Tz::Europe__London] {
            for format in [TimeFormat::Auto, TimeFormat::Rfc3339, TimeFormat::Local] {
                let mut p = InstantParser::new(format, zone);
                for c in cells.iter().chain(cells.iter()) {
                    assert_eq!(
                        p.parse(c.as_bytes()),
                        parse_instant(c, format, zone),
                        "{c} {format:?} {zone}"
                    );
                }
            }
        }
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
