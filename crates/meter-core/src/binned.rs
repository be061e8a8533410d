//! Rollups from a database that aggregates itself (Timestream): the database answers one query
//! with an aggregate per time bin of the range and, for a cumulative counter, only the raw
//! readings the counter rules need to see; the rules here decide them, so there is one rule and
//! no second copy of it in SQL.
//!
//! A counter's readings that climb steadily need no judging: every one is counted, and the use
//! of a run of them is its last value minus the level before it, whatever the readings between.
//! The rules only ever set a reading aside, or restart the level, next to a reading that is
//! lower than one before it. So the query keeps, besides the first and last reading of each bin
//! and the context around the range, every reading within [`KEEP_BEFORE`] rows before and
//! [`KEEP_AFTER`] rows after an *odd* one: a reading below the one before it (a drop) or below
//! the highest of the [`BELOW_ROWS`] before it (still under a level a drop left behind). Each
//! kept reading carries its row number in the whole series, so the gaps the query left are
//! known exactly.
//!
//! [`fill`] walks the kept readings through the rules. A skipped run lies inside one bin and
//! between a reading counted in full and one at or above it, so all of it is counted, and its
//! use lands in that bin with the next kept reading. A decision whose window of neighbours
//! reached into a skipped run is checked: if it is anything but a plain count (a reading that
//! sat under its level for longer than the query looked), [`fill`] answers
//! [`BinnedError::Undecidable`] and the caller reads the raw readings instead. The answer is
//! then exactly the raw rollup's, or refused.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use thiserror::Error;

use crate::aggregate::{Aggregate, HOUR_MS};
use crate::counter::{CounterRules, Decided, Verdict, CONTEXT_BEFORE, WINDOW};
use crate::reading::Kind;
use crate::rollup::{bucket_bounds, Granularity, RollupBuilder, RollupError};
use crate::time::TimeRange;

/// Rows before an odd reading that the query keeps (the neighbours its decision reads).
pub const KEEP_BEFORE: usize = WINDOW + 1;
/// Rows after an odd reading that the query keeps.
pub const KEEP_AFTER: usize = WINDOW;
/// How far back a reading is compared with the highest value before it.
pub const BELOW_ROWS: usize = 4 * WINDOW;
/// Rows at each end of the series' answer kept whole (a first reading is judged by its own
/// rules, and the newest readings provisionally).
pub const EDGE_ROWS: usize = 2 * WINDOW + 1;
/// Readings before the range the query reads for a counter's level.
pub const CONTEXT_ROWS: usize = CONTEXT_BEFORE;
/// Readings after the range the query reads for the decisions at its end.
pub const AFTER_ROWS: usize = WINDOW;

/// Milliseconds in the finer bin used for zones with :30 or :45 offsets.
pub const QUARTER_MS: i64 = 15 * 60_000;

/// Why a binned answer could not be turned into a rollup.
#[derive(Debug, Error, PartialEq)]
pub enum BinnedError {
    /// A counter reading near `at` needs neighbours the query left out; read raw readings.
    #[error("the counter readings near {at} need the raw readings to be decided")]
    Undecidable {
        /// The reading whose decision could not be made from the answer.
        at: DateTime<Utc>,
    },
    /// The answer contradicts itself (a bin's count against its kept rows).
    #[error("the database's binned answer is inconsistent: {0}")]
    Inconsistent(String),
    /// The buckets could not be built.
    #[error(transparent)]
    Rollup(#[from] RollupError),
}

/// One bin of the range as the database aggregated it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// The bin's start (milliseconds, a multiple of the bin width).
    pub start: i64,
    /// Readings in the bin (within the range).
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// A raw counter reading the database kept, with its row number in the answer's series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kept {
    /// 1 for the oldest reading the query read (context included), counting every reading.
    pub row: u64,
    /// The time (milliseconds).
    pub ts: i64,
    /// The value.
    pub value: f64,
}

/// The bin width whose bins each lie inside one bucket of a rollup: an hour when every bucket
/// edge is a whole UTC hour, a quarter hour when every one is a whole quarter (zones with :30
/// or :45 offsets), `None` otherwise (local mean times before standard zones).
pub fn bin_width(
    range: TimeRange,
    granularity: Granularity,
    zone: Tz,
) -> Result<Option<i64>, RollupError> {
    let bounds = bucket_bounds(range, granularity, zone)?;
    let inner = &bounds[1..bounds.len() - 1];
    let fits = |w: i64| inner.iter().all(|t| t.timestamp_millis() % w == 0);
    Ok([HOUR_MS, QUARTER_MS].into_iter().find(|w| fits(*w)))
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Adds a binned answer to `builder` (made for `range` and `kind`): `bins` of `width`
/// milliseconds, and for a counter the `kept` readings in time order (context around the range
/// included), decided with the rules of a register of `register` size when known.
pub fn fill(
    builder: &mut RollupBuilder,
    range: TimeRange,
    kind: Kind,
    register: Option<f64>,
    width: i64,
    bins: &[Bin],
    kept: &[Kept],
) -> Result<(), BinnedError> {
    let (from, to) = (
        range.from().timestamp_millis(),
        range.to().timestamp_millis(),
    );
    let mut bins: Vec<Bin> = bins.iter().filter(|b| b.count > 0).copied().collect();
    bins.sort_by_key(|b| b.start);
    if kind != Kind::Cumulative {
        for b in &bins {
            let start = b.start.max(from);
            builder.add(
                at(start),
                &Aggregate {
                    count: b.count,
                    sum: b.sum,
                    min: b.min,
                    max: b.max,
                    // A builder reads only count, sum, min and max of a gauge's summary.
                    first: (start, b.min),
                    last: (start, b.max),
                    verdicts: [0; 6],
                    provisional: false,
                    level: None,
                },
            );
        }
        return Ok(());
    }
    let touched = touched_by_gaps(kept)?;
    let mut rules = match register {
        Some(size) => CounterRules::with_register(size),
        None => CounterRules::new(),
    };
    let mut per_bin: BTreeMap<i64, (Aggregate, u64)> = BTreeMap::new();
    let mut decided: Vec<Decided> = Vec::with_capacity(kept.len());
    for k in kept {
        rules.push(at(k.ts), k.value, &mut decided);
    }
    rules.finish(&mut decided);
    let mut level_before: Option<f64> = None;
    for (d, near_gap) in decided.iter().zip(&touched) {
        let first = level_before.is_none();
        level_before = d.level;
        if *near_gap && (first || d.verdict != Verdict::Counted) {
            return Err(BinnedError::Undecidable { at: d.time });
        }
        let ts = d.time.timestamp_millis();
        if ts < from || ts >= to {
            continue;
        }
        let bin = ts.div_euclid(width) * width;
        let one = Aggregate::of_decided(d);
        per_bin
            .entry(bin)
            .and_modify(|(agg, n)| {
                agg.merge(&one);
                *n += 1;
            })
            .or_insert((one, 1));
    }
    for b in &bins {
        let Some((mut agg, seen)) = per_bin.remove(&b.start) else {
            return Err(BinnedError::Inconsistent(format!(
                "bin {} has {} readings but none was kept",
                at(b.start).to_rfc3339(),
                b.count
            )));
        };
        let skipped = b.count.checked_sub(seen).ok_or_else(|| {
            BinnedError::Inconsistent(format!(
                "bin {} counts {} readings but {seen} were kept",
                at(b.start).to_rfc3339(),
                b.count
            ))
        })?;
        // Every skipped reading was counted (see the module's notes).
        agg.count = b.count;
        agg.verdicts[Verdict::Counted as usize] += u32::try_from(skipped).unwrap_or(u32::MAX);
        builder.add(at(b.start.max(from)), &agg);
    }
    if let Some((bin, _)) = per_bin.into_iter().next() {
        return Err(BinnedError::Inconsistent(format!(
            "readings were kept in bin {} that the answer does not count",
            at(bin).to_rfc3339()
        )));
    }
    Ok(())
}

/// For each kept reading, whether a skipped row lies within [`WINDOW`] rows of it (its
/// decision, or the typical step it used, then saw a stand-in for a missing neighbour).
fn touched_by_gaps(kept: &[Kept]) -> Result<Vec<bool>, BinnedError> {
    let mut out = vec![false; kept.len()];
    let window = WINDOW as u64;
    let mut last_gap: Option<u64> = None;
    for (k, r) in kept.iter().enumerate() {
        if k > 0 {
            let prev = kept[k - 1].row;
            if r.row <= prev {
                return Err(BinnedError::Inconsistent(format!(
                    "row {} follows row {prev}",
                    r.row
                )));
            }
            if r.row > prev + 1 {
                last_gap = Some(r.row - 1);
            }
        }
        out[k] = last_gap.is_some_and(|g| r.row - g <= window);
    }
    let mut next_gap: Option<u64> = None;
    for k in (0..kept.len()).rev() {
        if k + 1 < kept.len() && kept[k + 1].row > kept[k].row + 1 {
            next_gap = Some(kept[k].row + 1);
        }
        out[k] |= next_gap.is_some_and(|g| g - kept[k].row <= window);
    }
    Ok(out)
}

/// What a database following this module's query answers for one series' readings (in time
/// order, every reading from the context before the range to the few after it): the bins of
/// the range and, for a counter, the kept readings. The reference the query's SQL is checked
/// against, and the recorded answers of the adapters' tests (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub fn answer(
    readings: &[(i64, f64)],
    range: TimeRange,
    width: i64,
    counter: bool,
) -> (Vec<Bin>, Vec<Kept>) {
    let (from, to) = (
        range.from().timestamp_millis(),
        range.to().timestamp_millis(),
    );
    let inside = |ts: i64| ts >= from && ts < to;
    let start = readings.partition_point(|(ts, _)| *ts < from);
    let end = readings.partition_point(|(ts, _)| *ts < to);
    let s: Vec<(i64, f64)> = readings[start.saturating_sub(CONTEXT_ROWS)..start]
        .iter()
        .chain(&readings[start..end])
        .chain(readings[end..].iter().take(AFTER_ROWS))
        .copied()
        .collect();
    let mut bins: Vec<Bin> = Vec::new();
    for (ts, v) in s.iter().filter(|(ts, _)| inside(*ts)) {
        let b = ts.div_euclid(width) * width;
        match bins.last_mut() {
            Some(last) if last.start == b => {
                last.count += 1;
                last.sum += v;
                last.min = last.min.min(*v);
                last.max = last.max.max(*v);
            }
            _ => bins.push(Bin {
                start: b,
                count: 1,
                sum: *v,
                min: *v,
                max: *v,
            }),
        }
    }
    if !counter {
        return (bins, Vec::new());
    }
    let n = s.len();
    let odd: Vec<bool> = (0..n)
        .map(|i| {
            let drop = i > 0 && s[i].1 < s[i - 1].1;
            let high = s[i.saturating_sub(BELOW_ROWS)..i]
                .iter()
                .map(|(_, v)| *v)
                .fold(f64::NEG_INFINITY, f64::max);
            drop || s[i].1 < high
        })
        .collect();
    let bin_of = |i: usize| inside(s[i].0).then(|| s[i].0.div_euclid(width));
    let kept = (0..n)
        .filter(|&i| {
            // An odd reading j keeps rows j - KEEP_BEFORE ..= j + KEEP_AFTER.
            let near =
                (i.saturating_sub(KEEP_AFTER)..=(i + KEEP_BEFORE).min(n - 1)).any(|j| odd[j]);
            let edge = i < EDGE_ROWS || i + EDGE_ROWS >= n;
            let bin_edge = bin_of(i).is_some()
                && (i == 0
                    || bin_of(i - 1) != bin_of(i)
                    || i + 1 == n
                    || bin_of(i + 1) != bin_of(i));
            !inside(s[i].0) || near || edge || bin_edge
        })
        .map(|i| Kept {
            row: i as u64 + 1,
            ts: s[i].0,
            value: s[i].1,
        })
        .collect();
    (bins, kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rollup_cases::{self, agree, reference, Case, Query};
    use chrono::Duration;
    use proptest::prelude::*;

    fn binned(case: &Case, q: &Query) -> Option<Result<Vec<crate::Bucket>, BinnedError>> {
        let width = bin_width(q.range, q.granularity, q.zone).unwrap()?;
        let readings: Vec<(i64, f64)> = case
            .truth
            .iter()
            .map(|(t, v)| (t.timestamp_millis(), *v))
            .collect();
        let counter = case.kind == Kind::Cumulative;
        let (bins, kept) = answer(&readings, q.range, width, counter);
        let mut b = RollupBuilder::new(q.range, q.granularity, q.zone, case.kind).unwrap();
        if let Some(size) = case.register {
            b = b.with_register(size);
        }
        Some(
            fill(
                &mut b,
                q.range,
                case.kind,
                case.register,
                width,
                &bins,
                &kept,
            )
            .and_then(|()| Ok(b.finish_checked()?)),
        )
    }

    /// The rollup a reader without stored rollups computes: the range's readings with
    /// [`CONTEXT_BEFORE`] before and [`WINDOW`] after (the default `ReadingReader::rollup`).
    fn with_context(case: &Case, q: &Query) -> Vec<crate::Bucket> {
        let mut b = RollupBuilder::new(q.range, q.granularity, q.zone, case.kind).unwrap();
        if let Some(size) = case.register {
            b = b.with_register(size);
        }
        let start = case.truth.partition_point(|(t, _)| *t < q.range.from());
        let end = case.truth.partition_point(|(t, _)| *t < q.range.to());
        for (t, v) in &case.truth[start.saturating_sub(CONTEXT_BEFORE)..start] {
            b.baseline(*t, *v);
        }
        for (t, v) in case.truth[start..].iter().take(end - start + WINDOW) {
            b.push(*t, *v).unwrap();
        }
        b.finish_checked().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the series, a binned answer gives the rollup the raw readings give (with
        /// the same context around the range), or says it cannot (and the adapter reads the
        /// raw readings).
        #[test]
        fn binned_rollups_equal_the_raw_builder_or_refuse(case in rollup_cases::case()) {
            for q in &case.queries {
                if reference(&case, q).is_err() { continue }
                let want = with_context(&case, q);
                match binned(&case, q) {
                    None => {}
                    Some(Err(BinnedError::Undecidable { .. })) => {}
                    Some(Ok(got)) => {
                        if let Err(e) = agree(&got, &want) {
                            return Err(TestCaseError::fail(format!("{q:?}: {e}")));
                        }
                    }
                    Some(Err(e)) => return Err(TestCaseError::fail(format!("{q:?}: {e}"))),
                }
            }
        }

        /// A counter that climbs with momentary zeros, spikes, resets and small jitter steps
        /// that recover is always decided from the binned answer.
        #[test]
        fn usual_counter_faults_are_decided_from_bins(
            steps in proptest::collection::vec((0u8..40, 1u16..200), 20..400),
        ) {
            let t0: DateTime<Utc> = "2024-03-30T00:00:00Z".parse().unwrap();
            let mut level = 5_000.0;
            let mut truth = Vec::new();
            for (i, (fault, step)) in steps.iter().enumerate() {
                let t = t0 + Duration::minutes(5 * i as i64);
                level += f64::from(*step) / 10.0;
                let v = match fault {
                    0 => 0.0,
                    1 => level * 50.0,
                    2 => { level = f64::from(*step); level }
                    3 => level - 0.01,
                    _ => level,
                };
                truth.push((t, v));
            }
            let zone = Tz::Europe__Berlin;
            let range = TimeRange::new(t0 + Duration::hours(3), t0 + Duration::hours(30)).unwrap();
            let case = counter_case(truth);
            for granularity in [Granularity::Hour, Granularity::Day] {
                let q = Query { range, granularity, zone };
                let got = binned(&case, &q).unwrap().map_err(|e| TestCaseError::fail(e.to_string()))?;
                agree(&got, &with_context(&case, &q)).map_err(TestCaseError::fail)?;
            }
        }
    }

    fn counter_case(truth: Vec<(DateTime<Utc>, f64)>) -> Case {
        Case {
            meter: "m".into(),
            kind: Kind::Cumulative,
            zone: Tz::Europe__Berlin,
            register: None,
            truth,
            writes: Vec::new(),
            register_late: false,
            queries: Vec::new(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Counters that step back and then sit still or creep below their level for a while
        /// (what makes the answer undecidable): every answer given is the raw builder's.
        #[test]
        fn counters_sitting_under_their_level_are_decided_right_or_refused(
            steps in proptest::collection::vec((0u8..12, 0u16..200, 0usize..30), 20..300),
            edge in 0i64..600,
        ) {
            let t0: DateTime<Utc> = "2024-10-26T20:00:00Z".parse().unwrap();
            let mut level = 5_000.0;
            let mut truth = Vec::new();
            let mut t = t0;
            for (fault, step, hold) in &steps {
                let step = f64::from(*step) / 10.0;
                let mut push = |v: f64| { t += Duration::minutes(5); truth.push((t, v)); };
                match fault {
                    0 => {
                        let low = level - step.min(level * 0.01);
                        for k in 0..*hold { push(low + k as f64 * step / 1_000.0); }
                    }
                    1 => { push(0.0); }
                    2 => { level = step; push(level); }
                    _ => { level += step; push(level); }
                }
            }
            let case = counter_case(truth);
            let from = t0 + Duration::minutes(edge);
            let range = TimeRange::new(from, (t + Duration::minutes(edge - 300)).max(from + Duration::hours(1))).unwrap();
            for (granularity, zone) in [(Granularity::Hour, Tz::UTC), (Granularity::Day, Tz::Europe__Berlin), (Granularity::Hour, Tz::Asia__Kolkata)] {
                let q = Query { range, granularity, zone };
                let Some(got) = binned(&case, &q) else { continue };
                match got {
                    Ok(got) => agree(&got, &with_context(&case, &q)).map_err(TestCaseError::fail)?,
                    Err(BinnedError::Undecidable { .. }) => {}
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
        }
    }

    #[test]
    fn a_year_of_a_clean_counter_keeps_two_readings_an_hour() {
        let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let readings: Vec<(i64, f64)> = (0..105_120)
            .map(|i| {
                (
                    (t0 + Duration::minutes(5 * i)).timestamp_millis(),
                    i as f64 * 1.5,
                )
            })
            .collect();
        let zone = Tz::Europe__Berlin;
        let range = TimeRange::local_days(
            "2024-01-02".parse().unwrap(),
            "2024-12-30".parse().unwrap(),
            zone,
        )
        .unwrap();
        let width = bin_width(range, Granularity::Day, zone).unwrap().unwrap();
        assert_eq!(width, HOUR_MS);
        let (bins, kept) = answer(&readings, range, width, true);
        let hours = bins.len();
        assert!(
            hours > 8_000 && kept.len() <= 2 * hours + 4 * EDGE_ROWS,
            "{}",
            kept.len()
        );
        let mut b = RollupBuilder::new(range, Granularity::Day, zone, Kind::Cumulative).unwrap();
        fill(&mut b, range, Kind::Cumulative, None, width, &bins, &kept).unwrap();
        let days = b.finish_checked().unwrap();
        assert_eq!(days.len(), 364);
        // 288 readings a day, 1.5 each; the spring-forward day has 23 hours.
        assert_eq!(days[0].value, Some(288.0 * 1.5));
        assert_eq!(days[0].count, 288);
        let spring = days.iter().find(|d| d.label == "2024-03-31").unwrap();
        assert_eq!(spring.value, Some(276.0 * 1.5));
    }

    #[test]
    fn a_counter_under_its_level_longer_than_the_query_looks_is_refused() {
        // A jitter step back, then a night of flat readings below the level.
        let t0: DateTime<Utc> = "2024-05-01T00:00:00Z".parse().unwrap();
        let mut values: Vec<f64> = (0..40).map(|i| 1_000.0 + f64::from(i)).collect();
        values.push(1_038.9);
        values.extend(std::iter::repeat_n(1_038.9, 60));
        values.extend((0..40).map(|i| 1_040.0 + f64::from(i)));
        let readings: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    (t0 + Duration::minutes(5 * i as i64)).timestamp_millis(),
                    *v,
                )
            })
            .collect();
        let range = TimeRange::new(t0 + Duration::hours(1), t0 + Duration::hours(11)).unwrap();
        let (bins, kept) = answer(&readings, range, HOUR_MS, true);
        let mut b =
            RollupBuilder::new(range, Granularity::Hour, Tz::UTC, Kind::Cumulative).unwrap();
        let got = fill(&mut b, range, Kind::Cumulative, None, HOUR_MS, &bins, &kept);
        assert!(
            matches!(got, Err(BinnedError::Undecidable { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn answers_that_contradict_themselves_are_refused() {
        let range = TimeRange::new(
            "2024-05-01T00:00:00Z".parse().unwrap(),
            "2024-05-01T02:00:00Z".parse().unwrap(),
        )
        .unwrap();
        let h = range.from().timestamp_millis();
        let bins = [Bin {
            start: h,
            count: 1,
            sum: 5.0,
            min: 5.0,
            max: 5.0,
        }];
        let kept = [
            Kept {
                row: 1,
                ts: h,
                value: 5.0,
            },
            Kept {
                row: 2,
                ts: h + 60_000,
                value: 6.0,
            },
        ];
        let mut b =
            RollupBuilder::new(range, Granularity::Hour, Tz::UTC, Kind::Cumulative).unwrap();
        let got = fill(&mut b, range, Kind::Cumulative, None, HOUR_MS, &bins, &kept);
        assert!(matches!(got, Err(BinnedError::Inconsistent(_))), "{got:?}");
        let backwards = [kept[1], kept[0]];
        let got = fill(
            &mut b,
            range,
            Kind::Cumulative,
            None,
            HOUR_MS,
            &bins,
            &backwards,
        );
        assert!(matches!(got, Err(BinnedError::Inconsistent(_))), "{got:?}");
    }

    #[test]
    fn half_hour_zones_bin_by_quarters() {
        let range = TimeRange::local_days(
            "2024-05-01".parse().unwrap(),
            "2024-05-03".parse().unwrap(),
            Tz::Asia__Kolkata,
        )
        .unwrap();
        assert_eq!(
            bin_width(range, Granularity::Day, Tz::Asia__Kolkata).unwrap(),
            Some(QUARTER_MS)
        );
        // UTC hours of a range starting at a Kolkata midnight (18:30Z): whole hours inside.
        assert_eq!(
            bin_width(range, Granularity::Hour, Tz::UTC).unwrap(),
            Some(HOUR_MS)
        );
        let utc = TimeRange::new(range.from(), range.from() + Duration::hours(5)).unwrap();
        assert_eq!(
            bin_width(utc, Granularity::Hour, Tz::Asia__Kolkata).unwrap(),
            Some(QUARTER_MS)
        );
    }
}
