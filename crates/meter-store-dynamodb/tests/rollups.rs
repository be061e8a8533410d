//! Stored rollups on DynamoDB (against moto): what the store serves from its hourly and daily
//! items equals what the raw rollup builder computes from the final readings, however they were
//! written. Few cases (each is many emulator requests); the SQLite store runs the same property
//! on many.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use meter_core::contract::PARAM_REGISTER_DIGITS;
use meter_core::ports::{MeterRegistry, ReadingReader, ReadingWriter, RegistryEntry, RollupQuery};
use meter_core::testing::rollup_cases::{self, agree, reference, Case};
use meter_core::{MeterId, SourceName};
use meter_store_dynamodb::{create_tables, DynamoReadings, DynamoRegistry};
use proptest::prelude::*;

/// The readings and registry tables every case shares (each case has a meter of its own).
static TABLES: OnceLock<(String, String)> = OnceLock::new();

/// Numbers each run's meter: a case shrunk after a failure runs again on a meter of its own
/// too, so what it finds is its own readings, not those an earlier step left in the table.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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

async fn run(case: Case) -> Result<(), TestCaseError> {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return Ok(());
    };
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    if TABLES.get().is_none() {
        let prefix = format!("{}-", meter_aws_testing::unique("rollups"));
        let [registry, readings, _, _] = create_tables(&client, &prefix).await.unwrap();
        let _ = TABLES.set((readings, registry));
    }
    let (readings, registry) = TABLES.get().unwrap();
    let registry = DynamoRegistry::new(client.clone(), registry);
    let store = DynamoReadings::new(client.clone(), readings).with_registry(registry.clone());
    if !case.register_late {
        registry.put(&entry(&case)).await.unwrap();
    }
    for batch in &case.writes {
        let report = store.write(batch).await.unwrap();
        prop_assert!(report.failures.is_empty(), "{:?}", report.failures);
    }
    let meter = MeterId::new(&case.meter).unwrap();
    if case.register_late {
        // On DynamoDB a registry change takes a rebuild.
        registry.put(&entry(&case)).await.unwrap();
        prop_assert_eq!(store.rebuild_rollups(Some(&meter)).await.unwrap(), 1);
    }
    // Every other query: each is a dozen emulator requests.
    for q in case.queries.iter().step_by(2) {
        let query = RollupQuery::new(meter.clone(), None, q.range, q.granularity, q.zone)
            .with_register(case.register);
        let got = store.rollup(&query).await.map(|r| r.buckets);
        match (got, reference(&case, q)) {
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
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn stored_rollups_equal_the_raw_builder(case in rollup_cases::case_of(80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(run(case.for_meter(&format!("prop-{n}"))))?;
    }
}
