use super::*;
use crate::ports::ItemFailure;
use proptest::prelude::*;

fn reading(v: f64) -> Reading {
    crate::testing::gauge(v, v as i64)
}

fn bad(file: &str, line: u64) -> Rejection {
    Rejection::decode(&Arc::from(file), line, Some("value"), "not a number", "x")
}

/// Feeds `items` (a reading of value = line, or a rejection) as one unit.
fn run_unit(p: &mut Pipeline, name: &str, items: &[bool], out: &mut Vec<Batch>) -> UnitId {
    let unit = p.begin(name, 0);
    for (i, good) in items.iter().enumerate() {
        let line = i as u64 + 2;
        let item = if *good {
            Ok(reading(line as f64))
        } else {
            Err(bad(name, line))
        };
        out.extend(p.push(unit, item, line));
    }
    p.end(unit);
    unit
}

#[test]
fn store_refusals_carry_the_source_line_and_the_unit() {
    let mut p = Pipeline::new(3);
    let mut batches = Vec::new();
    let a = run_unit(&mut p, "a.csv", &[true, false, true, true], &mut batches);
    let b = run_unit(&mut p, "b.csv", &[true, true], &mut batches);
    batches.extend(p.flush());
    assert_eq!(
        batches
            .iter()
            .map(|b| b.readings().len())
            .collect::<Vec<_>>(),
        vec![2, 3, 0]
    );
    // Rejections fill batches too: the first holds a.csv's lines 2 and 4 and the rejection of
    // line 3, the second a.csv's line 5 and b.csv's lines 2 and 3, the last only b.csv's end.
    // The store refuses b.csv's line 3.
    let mut report = Report::listing(MAX_LISTED);
    let mut commits = Vec::new();
    for (i, batch) in batches.into_iter().enumerate() {
        let result = if i == 1 {
            Ok(WriteReport {
                written: 2,
                failures: vec![ItemFailure {
                    index: 2,
                    reason: "unit conflicts".into(),
                    retryable: false,
                }],
            })
        } else {
            Ok(WriteReport {
                written: batch.readings().len(),
                failures: vec![],
            })
        };
        commits.extend(report.add(batch.settle(result)));
    }
    let fa = report.unit(a).unwrap();
    assert_eq!(
        (fa.decoded, fa.stored, fa.rejected, fa.not_stored),
        (3, 3, 1, 0)
    );
    assert_eq!(fa.rejections[0].stage, Stage::Decode);
    assert_eq!(fa.rejections[0].line, 3);
    let fb = report.unit(b).unwrap();
    assert_eq!(
        (fb.decoded, fb.stored, fb.rejected, fb.not_stored),
        (2, 1, 0, 1)
    );
    let refusal = &fb.rejections[0];
    assert_eq!(
        (
            refusal.stage,
            &*refusal.file,
            refusal.line,
            refusal.reason.as_str()
        ),
        (Stage::Store, "b.csv", 3, "unit conflicts")
    );
    assert!(refusal.raw.contains("\"value\":3"), "{}", refusal.raw);
    assert_eq!(
        (
            report.readings_decoded,
            report.readings_stored,
            report.rows_rejected
        ),
        (5, 4, 1)
    );
    assert_eq!(report.readings_not_stored, 1);
    assert!(commits.contains(&Committed {
        unit: b,
        records: 2,
        complete: true
    }));
}

#[test]
fn commits_wait_for_every_earlier_batch() {
    let mut p = Pipeline::new(2);
    let mut batches = Vec::new();
    let u = run_unit(&mut p, "o", &[true; 6], &mut batches);
    batches.extend(p.flush());
    let mut batches: Vec<Option<Batch>> = batches.into_iter().map(Some).collect();
    let mut report = Report::new();
    let mut settle = |i: usize| {
        let b = batches[i].take().unwrap();
        let n = b.readings().len();
        report.add(b.settle(Ok(WriteReport {
            written: n,
            failures: vec![],
        })))
    };
    // The third batch finishes first: nothing is committed until the first two have.
    assert!(settle(2).is_empty());
    assert_eq!(
        settle(0),
        vec![Committed {
            unit: u,
            records: 2,
            complete: false
        }]
    );
    let last = settle(1);
    assert_eq!(
        last.last(),
        Some(&Committed {
            unit: u,
            records: 6,
            complete: false
        })
    );
    // The end of the unit arrives in the (empty) flushed batch.
    assert_eq!(
        settle(3),
        vec![Committed {
            unit: u,
            records: 6,
            complete: true
        }]
    );
}

#[test]
fn a_resumed_unit_skips_the_records_done_before() {
    let mut p = Pipeline::new(100);
    let unit = p.begin("s3://b/k", 3);
    let mut out = Vec::new();
    for i in 0..5u64 {
        out.extend(p.push(unit, Ok(reading(i as f64)), i + 1));
    }
    p.end(unit);
    let batch = p.flush().unwrap();
    assert_eq!(batch.readings().len(), 2);
    let mut report = Report::new();
    let commits = report.add(batch.settle(Ok(WriteReport {
        written: 2,
        failures: vec![],
    })));
    assert_eq!(commits[0].records, 5);
    let f = report.unit(unit).unwrap();
    assert_eq!((f.first_record, f.decoded, f.stored), (3, 2, 2));
}

#[test]
fn an_unreadable_input_is_the_units_error_and_a_failed_file() {
    let mut p = Pipeline::new(10);
    let u = p.begin("x.csv", 0);
    let fatal = Rejection::unreadable(&Arc::from("x.csv"), 1, "the header lacks time", "a,b");
    assert!(fatal.is_fatal() && fatal.reason.starts_with("unreadable input: "));
    assert!(p.push(u, Err(fatal), 1).is_none());
    p.end(u);
    let v = p.begin("y.bin", 0);
    p.fail(v, "y.bin: empty, and its name does not tell the format");
    let mut report = Report::new();
    report.add(p.flush().unwrap().dry_run());
    assert_eq!(report.files_failed, 2);
    assert_eq!(report.unit(u).unwrap().rejected, 1);
    assert!(report
        .unit(v)
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("empty"));
    // A store refusal on line 0 is not mistaken for an unreadable input.
    let r = Rejection::store(&Arc::from("z"), 0, &reading(1.0), "conflict", false);
    assert!(!r.is_fatal());
}

#[test]
fn a_failed_write_fails_each_reading_with_its_retryability() {
    let mut p = Pipeline::new(10);
    let mut out = Vec::new();
    run_unit(&mut p, "f", &[true, true, false], &mut out);
    let settled = p.flush().unwrap().settle(Err(StoreError::Unavailable {
        backend: "test",
        message: "throttled".into(),
        source: None,
    }));
    assert_eq!(settled.retryable(), 2);
    let stages: Vec<Stage> = settled.rejections().map(|r| r.stage).collect();
    assert_eq!(stages, vec![Stage::Decode, Stage::Store, Stage::Store]);
    let lines: Vec<u64> = settled.rejections().map(|r| r.line).collect();
    assert_eq!(lines, vec![4, 2, 3]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the input, batch size and store refusals: every record is accounted for once,
    /// batches respect the size, and the final commit of each unit covers all its records.
    #[test]
    fn every_record_is_accounted_for(
        units in prop::collection::vec(prop::collection::vec(any::<bool>(), 0..40), 1..6),
        max_batch in 1usize..16,
        refuse_every in 1usize..7,
    ) {
        let mut p = Pipeline::new(max_batch);
        let mut batches = Vec::new();
        let ids: Vec<UnitId> = units
            .iter()
            .enumerate()
            .map(|(i, items)| run_unit(&mut p, &format!("u{i}"), items, &mut batches))
            .collect();
        batches.extend(p.flush());
        let mut report = Report::listing(usize::MAX);
        let mut last: HashMap<UnitId, Committed> = HashMap::new();
        let mut refused = 0u64;
        for b in batches {
            prop_assert!(b.readings().len() <= max_batch);
            let failures: Vec<ItemFailure> = (0..b.readings().len())
                .filter(|i| i % refuse_every == refuse_every - 1)
                .map(|index| ItemFailure { index, reason: "no".into(), retryable: false })
                .collect();
            refused += failures.len() as u64;
            let written = b.readings().len() - failures.len();
            for c in report.add(b.settle(Ok(WriteReport { written, failures }))) {
                last.insert(c.unit, c);
            }
        }
        let good: u64 = units.iter().flatten().filter(|g| **g).count() as u64;
        let total: u64 = units.iter().map(|u| u.len() as u64).sum();
        prop_assert_eq!(report.readings_decoded, good);
        prop_assert_eq!(report.readings_stored + report.readings_not_stored, good);
        prop_assert_eq!(report.readings_not_stored, refused);
        prop_assert_eq!(report.rows_rejected, total - good);
        for (id, items) in ids.iter().zip(&units) {
            let c = last[id];
            prop_assert!(c.complete);
            prop_assert_eq!(c.records, items.len() as u64);
            let f = report.unit(*id).unwrap();
            prop_assert_eq!(f.rejections.len() as u64, f.rejected + f.not_stored);
            // Every listed rejection points at a line of its own unit that was not stored.
            for r in &f.rejections {
                let i = (r.line - 2) as usize;
                prop_assert_eq!(items[i], r.stage == Stage::Store);
            }
        }
    }
}

#[test]
fn a_batch_rolled_back_after_it_settled_counts_as_not_stored() {
    let mut p = Pipeline::new(10);
    let mut batches = Vec::new();
    run_unit(&mut p, "a.csv", &[true, false, true], &mut batches);
    batches.extend(p.flush());
    let mut report = Report::new();
    for batch in batches {
        let n = batch.readings().len();
        let settled = batch.settle(Ok(WriteReport {
            written: n,
            failures: Vec::new(),
        }));
        report.add(settled.lost("rolled back: disk full"));
    }
    let f = &report.per_file[0];
    assert_eq!(
        (f.decoded, f.stored, f.not_stored, f.rejected),
        (2, 0, 2, 1)
    );
    assert_eq!(f.error.as_deref(), Some("rolled back: disk full"));
    assert_eq!((report.readings_stored, report.readings_not_stored), (0, 2));
}
