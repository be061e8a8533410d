use super::*;
use crate::reading::Kind;
use crate::rollup::{Bucket, Granularity, RollupBuilder};
use crate::time::TimeRange;
use chrono::Duration;
use chrono_tz::Tz;
use proptest::prelude::*;

/// Readings of one counter: time and value.
type Series = Vec<(DateTime<Utc>, f64)>;

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_521_600, 0).unwrap() + Duration::minutes(minutes)
}

/// The verdicts of a series of values, one a minute.
fn verdicts(values: &[f64], rules: CounterRules) -> Vec<(Verdict, f64)> {
    let mut rules = rules;
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        rules.push(at(i as i64), *v, &mut out);
    }
    rules.finish(&mut out);
    out.iter().map(|d| (d.verdict, d.added)).collect()
}

fn kinds(values: &[f64]) -> Vec<Verdict> {
    verdicts(values, CounterRules::new())
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

fn added(values: &[f64], rules: CounterRules) -> f64 {
    verdicts(values, rules).iter().map(|(_, a)| a).sum()
}

use Verdict::{Counted, Glitch, Jitter, Reset, Spike, Wrap};

#[test]
fn a_momentary_zero_is_a_glitch_and_the_use_is_measured_across_it() {
    let values = [100.0, 102.0, 0.0, 106.0, 108.0, 110.0];
    assert_eq!(
        kinds(&values),
        [Counted, Counted, Glitch, Counted, Counted, Counted]
    );
    assert_eq!(added(&values, CounterRules::new()), 10.0);
    // Two readings down, then back: both glitches.
    let values = [100.0, 102.0, 0.0, 3.0, 106.0, 108.0, 110.0];
    assert_eq!(kinds(&values)[2..4], [Glitch, Glitch]);
    assert_eq!(added(&values, CounterRules::new()), 10.0);
}

#[test]
fn jitter_adds_nothing_and_is_not_counted_twice() {
    let values = [100.0, 102.0, 101.7, 101.9, 104.0, 106.0, 108.0];
    assert_eq!(kinds(&values)[2..4], [Jitter, Jitter]);
    // 100 -> 108: the climb back from 101.7 to 102 is not counted again.
    assert_eq!(added(&values, CounterRules::new()), 8.0);
}

/// One series each: the values, the verdict of the reading at `at`, and the use they add.
#[test]
fn spikes_resets_replacements_and_wraps() {
    #[rustfmt::skip]
    let cases: [(&str, &[f64], usize, Verdict, f64); 6] = [
        ("a spike adds nothing", &[100.0, 102.0, 10_000_102.0, 104.0, 106.0, 108.0], 2, Spike, 8.0),
        ("a burst of use keeps rising", &[100.0, 102.0, 1_102.0, 1_104.0, 1_106.0, 1_108.0], 2, Counted, 1_008.0),
        ("a reset counts from zero", &[1_000.0, 1_010.0, 1_020.0, 3.0, 8.0, 13.0, 18.0], 3, Reset, 20.0 + 3.0 + 15.0),
        // A new meter that starts at 600: nothing is invented for the swap.
        ("a replacement rebases", &[1_000.0, 1_010.0, 1_020.0, 600.0, 610.0, 620.0, 630.0], 3, Reset, 20.0 + 30.0),
        ("a 5-digit register wraps", &[99_980.0, 99_990.0, 99_998.0, 7.0, 17.0, 27.0, 37.0], 3, Wrap, 18.0 + 9.0 + 30.0),
        // 8,990 is not "just under" 10,000 for the inference.
        ("a drop from 8,990 is a reset", &[8_970.0, 8_980.0, 8_990.0, 5.0, 15.0, 25.0, 35.0], 3, Reset, 20.0 + 5.0 + 30.0),
    ];
    for (what, values, at, verdict, total) in cases {
        assert_eq!(kinds(values)[at], verdict, "{what}");
        assert_eq!(added(values, CounterRules::new()), total, "{what}");
    }
    // A register of a known size wraps wherever it drops.
    let given = CounterRules::with_register(10_000.0);
    let values = [8_970.0, 8_980.0, 8_990.0, 5.0, 15.0, 25.0, 35.0];
    assert_eq!(added(&values, given), 20.0 + 1_015.0 + 30.0);
}

#[test]
fn the_newest_decisions_are_provisional() {
    let mut rules = CounterRules::new();
    let mut out = Vec::new();
    for (i, v) in [1.0, 2.0, 3.0, 4.0, 5.0].iter().enumerate() {
        rules.push(at(i as i64), *v, &mut out);
    }
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|d| !d.provisional));
    rules.finish(&mut out);
    let provisional: Vec<bool> = out.iter().map(|d| d.provisional).collect();
    assert_eq!(provisional, [false, false, true, true, true]);
}

/// A deterministic stream of numbers in [0, 1), so the corpus is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ten days of 10-minute readings of a ~12,000 L water counter using ~350 L a day, more by day
/// than by night.
fn water_counter(seed: u64) -> Series {
    let mut rng = Lcg(seed);
    let mut value = 12_000.0;
    (0..10 * 144)
        .map(|i| {
            let hour = (i % 144) / 6;
            let busy = if (7..22).contains(&hour) { 1.6 } else { 0.3 };
            value += (rng.next() * 2.0 * busy * 350.0 / 144.0 * 100.0).round() / 100.0;
            (at(i * 10), value)
        })
        .collect()
}

/// Daily buckets of the ten days, fed as a store feeds a rollup: the readings of the range and
/// the context around it.
fn daily(readings: &[(DateTime<Utc>, f64)], first_day: i64, days: i64) -> Vec<Bucket> {
    let from = at(first_day * 1440);
    let range = TimeRange::new(from, from + Duration::days(days)).unwrap();
    rollup(readings, range, Granularity::Day)
}

fn rollup(readings: &[(DateTime<Utc>, f64)], range: TimeRange, g: Granularity) -> Vec<Bucket> {
    rollup_in(readings, range, g, Tz::UTC)
}

fn rollup_in(
    readings: &[(DateTime<Utc>, f64)],
    range: TimeRange,
    g: Granularity,
    zone: Tz,
) -> Vec<Bucket> {
    let mut b = RollupBuilder::new(range, g, zone, Kind::Cumulative).unwrap();
    let start = readings.partition_point(|(t, _)| *t < range.from());
    let end = readings.partition_point(|(t, _)| *t < range.to());
    let lo = start.saturating_sub(CONTEXT_BEFORE);
    let hi = (end + WINDOW).min(readings.len());
    for (t, v) in &readings[lo..hi] {
        b.push(*t, *v).unwrap();
    }
    b.finish()
}

fn values(buckets: &[Bucket]) -> Vec<f64> {
    buckets.iter().map(|b| b.value.unwrap_or(0.0)).collect()
}

/// Replaces the readings at `at` with `fault(clean value before, clean value)`; answers the
/// faulted series and the true series (the faulted readings removed: by the convention, their
/// use moves to the next good reading).
fn inject(
    clean: &[(DateTime<Utc>, f64)],
    positions: &[usize],
    fault: impl Fn(f64, f64, usize) -> f64,
) -> (Series, Series) {
    let mut faulted = clean.to_vec();
    for &i in positions {
        faulted[i].1 = fault(clean[i - 1].1, clean[i].1, i);
    }
    let truth = clean
        .iter()
        .enumerate()
        .filter(|(i, _)| !positions.contains(i))
        .map(|(_, r)| *r)
        .collect();
    (faulted, truth)
}

fn assert_days_match(faulted: &[(DateTime<Utc>, f64)], truth: &[(DateTime<Utc>, f64)]) {
    let got = values(&daily(faulted, 0, 10));
    let want = values(&daily(truth, 0, 10));
    for (day, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(*g >= 0.0, "day {day} is negative: {g}");
        assert!((g - w).abs() <= 1e-3 * w.max(1.0), "day {day}: {g} vs {w}");
    }
    let total = |v: &[f64]| v.iter().sum::<f64>();
    assert!((total(&got) - total(&want)).abs() < 1e-6);
}

#[test]
fn the_issue_corpus_gives_the_true_daily_use() {
    let clean = water_counter(7);
    // Every 37th reading a zero (power blip, bad radio frame).
    let zeros: Vec<usize> = (20..clean.len() - 10).step_by(37).collect();
    let (faulted, truth) = inject(&clean, &zeros, |_, _, _| 0.0);
    assert_days_match(&faulted, &truth);
    let counts: u32 = daily(&faulted, 0, 10).iter().map(|b| b.glitches).sum();
    assert_eq!(counts as usize, zeros.len());

    // Small backward steps (-0.1 to -0.5 L) every 23rd reading.
    let steps: Vec<usize> = (20..clean.len() - 10).step_by(23).collect();
    let (faulted, truth) = inject(&clean, &steps, |before, _, i| {
        before - 0.1 - 0.1 * (i % 5) as f64
    });
    assert_days_match(&faulted, &truth);

    // One absurd value for one sample, then back.
    let (faulted, truth) = inject(&clean, &[700], |before, _, _| before + 10_000_000.0);
    assert_days_match(&faulted, &truth);
    assert_eq!(
        daily(&faulted, 0, 10).iter().map(|b| b.spikes).sum::<u32>(),
        1
    );

    // A clean counter is unchanged to the last digit: last minus first, day by day.
    let days = daily(&clean, 0, 10);
    for (d, bucket) in days.iter().enumerate() {
        let day_end = clean.partition_point(|(t, _)| *t < bucket.end);
        let day_start = clean.partition_point(|(t, _)| *t < bucket.start);
        let before = if day_start == 0 {
            clean[0].1
        } else {
            clean[day_start - 1].1
        };
        assert_eq!(bucket.value, Some(clean[day_end - 1].1 - before), "day {d}");
        assert_eq!(
            (
                bucket.glitches,
                bucket.jitters,
                bucket.spikes,
                bucket.resets
            ),
            (0, 0, 0, 0)
        );
    }
}

#[test]
fn a_day_rolled_up_alone_equals_the_same_day_of_a_longer_rollup() {
    let clean = water_counter(11);
    let positions: Vec<usize> = (30..clean.len() - 10).step_by(41).collect();
    let (faulted, _) = inject(&clean, &positions, |before, _, i| match i % 3 {
        0 => 0.0,
        1 => before - 0.3,
        _ => before * 50.0,
    });
    let whole = values(&daily(&faulted, 0, 10));
    for day in 0..10 {
        let alone = values(&daily(&faulted, day, 1));
        assert_eq!(alone[0], whole[day as usize], "day {day}");
    }
    // Hours too, across a day's edge.
    let from = at(3 * 1440 - 180);
    let range = TimeRange::new(from, from + Duration::hours(6)).unwrap();
    let hours = values(&rollup(&faulted, range, Granularity::Hour));
    for (h, want) in hours.iter().enumerate() {
        let one = TimeRange::new(
            from + Duration::hours(h as i64),
            from + Duration::hours(h as i64 + 1),
        )
        .unwrap();
        assert_eq!(values(&rollup(&faulted, one, Granularity::Hour))[0], *want);
    }
}

#[test]
fn resets_and_wraps_count_the_use_across_them() {
    // A 5-digit register near its end wraps; later the meter is replaced and starts at zero.
    let mut value = 99_000.0;
    let mut readings = Vec::new();
    let mut use_total = 0.0;
    for i in 0..600 {
        let step = 3.0 + (i % 4) as f64;
        if i > 0 {
            use_total += step;
            value += step;
        }
        if value >= 100_000.0 {
            value -= 100_000.0;
        }
        if i == 400 {
            // Replaced: the new meter shows the use since the swap.
            value = step;
        }
        readings.push((at(i * 10), value));
    }
    let days = daily(&readings, 0, 10);
    let total: f64 = values(&days).iter().sum();
    assert!((total - use_total).abs() < 1e-6, "{total} vs {use_total}");
    assert_eq!(days.iter().map(|b| b.wraps).sum::<u32>(), 1);
    assert_eq!(days.iter().map(|b| b.resets).sum::<u32>(), 1);
}

/// A monotone series with faults at spaced positions, and the series without them.
fn faulted_series() -> impl Strategy<Value = (Series, Vec<usize>, Vec<u8>)> {
    (
        1_000.0..100_000.0f64,
        prop::collection::vec(0u32..40, 100..400),
        prop::collection::vec((0usize..1000, 0u8..3), 0..12),
    )
        .prop_map(|(start, steps, faults)| {
            let mut value = start;
            let readings: Series = steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    value += f64::from(*s) / 4.0;
                    (at(i as i64 * 7), value)
                })
                .collect();
            // Faults at least a full window apart, away from both ends.
            let gap = 2 * WINDOW + 1;
            let mut positions: Vec<usize> = Vec::new();
            let mut kinds = Vec::new();
            for (p, kind) in faults {
                let i = WINDOW + 1 + p % (readings.len() - 3 * WINDOW - 2);
                if positions.iter().all(|q| q.abs_diff(i) >= gap) {
                    positions.push(i);
                    kinds.push(kind);
                }
            }
            (readings, positions, kinds)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn faults_change_no_bucket_beyond_the_convention(
        (clean, positions, kinds) in faulted_series(),
        hourly in any::<bool>(),
    ) {
        let (faulted, truth) = inject(&clean, &positions, |before, _, i| {
            let k = positions.iter().position(|p| *p == i).unwrap();
            match kinds[k] {
                0 => 0.0,
                1 => before - 0.1,
                _ => before + 1_000_000.0,
            }
        });
        let from = clean[0].0;
        let to = clean[clean.len() - 1].0 + Duration::minutes(1);
        let range = TimeRange::new(from, to).unwrap();
        let g = if hourly { Granularity::Hour } else { Granularity::Day };
        let got = rollup(&faulted, range, g);
        let want = rollup(&truth, range, g);
        for (a, b) in got.iter().zip(&want) {
            prop_assert!(a.value.unwrap_or(0.0) >= 0.0);
            let (x, y) = (a.value.unwrap_or(0.0), b.value.unwrap_or(0.0));
            prop_assert!((x - y).abs() < 1e-6, "{} {} vs {}", a.label, x, y);
        }
        let set_aside: u32 = got.iter().map(|b| b.glitches + b.jitters + b.spikes).sum();
        prop_assert_eq!(set_aside as usize, positions.len());
        // A clean series is last minus first over the range.
        let total: f64 = values(&rollup(&clean, range, g)).iter().sum();
        prop_assert!((total - (clean[clean.len() - 1].1 - clean[0].1)).abs() < 1e-6);
    }
}

/// Daily buckets in a zone, fed with the context a store reads around the range.
fn local_days(readings: &[(DateTime<Utc>, f64)], first: &str, last: &str, zone: Tz) -> Vec<Bucket> {
    let range = TimeRange::local_days(
        crate::time::parse_date(first).unwrap(),
        crate::time::parse_date(last).unwrap(),
        zone,
    )
    .unwrap();
    rollup_in(readings, range, Granularity::Day, zone)
}

#[test]
fn faults_at_a_days_edge_and_on_dst_days_give_the_true_local_days() {
    let zone = Tz::Europe__London;
    // 10-minute readings from 2024-10-25 to 2024-10-29 (the clocks go back on the 27th).
    let start = DateTime::parse_from_rfc3339("2024-10-25T00:00:00+01:00")
        .unwrap()
        .with_timezone(&Utc);
    let mut value = 5_000.0;
    let clean: Series = (0..4 * 144 + 6)
        .map(|i| {
            value += 1.0 + (i % 3) as f64;
            (start + Duration::minutes(i * 10), value)
        })
        .collect();
    // Faults on each side of a local midnight, and in the repeated hour of the 27th.
    let near = |t: &str| {
        let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        clean.partition_point(|(x, _)| *x < t)
    };
    let positions = vec![
        near("2024-10-25T23:50:00+01:00"),
        near("2024-10-26T00:00:00+01:00") + 4,
        near("2024-10-27T01:30:00+01:00"),
        near("2024-10-27T01:30:00+00:00"),
        near("2024-10-28T00:00:00+00:00"),
    ];
    let (faulted, truth) = inject(&clean, &positions, |before, _, i| {
        if i % 2 == 0 {
            0.0
        } else {
            before * 1_000.0
        }
    });
    let got = local_days(&faulted, "2024-10-25", "2024-10-28", zone);
    let want = local_days(&truth, "2024-10-25", "2024-10-28", zone);
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[2].end - got[2].start,
        Duration::hours(25),
        "the 27th is 25 hours"
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.value, w.value, "{}", g.label);
        assert!(g.value.unwrap() > 0.0);
    }
    let set_aside: u32 = got.iter().map(|b| b.glitches + b.spikes).sum();
    assert_eq!(set_aside as usize, positions.len());
}
