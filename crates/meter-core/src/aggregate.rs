//! Stored rollups: a mergeable summary of a series over an hour or a day, kept by the stores
//! that compute rollups themselves, and the plan that answers a rollup from the largest
//! summaries that fit it.
//!
//! An [`Aggregate`] holds what every rule needs (count, sum, min, max, first and last) and, for
//! cumulative counters, what the counter rules decided: the use added, the counts of readings
//! set aside, restarts and wraps, and the level after the last reading, from which a store
//! resumes the rules ([`crate::counter::CounterRules::resume`]) when readings change. Hourly
//! aggregates cover UTC hours, so they serve every zone whose offsets are whole hours; daily
//! aggregates cover local days in one zone per series. A query in a zone with a :30 or :45
//! offset reads raw readings ([`plan`]).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::counter::{CounterRules, Decided, Verdict, WINDOW};
use crate::rollup::{bucket_bounds, Granularity, RollupError};
use crate::time::{start_of_day, TimeRange};

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the UTC hour holding `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// A summary of a series' readings over a stretch of time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// Readings.
    pub count: u64,
    /// The sum of the values, or for a counter the use its readings added.
    pub sum: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// The first reading (milliseconds since the epoch, value).
    pub first: (i64, f64),
    /// The last reading.
    pub last: (i64, f64),
    /// For a counter, the readings of each verdict (indexed by `Verdict as usize`).
    pub verdicts: [u32; 6],
    /// Whether a counter reading in it was decided without its full window.
    pub provisional: bool,
    /// For a counter, the level after its last reading.
    pub level: Option<f64>,
}

impl Aggregate {
    /// The summary of one reading of a gauge or interval series.
    pub fn of_value(ts: i64, value: f64) -> Self {
        Self {
            count: 1,
            sum: value,
            min: value,
            max: value,
            first: (ts, value),
            last: (ts, value),
            verdicts: [0; 6],
            provisional: false,
            level: None,
        }
    }

    /// The summary of one counter reading as the rules decided it.
    pub fn of_decided(d: &Decided) -> Self {
        let ts = d.time.timestamp_millis();
        let mut verdicts = [0; 6];
        verdicts[d.verdict as usize] = 1;
        Self {
            count: 1,
            sum: d.added,
            min: d.value,
            max: d.value,
            first: (ts, d.value),
            last: (ts, d.value),
            verdicts,
            provisional: d.provisional,
            level: d.level,
        }
    }

    /// Adds `other`, a summary of readings after this one's (the sums add in time order, so a
    /// rebuild gives the same bits as the summaries it replaces).
    pub fn merge(&mut self, other: &Aggregate) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.first.0 < self.first.0 {
            self.first = other.first;
        }
        if other.last.0 >= self.last.0 {
            self.last = other.last;
            self.level = other.level.or(self.level);
        }
        for (mine, theirs) in self.verdicts.iter_mut().zip(other.verdicts) {
            *mine += theirs;
        }
        self.provisional |= other.provisional;
    }

    /// Readings of `verdict`.
    pub fn verdicts(&self, verdict: Verdict) -> u32 {
        self.verdicts[verdict as usize]
    }
}

/// Merges summaries given in time order into one, `None` for none.
pub fn merge_all<'a>(parts: impl IntoIterator<Item = &'a Aggregate>) -> Option<Aggregate> {
    let mut out: Option<Aggregate> = None;
    for part in parts {
        match &mut out {
            Some(acc) => acc.merge(part),
            None => out = Some(*part),
        }
    }
    out
}

/// The local day of `zone` holding `ms`, as the UTC instants `[start, end)` in milliseconds,
/// when both are whole UTC hours (so the day is a union of hourly aggregates); `None` for a day
/// of a zone with a :30 or :45 offset.
pub fn day_of(ms: i64, zone: Tz) -> Option<(i64, i64)> {
    let t = DateTime::<Utc>::from_timestamp_millis(ms)?;
    let date = t.with_timezone(&zone).date_naive();
    let start = start_of_day(date, zone).timestamp_millis();
    let end = start_of_day(date.succ_opt()?, zone).timestamp_millis();
    (start % HOUR_MS == 0 && end % HOUR_MS == 0).then_some((start, end))
}

/// The hourly aggregates of gauge or interval readings given in time order.
pub fn hours_of_values(rows: &[(i64, f64)]) -> Vec<(i64, Aggregate)> {
    let mut out: Vec<(i64, Aggregate)> = Vec::new();
    for (ts, v) in rows {
        let one = Aggregate::of_value(*ts, *v);
        match out.last_mut() {
            Some((h, agg)) if *h == hour_of(*ts) => agg.merge(&one),
            _ => out.push((hour_of(*ts), one)),
        }
    }
    out
}

/// Recomputes a counter's hourly aggregates after a write, as a store keeps them: the rules
/// resume at the start of an hour a few readings before the first reading the write touched
/// (see [`CounterHours::start_before`]), are fed the readings from there in order, and stop once
/// an hour after the last touched reading, with [`WINDOW`] readings behind it, comes out as it
/// is stored: from there on the level and the neighbours are the same, so every later
/// decision is too.
#[derive(Debug)]
pub struct CounterHours {
    rules: CounterRules,
    decided: Vec<Decided>,
    current: Option<(i64, Aggregate)>,
    /// The last reading the write touched (milliseconds).
    last: i64,
    /// Decided readings after `last`.
    after_last: usize,
    done: bool,
    changed: Vec<(i64, Aggregate)>,
}

impl CounterHours {
    /// How many readings before the first touched one the walk starts (their decisions looked
    /// at it): it starts at the hour of the reading this many places before.
    pub const START_BEFORE: usize = WINDOW;

    /// A walk from an hour's start with the rules' state there (the level stored with the
    /// hour before, the raw values of the [`WINDOW`] readings before it), for a write that
    /// touched readings up to `last` (milliseconds; `i64::MAX` walks to the end).
    pub fn resume(register: Option<f64>, level: Option<f64>, before: &[f64], last: i64) -> Self {
        Self {
            rules: CounterRules::resume(register, level, before),
            decided: Vec::new(),
            current: None,
            last,
            after_last: 0,
            done: false,
            changed: Vec::new(),
        }
    }

    /// Feeds the next reading; `stored` answers an hour's stored aggregate. Answers whether
    /// the walk needs more readings (false once it has caught up with what is stored).
    pub fn push<E>(
        &mut self,
        ts: i64,
        value: f64,
        stored: &mut impl FnMut(i64) -> Result<Option<Aggregate>, E>,
    ) -> Result<bool, E> {
        if self.done {
            return Ok(false);
        }
        let time = DateTime::<Utc>::from_timestamp_millis(ts).unwrap_or_default();
        self.rules.push(time, value, &mut self.decided);
        self.settle(stored)?;
        Ok(!self.done)
    }

    /// Ends the walk (the series' readings ran out, or it caught up); answers the hours whose
    /// aggregates changed, in order, to be stored.
    pub fn finish<E>(
        mut self,
        stored: &mut impl FnMut(i64) -> Result<Option<Aggregate>, E>,
    ) -> Result<Vec<(i64, Aggregate)>, E> {
        if !self.done {
            self.rules.finish(&mut self.decided);
            self.settle(stored)?;
        }
        if !self.done {
            if let Some((h, agg)) = self.current.take() {
                if stored(h)? != Some(agg) {
                    self.changed.push((h, agg));
                }
            }
        }
        Ok(self.changed)
    }

    fn settle<E>(
        &mut self,
        stored: &mut impl FnMut(i64) -> Result<Option<Aggregate>, E>,
    ) -> Result<(), E> {
        let decided = std::mem::take(&mut self.decided);
        for d in &decided {
            let ts = d.time.timestamp_millis();
            let h = hour_of(ts);
            let one = Aggregate::of_decided(d);
            match &mut self.current {
                Some((ch, agg)) if *ch == h => agg.merge(&one),
                _ => {
                    if let Some((ch, agg)) = self.current.take() {
                        let same = stored(ch)? == Some(agg);
                        // The readings after the hour look back at WINDOW raw values: once
                        // those are past the write, an unchanged hour means the rest is too.
                        if same && self.after_last > WINDOW {
                            self.done = true;
                            break;
                        }
                        if !same {
                            self.changed.push((ch, agg));
                        }
                    }
                    self.current = Some((h, one));
                }
            }
            if ts > self.last {
                self.after_last += 1;
            }
        }
        self.decided = decided;
        self.decided.clear();
        Ok(())
    }
}

/// One part of a rollup's range and where its buckets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Raw readings (with a counter's context around them).
    Raw(TimeRange),
    /// Hourly aggregates of the UTC hours in the range.
    Hours(TimeRange),
    /// Daily aggregates, in the series' zone, of the days in the range.
    Days(TimeRange),
}

/// How to answer a rollup: the pieces of its range in order. Daily aggregates serve whole days
/// when the query's zone is the one the series' days are stored in (`days_zone`), hourly
/// aggregates serve whole UTC hours when every bucket edge is one (a zone with whole-hour
/// offsets), and raw readings the rest: the partial hours at the range's ends, or everything in
/// a zone with a :30 or :45 offset.
pub fn plan(
    range: TimeRange,
    granularity: Granularity,
    zone: Tz,
    days_zone: Option<Tz>,
) -> Result<Vec<Piece>, RollupError> {
    let bounds = bucket_bounds(range, granularity, zone)?;
    let inner = &bounds[1..bounds.len() - 1];
    let (from, to) = (
        range.from().timestamp_millis(),
        range.to().timestamp_millis(),
    );
    let a = hour_of(from + HOUR_MS - 1);
    let b = hour_of(to);
    if a >= b || inner.iter().any(|t| t.timestamp_millis() % HOUR_MS != 0) {
        return Ok(vec![Piece::Raw(range)]);
    }
    let mut edges = vec![(from, Kind::Raw), (a, Kind::Hours)];
    if granularity == Granularity::Day && days_zone == Some(zone) {
        let first_day = |ms: i64| -> Option<(i64, NaiveDate)> {
            let t = DateTime::<Utc>::from_timestamp_millis(ms)?;
            let date = t.with_timezone(&zone).date_naive();
            let start = start_of_day(date, zone).timestamp_millis();
            if start >= ms {
                Some((start, date))
            } else {
                let next = date.succ_opt()?;
                Some((start_of_day(next, zone).timestamp_millis(), next))
            }
        };
        let last_day = |ms: i64| -> Option<i64> {
            let t = DateTime::<Utc>::from_timestamp_millis(ms)?;
            Some(start_of_day(t.with_timezone(&zone).date_naive(), zone).timestamp_millis())
        };
        if let (Some((da, _)), Some(db)) = (first_day(a), last_day(b)) {
            if da < db {
                edges.push((da, Kind::Days));
                edges.push((db, Kind::Hours));
            }
        }
    }
    edges.push((b, Kind::Raw));
    edges.push((to, Kind::Raw));
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(range.from());
    Ok(edges
        .windows(2)
        .filter(|w| w[0].0 < w[1].0)
        .filter_map(|w| {
            let piece = TimeRange::new(at(w[0].0), at(w[1].0)).ok()?;
            Some(match w[0].1 {
                Kind::Raw => Piece::Raw(piece),
                Kind::Hours => Piece::Hours(piece),
                Kind::Days => Piece::Days(piece),
            })
        })
        .collect())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Raw,
    Hours,
    Days,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_date;

    fn days(first: &str, last: &str, zone: Tz) -> TimeRange {
        TimeRange::local_days(parse_date(first).unwrap(), parse_date(last).unwrap(), zone).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_year_of_days_in_the_series_zone_reads_days_only() {
        let zone = Tz::Europe__Berlin;
        let range = days("2024-01-01", "2024-12-31", zone);
        let p = plan(range, Granularity::Day, zone, Some(zone)).unwrap();
        assert_eq!(p, vec![Piece::Days(range)]);
        // In another whole-hour zone the same year is read from hours.
        let london = days("2024-01-01", "2024-12-31", Tz::Europe__London);
        let p = plan(london, Granularity::Day, Tz::Europe__London, Some(zone)).unwrap();
        assert_eq!(p, vec![Piece::Hours(london)]);
    }

    #[test]
    fn partial_edges_are_raw_then_hours_then_days() {
        let zone = Tz::UTC;
        let range =
            TimeRange::new(utc("2024-05-01T10:20:00Z"), utc("2024-05-04T03:10:00Z")).unwrap();
        let p = plan(range, Granularity::Day, zone, Some(zone)).unwrap();
        let r = |a: &str, b: &str| TimeRange::new(utc(a), utc(b)).unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Raw(r("2024-05-01T10:20:00Z", "2024-05-01T11:00:00Z")),
                Piece::Hours(r("2024-05-01T11:00:00Z", "2024-05-02T00:00:00Z")),
                Piece::Days(r("2024-05-02T00:00:00Z", "2024-05-04T00:00:00Z")),
                Piece::Hours(r("2024-05-04T00:00:00Z", "2024-05-04T03:00:00Z")),
                Piece::Raw(r("2024-05-04T03:00:00Z", "2024-05-04T03:10:00Z")),
            ]
        );
    }

    #[test]
    fn half_hour_zones_and_short_ranges_read_raw() {
        let zone = Tz::Asia__Kolkata;
        let range = days("2024-01-01", "2024-01-31", zone);
        assert_eq!(
            plan(range, Granularity::Hour, zone, Some(zone)).unwrap(),
            vec![Piece::Raw(range)]
        );
        let short =
            TimeRange::new(utc("2024-05-01T10:20:00Z"), utc("2024-05-01T10:50:00Z")).unwrap();
        assert_eq!(
            plan(short, Granularity::Hour, Tz::UTC, None).unwrap(),
            vec![Piece::Raw(short)]
        );
    }

    #[test]
    fn days_of_whole_hour_zones_are_unions_of_hours() {
        let spring = utc("2024-03-31T12:00:00Z").timestamp_millis();
        let (s, e) = day_of(spring, Tz::Europe__London).unwrap();
        assert_eq!(e - s, 23 * HOUR_MS);
        assert_eq!(day_of(spring, Tz::Asia__Kolkata), None);
        assert_eq!(hour_of(-1), -HOUR_MS);
    }

    #[test]
    fn merging_in_time_order_keeps_first_last_and_level() {
        let mut a = Aggregate::of_value(1_000, 5.0);
        a.level = Some(5.0);
        let mut b = Aggregate::of_value(2_000, 3.0);
        b.level = Some(7.0);
        a.merge(&b);
        assert_eq!((a.count, a.sum, a.min, a.max), (2, 8.0, 3.0, 5.0));
        assert_eq!(
            (a.first, a.last, a.level),
            ((1_000, 5.0), (2_000, 3.0), Some(7.0))
        );
        assert_eq!(merge_all([]), None);
    }
}
