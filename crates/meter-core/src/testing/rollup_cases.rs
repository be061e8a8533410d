//! Random series, written the way real collectors write them, for the property test every store
//! with stored rollups runs: the rollup it serves must equal the one the raw rollup builder
//! computes from the final readings.
//!
//! A case is one series of any kind around a DST change in one of several zones, with gaps,
//! counter faults (momentary zeros, jitter, spikes, resets, register wraps), written in shuffled
//! batches with repeats and with wrong values later corrected; its queries ask for hours and
//! days, whole and with partial edges, in the series' zone and in others.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use crate::reading::{Kind, Reading, Unit};
use crate::rollup::{Bucket, Granularity, RollupBuilder, RollupError};
use crate::time::TimeRange;

use super::reading;

/// The meter a case writes unless [`Case::for_meter`] names another.
pub const METER: &str = "prop";
/// Its measure.
pub const MEASURE: &str = "volume";

/// Zones the cases are cut in: whole-hour offsets with and without DST, and :30 ones.
pub const ZONES: [Tz; 5] = [
    Tz::UTC,
    Tz::Europe__London,
    Tz::America__New_York,
    Tz::Asia__Kolkata,
    Tz::Australia__Lord_Howe,
];

/// One rollup to ask for.
#[derive(Debug, Clone)]
pub struct Query {
    /// The range.
    pub range: TimeRange,
    /// Hours or days.
    pub granularity: Granularity,
    /// The zone buckets are cut in.
    pub zone: Tz,
}

/// A series, how it is written, and what is asked of it.
#[derive(Debug, Clone)]
pub struct Case {
    /// The meter.
    pub meter: String,
    /// The series' kind.
    pub kind: Kind,
    /// The series' zone (its registry entry's).
    pub zone: Tz,
    /// The counter's register size, when its registry entry names one.
    pub register: Option<f64>,
    /// The readings as they stand after every write, in time order.
    pub truth: Vec<(DateTime<Utc>, f64)>,
    /// The writes, in order: batches of readings, some repeated, some later corrected.
    pub writes: Vec<Vec<Reading>>,
    /// Whether the registry entry comes after the writes (its zone then rebuilds the rollups).
    pub register_late: bool,
    /// The rollups to compare.
    pub queries: Vec<Query>,
}

impl Case {
    /// A reading of the case's series.
    pub fn reading(&self, time: DateTime<Utc>, value: f64) -> Reading {
        reading(
            &self.meter,
            MEASURE,
            time,
            value,
            self.kind,
            unit(self.kind),
        )
    }

    /// The same case written to another meter (so cases can share a table).
    pub fn for_meter(mut self, meter: &str) -> Self {
        self.meter = meter.to_owned();
        let writes = std::mem::take(&mut self.writes);
        self.writes = writes
            .into_iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|r| self.reading(r.time(), r.value()))
                    .collect()
            })
            .collect();
        self
    }
}

fn unit(kind: Kind) -> Unit {
    match kind {
        Kind::Gauge => Unit::parse("C").expect("a unit"),
        _ => Unit::parse("L").expect("a unit"),
    }
}

/// DST changes the series are placed around (EU spring and fall, US spring and fall, Lord
/// Howe's half-hour change).
const CHANGES: [&str; 5] = [
    "2024-03-31T01:00:00Z",
    "2024-10-27T01:00:00Z",
    "2024-03-10T07:00:00Z",
    "2024-11-03T06:00:00Z",
    "2024-04-06T15:00:00Z",
];

/// Steps between readings, in minutes: a meter's usual intervals and a few gaps.
const STEPS: [i64; 9] = [1, 5, 5, 15, 15, 30, 60, 180, 1500];

fn values(kind: Kind, register: Option<f64>, draws: &[(u8, u16)]) -> Vec<f64> {
    let mut level = 900.0;
    draws
        .iter()
        .map(|(fault, x)| {
            let x = f64::from(*x);
            match kind {
                Kind::Gauge | Kind::Interval => (x - 500.0) / 7.0,
                Kind::Cumulative => {
                    let step = (x % 40.0) / 4.0;
                    match fault % 24 {
                        0 => 0.0,                            // a momentary zero
                        1 => (level - step / 10.0).max(0.0), // jitter
                        2 => level * 40.0 + 1000.0,          // a spike
                        3 => {
                            level = step; // a reset
                            level
                        }
                        _ => {
                            level += step;
                            if let Some(size) = register {
                                level %= size; // the register wraps
                            }
                            level
                        }
                    }
                }
            }
        })
        .collect()
}

/// Random cases of up to 240 readings.
pub fn case() -> impl Strategy<Value = Case> {
    case_of(240)
}

/// Random cases of up to `most` readings (fewer for a store behind a slow emulator).
pub fn case_of(most: usize) -> impl Strategy<Value = Case> {
    let kind = prop_oneof![
        Just(Kind::Cumulative),
        Just(Kind::Cumulative),
        Just(Kind::Interval),
        Just(Kind::Gauge)
    ];
    (
        kind,
        0..ZONES.len(),
        0..CHANGES.len(),
        0i64..48 * 60,
        proptest::collection::vec(
            (0..STEPS.len(), 0i64..60_000, any::<u8>(), 0u16..1000),
            1..most.max(2),
        ),
        any::<bool>(),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec((0usize..10_000, 0usize..10_000, 0usize..4), 1..5),
    )
        .prop_map(
            |(kind, zone, change, before, points, wraps, seed, register_late, queries)| {
                let zone = ZONES[zone];
                let register = (kind == Kind::Cumulative && wraps).then_some(1000.0);
                let change = DateTime::parse_from_rfc3339(CHANGES[change])
                    .expect("a time")
                    .with_timezone(&Utc);
                let mut t = change - Duration::minutes(before);
                let draws: Vec<(u8, u16)> = points.iter().map(|p| (p.2, p.3)).collect();
                let values = values(kind, register, &draws);
                let truth: Vec<(DateTime<Utc>, f64)> = points
                    .iter()
                    .zip(values)
                    .map(|((step, jitter_ms, _, _), v)| {
                        t += Duration::minutes(STEPS[*step]);
                        (t + Duration::milliseconds(*jitter_ms), v)
                    })
                    .collect();
                let mut case = Case {
                    meter: METER.to_owned(),
                    kind,
                    zone,
                    register,
                    truth,
                    writes: Vec::new(),
                    register_late,
                    queries: Vec::new(),
                };
                case.writes = writes(&case, seed);
                case.queries = queries_of(&case, &queries);
                case
            },
        )
}

/// A small deterministic generator, so a case's shuffles shrink with its seed.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// The truth written in shuffled batches, with repeats, and with some readings first written
/// with a wrong value that a later batch corrects.
fn writes(case: &Case, mut seed: u64) -> Vec<Vec<Reading>> {
    let mut order: Vec<(u64, usize)> = (0..case.truth.len())
        .map(|i| (next(&mut seed) % 4, i))
        .collect();
    // Mostly in time order (as collectors send), a quarter late.
    order.sort_by_key(|(late, i)| if *late == 0 { (1, *i) } else { (0, *i) });
    let batches = 1 + (next(&mut seed) % 5) as usize;
    let mut out = vec![Vec::new(); batches + 1];
    for (_, i) in &order {
        let (time, value) = case.truth[*i];
        if next(&mut seed).is_multiple_of(8) {
            out[0].push(case.reading(time, value + 17.0)); // corrected later
        }
        let b = 1 + (next(&mut seed) as usize % batches);
        out[b].push(case.reading(time, value));
        if next(&mut seed).is_multiple_of(10) {
            let again = 1 + (next(&mut seed) as usize % batches);
            out[again].push(case.reading(time, value)); // a repeat
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

fn queries_of(case: &Case, picks: &[(usize, usize, usize)]) -> Vec<Query> {
    let first = case.truth[0].0;
    let last = case.truth[case.truth.len() - 1].0;
    let mut out = Vec::new();
    for zone in [case.zone, Tz::UTC, ZONES[(picks[0].2 + 1) % ZONES.len()]] {
        let days = TimeRange::local_days(
            first.with_timezone(&zone).date_naive() - Duration::days(1),
            last.with_timezone(&zone).date_naive() + Duration::days(1),
            zone,
        )
        .expect("a range");
        out.push(Query {
            range: days,
            granularity: Granularity::Day,
            zone,
        });
        out.push(Query {
            range: days,
            granularity: Granularity::Hour,
            zone,
        });
    }
    // Partial ranges: any two instants in the series' span, cut in any zone.
    let span = (last - first).num_milliseconds().max(1) + 7_200_000;
    for (a, b, z) in picks {
        let at = |x: usize| {
            first - Duration::hours(1) + Duration::milliseconds(span * x as i64 / 10_000)
        };
        let (from, to) = (at(*a.min(b)), at(*a.max(b)) + Duration::minutes(1));
        let range = TimeRange::new(from, to).expect("a range");
        let zone = if z % 2 == 0 { case.zone } else { ZONES[*z] };
        for granularity in [Granularity::Day, Granularity::Hour] {
            out.push(Query {
                range,
                granularity,
                zone,
            });
        }
    }
    out
}

/// The rollup the raw builder computes from the final readings, every reading of the series
/// pushed through it (so a counter's decisions are those of a walk over its whole history).
pub fn reference(case: &Case, q: &Query) -> Result<Vec<Bucket>, RollupError> {
    let mut b = RollupBuilder::new(q.range, q.granularity, q.zone, case.kind)?;
    if let Some(size) = case.register {
        b = b.with_register(size);
    }
    for (t, v) in &case.truth {
        if *t < q.range.from() {
            b.baseline(*t, *v);
        } else {
            b.push(*t, *v)?;
        }
    }
    b.finish_checked()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a == b,
    }
}

/// Whether two rollups agree: the same buckets, counts and counter notes, values within
/// floating-point tolerance (sums added in another order).
pub fn agree(got: &[Bucket], want: &[Bucket]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} buckets, want {}", got.len(), want.len()));
    }
    for (g, w) in got.iter().zip(want) {
        let same = g.label == w.label
            && g.count == w.count
            && close(g.value, w.value)
            && close(g.min, w.min)
            && close(g.max, w.max)
            && g.notes() == w.notes();
        if !same {
            return Err(format!("bucket {}: got {g:?}, want {w:?}", w.label));
        }
    }
    Ok(())
}
