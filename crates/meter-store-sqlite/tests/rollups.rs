//! Stored rollups: what the SQLite store serves from its hourly and daily aggregates equals what
//! the raw rollup builder computes from the final readings, however the readings were written.

use std::collections::BTreeMap;

use meter_core::contract::PARAM_REGISTER_DIGITS;
use meter_core::ports::{MeterRegistry, RegistryEntry, RollupQuery};
use meter_core::testing::rollup_cases::{self, agree, reference, Case};
use meter_core::{MeterId, SourceName};
use meter_store_sqlite::SqliteStore;
use proptest::prelude::*;

fn entry(case: &Case) -> RegistryEntry {
    let mut params = BTreeMap::new();
    if case.register.is_some() {
        params.insert(PARAM_REGISTER_DIGITS.to_owned(), "3".to_owned());
    }
    RegistryEntry {
        id: MeterId::new(&case.meter).unwrap(),
        source: SourceName::new("test").unwrap(),
        params,
        zone: Some(case.zone.name().to_owned()),
        enabled: true,
    }
}

fn check(s: &SqliteStore, case: &Case) -> Result<(), TestCaseError> {
    for q in &case.queries {
        let query = RollupQuery::new(
            MeterId::new(&case.meter).unwrap(),
            None,
            q.range,
            q.granularity,
            q.zone,
        )
        .with_register(case.register);
        let got = s.rollup_sync(&query).map(|r| r.buckets);
        let want = reference(case, q);
        match (got, want) {
            (Ok(got), Ok(want)) => {
                if let Err(e) = agree(&got, &want) {
                    return Err(TestCaseError::fail(format!("{q:?}: {e}")));
                }
            }
            (got, want) => prop_assert_eq!(got.is_err(), want.is_err(), "{:?}", q),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stored_rollups_equal_the_raw_builder(case in rollup_cases::case(), open in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("p.db")).unwrap();
        if !case.register_late {
            rt.block_on(s.put(&entry(&case))).unwrap();
        }
        for batch in &case.writes {
            let report = if open {
                s.write_open(batch).unwrap().report
            } else {
                s.write_batch(batch).unwrap()
            };
            prop_assert!(report.failures.is_empty(), "{:?}", report.failures);
        }
        s.commit_open().unwrap();
        if case.register_late {
            // The entry's zone and register size rebuild the rollups kept without them.
            rt.block_on(s.put(&entry(&case))).unwrap();
        }
        check(&s, &case)?;
        // A rebuild from the readings gives the same rollups.
        prop_assert_eq!(s.rebuild_rollups(None).unwrap(), 1);
        check(&s, &case)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A commit gathers the aggregate rows of all its series and writes them together: series
    /// written in the same batches, some appended and some overlapping what is stored, each
    /// still get their own rollups.
    #[test]
    fn series_sharing_batches_keep_their_own_rollups(
        cases in prop::collection::vec(rollup_cases::case(), 3),
        open in any::<bool>(),
    ) {
        let cases: Vec<Case> = cases
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.for_meter(&format!("m{i}")))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("p.db")).unwrap();
        for case in cases.iter().filter(|c| !c.register_late) {
            rt.block_on(s.put(&entry(case))).unwrap();
        }
        let most = cases.iter().map(|c| c.writes.len()).max().unwrap_or(0);
        for i in 0..most {
            let batch: Vec<_> = cases
                .iter()
                .filter_map(|c| c.writes.get(i))
                .flatten()
                .cloned()
                .collect();
            let report = if open {
                s.write_open(&batch).unwrap().report
            } else {
                s.write_batch(&batch).unwrap()
            };
            prop_assert!(report.failures.is_empty(), "{:?}", report.failures);
        }
        s.commit_open().unwrap();
        for case in cases.iter().filter(|c| c.register_late) {
            rt.block_on(s.put(&entry(case))).unwrap();
        }
        for case in &cases {
            check(&s, case)?;
        }
    }
}
