//! Hourly and daily rollups in a caller's IANA time zone, with the rule chosen by the kind of
//! value: cumulative counters give last minus first, interval amounts are summed, gauges give
//! min / mean / max.
//!
//! The builder is streaming: readings are pushed in time order and only one running summary per
//! bucket is kept, so a year of half-hourly readings costs a few kilobytes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::aggregate::Aggregate;
use crate::choice::UnknownName;
use crate::counter::{CounterRules, Decided, Verdict};
use crate::reading::{Kind, MeasureName, MeterId, Unit};
use crate::time::{start_of_day, TimeRange};

/// The most buckets one rollup may have (27 years of days, 13 months of hours).
pub const MAX_BUCKETS: usize = 10_000;

/// Why a rollup could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RollupError {
    /// The range would need more than [`MAX_BUCKETS`] buckets.
    #[error("the range needs {0} buckets; at most {max} are allowed, use a coarser granularity or a shorter range", max = MAX_BUCKETS)]
    TooManyBuckets(usize),
    /// Readings were pushed out of time order.
    #[error("readings must be pushed in time order ({0} came after a later reading)")]
    OutOfOrder(String),
    /// A bucket's value is too large for a number (its readings add up past f64's range);
    /// answered as an error, since a missing value means "no readings".
    #[error("the value of bucket {0} overflows: its readings add up past the largest number")]
    Overflow(String),
}

/// The width of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// A local clock hour.
    Hour,
    /// A local calendar day (23, 24 or 25 hours).
    Day,
}

impl FromStr for Granularity {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" | "hourly" => Ok(Self::Hour),
            "day" | "daily" => Ok(Self::Day),
            _ => Err(UnknownName::new("granularity", s, "hour or day")),
        }
    }
}

/// How a bucket's value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupRule {
    /// Interval amounts: the sum of the bucket's readings.
    Sum,
    /// Cumulative counters: the increase over the bucket (its last reading minus the reading
    /// before it) under the counter rules of [`crate::counter`]: glitches, jitter and spikes add
    /// nothing, resets count from zero, wraps count across the register's end.
    LastMinusFirst,
    /// Gauges: minimum, mean and maximum; `value` is the mean.
    MinMeanMax,
}

impl RollupRule {
    /// The rule for a kind of value.
    pub fn for_kind(kind: Kind) -> Self {
        match kind {
            Kind::Cumulative => Self::LastMinusFirst,
            Kind::Interval => Self::Sum,
            Kind::Gauge => Self::MinMeanMax,
        }
    }

    /// The rule's name, as shown in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::LastMinusFirst => "last_minus_first",
            Self::MinMeanMax => "min_mean_max",
        }
    }
}

impl fmt::Display for RollupRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bucket of a rollup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The local label: `yyyy-MM-dd` for days, an RFC 3339 local time with offset for hours
    /// (so the repeated hour of a fall-back night has two distinct labels).
    pub label: String,
    /// The first instant of the bucket.
    pub start: DateTime<Utc>,
    /// The first instant after the bucket.
    pub end: DateTime<Utc>,
    /// The bucket's value under the rule; `None` when it had no readings.
    pub value: Option<f64>,
    /// The smallest reading (gauges only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest reading (gauges only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// How many readings fell in the bucket.
    pub count: u64,
    /// Counter readings the rules set aside as glitches (cumulative only; see
    /// [`crate::counter`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub glitches: u32,
    /// Counter readings set aside as jitter (small backward steps).
    #[serde(skip_serializing_if = "is_zero")]
    pub jitters: u32,
    /// Counter readings set aside as spikes.
    #[serde(skip_serializing_if = "is_zero")]
    pub spikes: u32,
    /// Counter resets and replacements seen in the bucket.
    #[serde(skip_serializing_if = "is_zero")]
    pub resets: u32,
    /// Register wraps seen in the bucket.
    #[serde(skip_serializing_if = "is_zero")]
    pub wraps: u32,
    /// Whether a reading of the bucket was decided without its full window of later readings
    /// (the newest data): the value may still change as readings arrive.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Bucket {
    /// What the counter rules did in the bucket, in words (`2 glitches, 1 reset, provisional`),
    /// empty when nothing was set aside or restarted.
    pub fn notes(&self) -> String {
        let mut notes: Vec<String> = [
            (self.glitches, "glitch", "glitches"),
            (self.jitters, "jitter", "jitters"),
            (self.spikes, "spike", "spikes"),
            (self.resets, "reset", "resets"),
            (self.wraps, "wrap", "wraps"),
        ]
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
        if self.provisional {
            notes.push("provisional".to_owned());
        }
        notes.join(", ")
    }
}

/// A rollup: one measure of one meter, cut into buckets in a time zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollup {
    /// The meter.
    pub meter: MeterId,
    /// The measure.
    pub measure: MeasureName,
    /// The unit of every value.
    pub unit: Unit,
    /// The kind, which chose the rule.
    pub kind: Kind,
    /// The rule applied.
    pub rule: RollupRule,
    /// The IANA zone the buckets were cut in.
    pub zone: String,
    /// The bucket width.
    pub granularity: Granularity,
    /// Every bucket of the range, in order, empty ones included.
    pub buckets: Vec<Bucket>,
}

/// A running summary of one bucket.
#[derive(Debug, Clone, Copy)]
struct Acc {
    sum: f64,
    min: f64,
    max: f64,
    count: u64,
    verdicts: [u32; 6],
    provisional: bool,
}

impl Default for Acc {
    fn default() -> Self {
        Self {
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            count: 0,
            verdicts: [0; 6],
            provisional: false,
        }
    }
}

impl Acc {
    fn verdicts(&self, v: Verdict) -> u32 {
        self.verdicts[v as usize]
    }

    fn merge(&mut self, other: &Acc) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        for (mine, theirs) in self.verdicts.iter_mut().zip(other.verdicts) {
            *mine += theirs;
        }
        self.provisional |= other.provisional;
    }
}

/// Builds a rollup from readings pushed in time order.
#[derive(Debug)]
pub struct RollupBuilder {
    kind: Kind,
    granularity: Granularity,
    zone: Tz,
    bounds: Vec<DateTime<Utc>>,
    accs: Vec<Acc>,
    cursor: usize,
    prev: Option<DateTime<Utc>>,
    /// The counter rules, for cumulative series.
    rules: Option<CounterRules>,
    decided: Vec<Decided>,
}

impl RollupBuilder {
    /// Prepares the buckets of `range` (clamped to it at both ends).
    pub fn new(
        range: TimeRange,
        granularity: Granularity,
        zone: Tz,
        kind: Kind,
    ) -> Result<Self, RollupError> {
        let bounds = bucket_bounds(range, granularity, zone)?;
        let accs = vec![Acc::default(); bounds.len() - 1];
        Ok(Self {
            kind,
            granularity,
            zone,
            bounds,
            accs,
            cursor: 0,
            prev: None,
            rules: (kind == Kind::Cumulative).then(CounterRules::new),
            decided: Vec::new(),
        })
    }

    /// The same for a counter whose register wraps at `size` (a 5-digit index: 100,000).
    pub fn with_register(mut self, size: f64) -> Self {
        if self.kind == Kind::Cumulative {
            self.rules = Some(CounterRules::with_register(size));
        }
        self
    }

    /// Starts a counter's rules from a known point of its history instead of from context
    /// readings (see [`CounterRules::resume`]): readings pushed from there on are decided as a
    /// walk from the series' first reading decides them.
    pub fn resume(&mut self, level: Option<f64>, before: &[f64]) {
        if let Some(rules) = &self.rules {
            self.rules = Some(CounterRules::resume(rules.register(), level, before));
        }
    }

    /// Adds a reading from before the range (a counter's level at the range's start comes from
    /// the [`crate::counter::CONTEXT_BEFORE`] readings before it). Same as [`Self::push`].
    pub fn baseline(&mut self, time: DateTime<Utc>, value: f64) {
        // Context comes before every reading of the range, so it cannot be out of order.
        let _ = self.push(time, value);
    }

    /// Adds a reading. Readings must come in time order; those outside the range only inform
    /// the counter rules (the level before it, the window after it).
    pub fn push(&mut self, time: DateTime<Utc>, value: f64) -> Result<(), RollupError> {
        if self.prev.is_some_and(|prev| time < prev) {
            return Err(RollupError::OutOfOrder(time.to_rfc3339()));
        }
        self.prev = Some(time);
        match &mut self.rules {
            Some(rules) => {
                rules.push(time, value, &mut self.decided);
                self.attribute_decided();
            }
            None => {
                if let Some(acc) = self.acc_at(time) {
                    acc.count += 1;
                    acc.min = acc.min.min(value);
                    acc.max = acc.max.max(value);
                    acc.sum += value;
                }
            }
        }
        Ok(())
    }

    /// Adds a stored summary of readings from `start` on, which must lie within one bucket
    /// (an hour or a day of the bucket's zone); summaries and [`Self::absorb`]ed parts come in
    /// time order.
    pub fn add(&mut self, start: DateTime<Utc>, agg: &Aggregate) {
        let other = Acc {
            sum: agg.sum,
            min: agg.min,
            max: agg.max,
            count: agg.count,
            verdicts: agg.verdicts,
            provisional: agg.provisional,
        };
        if let Some(acc) = self.acc_at(start) {
            acc.merge(&other);
        }
    }

    /// Adds the buckets of `part`, a builder of the same granularity and zone over a stretch
    /// of this one's range (a rollup's raw edge), finishing its counter rules first.
    pub fn absorb(&mut self, mut part: RollupBuilder) {
        if let Some(rules) = &mut part.rules {
            rules.finish(&mut part.decided);
            part.attribute_decided();
        }
        for (start, acc) in part.bounds.iter().zip(&part.accs) {
            if acc.count > 0 {
                if let Some(mine) = self.acc_at(*start) {
                    mine.merge(acc);
                }
            }
        }
    }

    /// The bucket of `time`, if it is in the range (times arrive in order).
    fn acc_at(&mut self, time: DateTime<Utc>) -> Option<&mut Acc> {
        let first = self.bounds[0];
        let last = self.bounds[self.bounds.len() - 1];
        if time < first || time >= last {
            return None;
        }
        while time >= self.bounds[self.cursor + 1] {
            self.cursor += 1;
        }
        Some(&mut self.accs[self.cursor])
    }

    fn attribute_decided(&mut self) {
        let decided = std::mem::take(&mut self.decided);
        for d in &decided {
            if let Some(acc) = self.acc_at(d.time) {
                acc.count += 1;
                acc.sum += d.added;
                acc.verdicts[d.verdict as usize] += 1;
                acc.provisional |= d.provisional;
            }
        }
        self.decided = decided;
        self.decided.clear();
    }

    /// Finishes the buckets, refusing a bucket whose value overflowed.
    pub fn finish_checked(self) -> Result<Vec<Bucket>, RollupError> {
        let buckets = self.finish();
        match buckets
            .iter()
            .find(|b| b.value.is_some_and(|v| !v.is_finite()))
        {
            Some(b) => Err(RollupError::Overflow(b.label.clone())),
            None => Ok(buckets),
        }
    }

    /// Finishes the buckets.
    pub fn finish(mut self) -> Vec<Bucket> {
        if let Some(rules) = &mut self.rules {
            rules.finish(&mut self.decided);
            self.attribute_decided();
        }
        let rule = RollupRule::for_kind(self.kind);
        self.accs
            .iter()
            .enumerate()
            .map(|(i, acc)| {
                let start = self.bounds[i];
                let has = acc.count > 0;
                let value = has.then(|| match rule {
                    RollupRule::Sum | RollupRule::LastMinusFirst => acc.sum,
                    RollupRule::MinMeanMax => acc.sum / acc.count as f64,
                });
                let gauge = has && rule == RollupRule::MinMeanMax;
                Bucket {
                    label: label(start, self.granularity, self.zone),
                    start,
                    end: self.bounds[i + 1],
                    value,
                    min: gauge.then_some(acc.min),
                    max: gauge.then_some(acc.max),
                    count: acc.count,
                    glitches: acc.verdicts(Verdict::Glitch),
                    jitters: acc.verdicts(Verdict::Jitter),
                    spikes: acc.verdicts(Verdict::Spike),
                    resets: acc.verdicts(Verdict::Reset),
                    wraps: acc.verdicts(Verdict::Wrap),
                    provisional: acc.provisional,
                }
            })
            .collect()
    }
}

fn label(start: DateTime<Utc>, granularity: Granularity, zone: Tz) -> String {
    let local = start.with_timezone(&zone);
    match granularity {
        Granularity::Day => local.format("%Y-%m-%d").to_string(),
        Granularity::Hour => local.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    }
}

/// The start of the local hour that contains `t` (an offset change moves hour starts with it).
fn start_of_hour(t: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    let local = t.with_timezone(&zone);
    t - Duration::seconds(i64::from(local.minute() * 60 + local.second()))
        - Duration::nanoseconds(i64::from(local.nanosecond()))
}

/// The boundaries of the buckets covering `range`: the range's ends, with every local hour or
/// day start in between.
pub(crate) fn bucket_bounds(
    range: TimeRange,
    granularity: Granularity,
    zone: Tz,
) -> Result<Vec<DateTime<Utc>>, RollupError> {
    let estimate = match granularity {
        Granularity::Hour => range.duration().num_hours(),
        Granularity::Day => range.duration().num_days(),
    };
    if estimate > MAX_BUCKETS as i64 {
        return Err(RollupError::TooManyBuckets(estimate as usize));
    }
    let mut bounds = vec![range.from()];
    let mut day: NaiveDate = range.from().with_timezone(&zone).date_naive();
    let mut hour = start_of_hour(range.from(), zone);
    loop {
        let next = match granularity {
            Granularity::Hour => {
                hour = start_of_hour(hour + Duration::minutes(90), zone);
                hour
            }
            Granularity::Day => {
                day = day.succ_opt().unwrap_or(day);
                start_of_day(day, zone)
            }
        };
        if next >= range.to() {
            bounds.push(range.to());
            break;
        }
        if next > bounds[bounds.len() - 1] {
            bounds.push(next);
        }
        if bounds.len() > MAX_BUCKETS + 1 {
            return Err(RollupError::TooManyBuckets(bounds.len()));
        }
    }
    Ok(bounds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_date;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn days(first: &str, last: &str, zone: Tz) -> TimeRange {
        TimeRange::local_days(parse_date(first).unwrap(), parse_date(last).unwrap(), zone).unwrap()
    }

    #[test]
    fn interval_readings_sum_per_local_day_across_spring_forward() {
        let zone = Tz::Europe__London;
        let range = days("2024-03-30", "2024-04-01", zone);
        let mut b = RollupBuilder::new(range, Granularity::Day, zone, Kind::Interval).unwrap();
        // One unit every half hour over the three local days: 48 + 46 + 48 half hours.
        let mut t = range.from();
        while t < range.to() {
            b.push(t, 1.0).unwrap();
            t += Duration::minutes(30);
        }
        let buckets = b.finish();
        let got: Vec<(String, Option<f64>)> =
            buckets.iter().map(|b| (b.label.clone(), b.value)).collect();
        assert_eq!(
            got,
            vec![
                ("2024-03-30".into(), Some(48.0)),
                ("2024-03-31".into(), Some(46.0)),
                ("2024-04-01".into(), Some(48.0)),
            ]
        );
        assert_eq!(buckets[1].end - buckets[1].start, Duration::hours(23));
    }

    #[test]
    fn fall_back_day_has_25_hourly_buckets_with_distinct_labels() {
        let zone = Tz::Europe__London;
        let range = days("2024-10-27", "2024-10-27", zone);
        let b = RollupBuilder::new(range, Granularity::Hour, zone, Kind::Gauge).unwrap();
        let buckets = b.finish();
        assert_eq!(buckets.len(), 25);
        assert_eq!(buckets[1].label, "2024-10-27T01:00:00+01:00");
        assert_eq!(buckets[2].label, "2024-10-27T01:00:00+00:00");
        assert!(buckets.iter().all(|b| b.value.is_none() && b.count == 0));
    }

    #[test]
    fn hourly_buckets_follow_half_hour_offsets() {
        let zone = Tz::Asia__Kolkata;
        let range = days("2024-01-01", "2024-01-01", zone);
        let mut b = RollupBuilder::new(range, Granularity::Hour, zone, Kind::Interval).unwrap();
        b.push(utc("2023-12-31T18:30:00Z"), 2.0).unwrap(); // 00:00 local
        b.push(utc("2023-12-31T19:29:59Z"), 3.0).unwrap(); // 00:59:59 local
        b.push(utc("2023-12-31T19:30:00Z"), 5.0).unwrap(); // 01:00 local
        let buckets = b.finish();
        assert_eq!(buckets.len(), 24);
        assert_eq!(buckets[0].value, Some(5.0));
        assert_eq!(buckets[1].value, Some(5.0));
        assert_eq!(buckets[0].label, "2024-01-01T00:00:00+05:30");
    }

    #[test]
    fn cumulative_counts_from_the_baseline_and_survives_a_reset() {
        let zone = Tz::UTC;
        let range = days("2024-05-01", "2024-05-02", zone);
        let mut b = RollupBuilder::new(range, Granularity::Day, zone, Kind::Cumulative).unwrap();
        b.baseline(utc("2024-04-30T23:50:00Z"), 1000.0);
        b.push(utc("2024-05-01T08:00:00Z"), 1100.0).unwrap();
        b.push(utc("2024-05-01T20:00:00Z"), 1250.0).unwrap();
        // Day 2: the meter is replaced and restarts from zero, then reads 40.
        b.push(utc("2024-05-02T06:00:00Z"), 1300.0).unwrap();
        b.push(utc("2024-05-02T12:00:00Z"), 10.0).unwrap();
        b.push(utc("2024-05-02T18:00:00Z"), 40.0).unwrap();
        let buckets = b.finish();
        assert_eq!(buckets[0].value, Some(250.0));
        assert_eq!(buckets[0].resets, 0);
        // 50 before the reset, 10 counted by the new meter, then 30 more.
        assert_eq!(buckets[1].value, Some(90.0));
        assert_eq!(buckets[1].resets, 1);
    }

    #[test]
    fn cumulative_without_baseline_is_last_minus_first_and_gaps_count_once() {
        let zone = Tz::UTC;
        let range = days("2024-05-01", "2024-05-03", zone);
        let mut b = RollupBuilder::new(range, Granularity::Day, zone, Kind::Cumulative).unwrap();
        b.push(utc("2024-05-01T01:00:00Z"), 500.0).unwrap();
        b.push(utc("2024-05-01T23:00:00Z"), 520.0).unwrap();
        // No reading on 05-02; the whole increase lands on the day that observed it.
        b.push(utc("2024-05-03T12:00:00Z"), 600.0).unwrap();
        let v: Vec<Option<f64>> = b.finish().iter().map(|b| b.value).collect();
        assert_eq!(v, vec![Some(20.0), None, Some(80.0)]);
    }

    #[test]
    fn a_sum_past_the_largest_number_is_an_error_not_a_missing_value() {
        let zone = Tz::UTC;
        let range = days("2024-05-01", "2024-05-01", zone);
        let mut b = RollupBuilder::new(range, Granularity::Day, zone, Kind::Interval).unwrap();
        b.push(utc("2024-05-01T01:00:00Z"), f64::MAX).unwrap();
        b.push(utc("2024-05-01T02:00:00Z"), f64::MAX).unwrap();
        let err = b.finish_checked().unwrap_err();
        assert_eq!(err, RollupError::Overflow("2024-05-01".into()));
    }

    #[test]
    fn gauges_give_min_mean_max() {
        let zone = Tz::UTC;
        let range = days("2024-05-01", "2024-05-01", zone);
        let mut b = RollupBuilder::new(range, Granularity::Day, zone, Kind::Gauge).unwrap();
        for (i, v) in [20.0, 26.0, 23.0].into_iter().enumerate() {
            b.push(range.from() + Duration::hours(i as i64), v).unwrap();
        }
        let bucket = &b.finish()[0];
        assert_eq!(
            (bucket.min, bucket.value, bucket.max),
            (Some(20.0), Some(23.0), Some(26.0))
        );
    }

    #[test]
    fn out_of_order_and_oversized_are_refused() {
        let zone = Tz::UTC;
        let range = days("2024-05-01", "2024-05-01", zone);
        let mut b = RollupBuilder::new(range, Granularity::Hour, zone, Kind::Gauge).unwrap();
        b.push(range.from() + Duration::hours(2), 1.0).unwrap();
        assert!(matches!(
            b.push(range.from(), 1.0),
            Err(RollupError::OutOfOrder(_))
        ));
        let long = days("2000-01-01", "2024-01-01", zone);
        assert!(matches!(
            RollupBuilder::new(long, Granularity::Hour, zone, Kind::Gauge),
            Err(RollupError::TooManyBuckets(_))
        ));
    }
}
