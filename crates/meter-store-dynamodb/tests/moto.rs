//! The DynamoDB adapters against the local AWS emulator (moto), started by the test command
//! (`scripts/moto.sh`), which exports `AWS_ENDPOINT_URL`. Each test uses tables of its own.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use meter_aws_testing::{CountCalls, Fault};
use meter_core::ports::{
    AddOutcome, CounterKey, Counters, MeterRegistry, RangeQuery, RangeReader, ReadingReader,
    ReadingWriter, RegistryEntry, RollupQuery, StoreError,
};
use meter_core::time::{parse_date, TimeRange};
use meter_core::{Granularity, Kind, MeasureName, MeterId, Reading, SourceName, Unit};
use meter_store_dynamodb::{
    create_tables, DynamoCounters, DynamoForecasts, DynamoReadings, DynamoRegistry,
};

/// A client on the emulator, or `None` (with a note) where none runs. The test command sets
/// METER_REQUIRE_MOTO, so CI cannot skip these.
async fn client() -> Option<(Client, CountCalls)> {
    let sdk = meter_aws_testing::emulator().await?;
    let counter = CountCalls::default();
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    Some((Client::from_conf(conf), counter))
}

fn prefix(test: &str) -> String {
    format!("{}-", meter_aws_testing::unique(test))
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn reading(meter: &str, measure: &str, time: DateTime<Utc>, v: f64, kind: Kind) -> Reading {
    meter_core::testing::reading(meter, measure, time, v, kind, Unit::Litre)
}

#[tokio::test]
async fn readings_land_once_page_back_and_roll_up() {
    let Some((client, calls)) = client().await else {
        return;
    };
    let [_, readings_table, _, _] = create_tables(&client, &prefix("readings")).await.unwrap();
    let store = DynamoReadings::new(client.clone(), &readings_table);
    let start = t("2024-05-01T00:00:00Z");
    let batch: Vec<Reading> = (0..5_000)
        .flat_map(|i| {
            let time = start + Duration::minutes(i);
            [
                reading("m1", "volume", time, i as f64, Kind::Cumulative),
                reading("m1", "flow", time, 1.0, Kind::Interval),
            ]
        })
        .collect();
    let before = calls.get("BatchWriteItem");
    for chunk in batch.chunks(store.max_batch()) {
        let report = store.write(chunk).await.unwrap();
        assert!(report.is_complete(), "{:?}", report.failures.first());
    }
    // 10,000 readings in 25-item requests: exactly 400 BatchWriteItem calls, and one more
    // that registers both new series.
    assert_eq!(calls.get("BatchWriteItem") - before, 401);
    // Writing the same readings again changes nothing and registers nothing.
    store.write(&batch[..1000]).await.unwrap();
    assert_eq!(calls.get("BatchWriteItem") - before, 401 + 40);

    let mut q = RangeQuery {
        meter: MeterId::new("m1").unwrap(),
        measure: None,
        range: TimeRange::new(start, start + Duration::minutes(5_000)).unwrap(),
        limit: 3_000,
        after: None,
    };
    let mut seen = 0;
    let mut last = None;
    loop {
        let page = store.range(&q).await.unwrap();
        for r in &page.readings {
            let key = (r.measure().to_string(), r.time());
            assert!(
                last.as_ref().is_none_or(|l| *l < key),
                "pages are ordered and do not repeat"
            );
            last = Some(key);
        }
        seen += page.readings.len();
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, 10_000);
    let latest = store
        .latest(Some(&MeterId::new("m1").unwrap()))
        .await
        .unwrap();
    assert_eq!(latest.len(), 2);
    assert!(latest
        .iter()
        .all(|r| r.time() == start + Duration::minutes(4_999)));
    let meters = store.meters().await.unwrap();
    assert_eq!(meters[0].series.len(), 2);
    // Known without reading the partition: its ends, not its size.
    assert_eq!(meters[0].series[0].count, None);
    assert_eq!(meters[0].series[0].first, start);
    // The ports' default rollup over this store: daily use of the counter is last minus first.
    let d = parse_date("2024-05-02").unwrap();
    let roll = store
        .rollup(&RollupQuery {
            meter: MeterId::new("m1").unwrap(),
            measure: Some(MeasureName::new("volume").unwrap()),
            range: TimeRange::local_days(d, d, Tz::UTC).unwrap(),
            granularity: Granularity::Day,
            zone: Tz::UTC,
            register: None,
        })
        .await
        .unwrap();
    // Readings every minute, value = minute index: 2024-05-02 spans minutes 1440..2879, and the
    // baseline is minute 1439, so the day's increase is 1440.
    assert_eq!(roll.buckets[0].value, Some(1440.0));
}

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#;

/// A client whose BatchWriteItem answers are throttles `times` times, with the SDK's own
/// retries off so that the adapter's retry policy is what the test sees.
async fn throttled_client(times: usize) -> Option<(Client, CountCalls, Fault)> {
    client().await?;
    let sdk = meter_aws::sdk_config().await;
    let calls = CountCalls::default();
    let fault = Fault::new(
        "BatchWriteItem",
        times,
        400,
        "application/x-amz-json-1.0",
        THROTTLED,
    );
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .interceptor(calls.clone())
        .interceptor(fault.clone())
        .build();
    Some((Client::from_conf(conf), calls, fault))
}

fn minutes(n: i64) -> Vec<Reading> {
    let start = t("2024-05-01T00:00:00Z");
    (0..n)
        .map(|i| {
            reading(
                "m",
                "volume",
                start + Duration::minutes(i),
                i as f64,
                Kind::Cumulative,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_throttled_batch_is_retried_with_backoff_until_it_lands() {
    let Some((client, calls, fault)) = throttled_client(3).await else {
        return;
    };
    let [_, table, _, _] = create_tables(&client, &prefix("throttled")).await.unwrap();
    let store = DynamoReadings::new(client, &table);
    let batch = minutes(25);
    let report = store.write(&batch).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.written, 25);
    assert_eq!(fault.left(), 0);
    assert_eq!(
        calls.get("BatchWriteItem"),
        5,
        "three throttles of the series registration, then it, then the readings"
    );
    let page = store
        .range(&RangeQuery {
            meter: MeterId::new("m").unwrap(),
            measure: None,
            range: TimeRange::new(batch[0].time(), batch[24].time() + Duration::minutes(1))
                .unwrap(),
            limit: 100,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(page.readings.len(), 25);
}

#[tokio::test]
async fn a_batch_throttled_past_the_deadline_is_reported_as_retryable() {
    let Some((client, _, _)) = throttled_client(usize::MAX).await else {
        return;
    };
    let [_, table, _, _] = create_tables(&client, &prefix("throttled")).await.unwrap();
    let store = DynamoReadings::new(client, &table)
        .with_retry_budget(std::time::Duration::from_millis(300));
    let report = store.write(&minutes(30)).await.unwrap();
    assert_eq!(report.written, 0);
    assert_eq!(report.failures.len(), 30);
    assert!(report.failures.iter().all(|f| f.retryable));
    assert!(
        report.failures[0]
            .reason
            .contains("ProvisionedThroughputExceeded"),
        "{}",
        report.failures[0].reason
    );
}

#[tokio::test]
async fn a_missing_table_is_a_clear_refusal() {
    let Some((client, _)) = client().await else {
        return;
    };
    let store = DynamoReadings::new(client, "no-such-table-anywhere");
    let err = store
        .write(&[reading(
            "m",
            "volume",
            t("2024-01-01T00:00:00Z"),
            1.0,
            Kind::Gauge,
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("ResourceNotFound"), "{err}");
}

#[tokio::test]
async fn an_oversized_registry_entry_is_refused_and_the_others_land() {
    let Some((client, calls)) = client().await else {
        return;
    };
    let [registry_table, ..] = create_tables(&client, &prefix("registry")).await.unwrap();
    let registry = DynamoRegistry::new(client, &registry_table);
    for i in 0..30 {
        let e = RegistryEntry {
            id: MeterId::new(&format!("id-{i:02}")).unwrap(),
            source: SourceName::new("http-json").unwrap(),
            params: [("url".to_owned(), format!("http://x/{i}/{{identifier}}"))].into(),
            zone: (i % 2 == 0).then(|| "Europe/London".to_owned()),
            enabled: i != 7,
        };
        registry.put(&e).await.unwrap();
    }
    let huge = RegistryEntry {
        id: MeterId::new("huge").unwrap(),
        source: SourceName::new("http-json").unwrap(),
        params: [("pad".to_owned(), "x".repeat(500 * 1024))].into(),
        zone: None,
        enabled: true,
    };
    let err = registry.put(&huge).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    let mut after = None;
    let mut ids = Vec::new();
    loop {
        let page = registry.list(after.as_ref(), 10).await.unwrap();
        ids.extend(page.entries.iter().map(|e| e.id.to_string()));
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    ids.sort();
    assert_eq!(ids.len(), 30);
    assert!(
        calls.get("Scan") >= 3,
        "the scan was paged: {} calls",
        calls.get("Scan")
    );
    let e7 = registry
        .entry(&MeterId::new("id-07").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!e7.enabled);
    assert_eq!(e7.params["url"], "http://x/7/{identifier}");
    assert!(registry
        .remove(&MeterId::new("id-07").unwrap())
        .await
        .unwrap());
    assert!(!registry
        .remove(&MeterId::new("id-07").unwrap())
        .await
        .unwrap());
}

#[tokio::test]
async fn counters_add_once_per_notification_in_the_seed_layout() {
    let Some((client, _)) = client().await else {
        return;
    };
    let [_, _, _, counters_table] = create_tables(&client, &prefix("counters")).await.unwrap();
    let counters = DynamoCounters::new(client.clone(), &counters_table);
    let key = CounterKey::at("node-001", t("2024-05-01T13:45:00Z"));
    assert_eq!(
        counters.add(&key, 1, Some("n1")).await.unwrap(),
        AddOutcome::Added(1)
    );
    assert_eq!(
        counters.add(&key, 1, Some("n1")).await.unwrap(),
        AddOutcome::Duplicate
    );
    assert_eq!(
        counters.add(&key, 1, Some("n2")).await.unwrap(),
        AddOutcome::Added(2)
    );
    assert_eq!(
        counters.add(&key, 3, None).await.unwrap(),
        AddOutcome::Added(5)
    );
    assert_eq!(counters.total(&key).await.unwrap(), 5);
    // The item is seed 002's: Endpoint, EventHour "yyyy-MM-dd HH:00:00", EventCount.
    let item = client
        .get_item()
        .table_name(&counters_table)
        .key(
            "Endpoint",
            aws_sdk_dynamodb::types::AttributeValue::S("node-001".into()),
        )
        .key(
            "EventHour",
            aws_sdk_dynamodb::types::AttributeValue::S("2024-05-01 13:00:00".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(item.item().unwrap()["EventCount"].as_n().unwrap(), "5");
}

#[tokio::test]
async fn forecasts_carry_a_ttl_and_string_values() {
    let Some((client, _)) = client().await else {
        return;
    };
    let [_, _, forecasts_table, _] = create_tables(&client, &prefix("forecasts")).await.unwrap();
    let store = DynamoForecasts::new(client.clone(), &forecasts_table);
    let now = Utc::now();
    let points: Vec<Reading> = (0..288)
        .map(|i| {
            Reading::new(
                MeterId::new("test-run").unwrap(),
                MeasureName::new("value").unwrap(),
                (i % 100) as f64,
                Unit::Dimensionless,
                Kind::Gauge,
                DateTime::from_timestamp(now.timestamp() + 300 * i, 0).unwrap(),
                SourceName::new("http-json").unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert!(store.write(&points).await.unwrap().is_complete());
    let page = store
        .range(&RangeQuery {
            meter: MeterId::new("test-run").unwrap(),
            measure: None,
            range: TimeRange::new(now - Duration::hours(1), now + Duration::days(2)).unwrap(),
            limit: 1000,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(page.readings.len(), 288);
    let scan = client
        .scan()
        .table_name(&forecasts_table)
        .limit(1)
        .send()
        .await
        .unwrap();
    let item = &scan.items()[0];
    assert!(
        item["value"].as_s().is_ok(),
        "values are strings, as seed 003 stored them"
    );
    let expiry: i64 = item["expiry"].as_n().unwrap().parse().unwrap();
    assert!(
        (expiry - (now.timestamp() + 7 * 24 * 3600)).abs() < 120,
        "a week's TTL"
    );
}

/// Identifiers with the characters of DynamoDB's expression syntax (`:`, `#`, quotes,
/// parentheses, operators) are values, never expression text: each reads back only itself.
#[tokio::test]
async fn hostile_identifiers_are_values_not_expressions() {
    let Some((client, _)) = client().await else {
        return;
    };
    let [_, readings_table, _, counters_table] =
        create_tables(&client, &prefix("inject")).await.unwrap();
    let store = DynamoReadings::new(client.clone(), &readings_table);
    let hostile = [
        "m1",
        "m1 OR series <> :s",
        ":s",
        "#sk",
        "m1) OR (attribute_exists(series)",
        "x' OR '1'='1",
        "m1\" --",
        "m1|volume",
    ];
    let time = t("2024-05-01T00:00:00Z");
    let batch: Vec<Reading> = hostile
        .iter()
        .enumerate()
        .map(|(i, m)| reading(m, "volume", time, i as f64, Kind::Gauge))
        .collect();
    assert!(store.write(&batch).await.unwrap().is_complete());
    for (i, m) in hostile.iter().enumerate() {
        let page = store
            .range(&RangeQuery {
                meter: MeterId::new(m).unwrap(),
                measure: None,
                range: TimeRange::new(time, time + Duration::hours(1)).unwrap(),
                limit: 100,
                after: None,
            })
            .await
            .unwrap();
        let values: Vec<f64> = page.readings.iter().map(Reading::value).collect();
        assert_eq!(values, vec![i as f64], "{m}");
    }
    let counters = DynamoCounters::new(client, &counters_table);
    for (i, m) in hostile.iter().enumerate() {
        let key = CounterKey::at(*m, time);
        counters.add(&key, i as u64 + 1, Some(m)).await.unwrap();
    }
    for (i, m) in hostile.iter().enumerate() {
        assert_eq!(
            counters.total(&CounterKey::at(*m, time)).await.unwrap(),
            i as u64 + 1,
            "{m}"
        );
    }
}

/// DynamoDB refuses a BatchWriteItem that holds one key twice (moto does not, so the test reads
/// the requests sent): of two readings of one instant in a write, only the later is sent, it is
/// the one stored, and both count as written.
#[tokio::test]
async fn a_key_written_twice_in_one_batch_keeps_the_later_value() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let calls = CountCalls::keeping_bodies();
    let client = Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let [_, readings_table, _, _] = create_tables(&client, &prefix("twice")).await.unwrap();
    let store = DynamoReadings::new(client.clone(), &readings_table);
    let at = t("2024-05-01T00:00:00Z");
    let batch = vec![
        reading("m1", "volume", at, 1.0, Kind::Cumulative),
        reading(
            "m1",
            "volume",
            at + Duration::minutes(1),
            2.0,
            Kind::Cumulative,
        ),
        reading("m1", "volume", at, 3.0, Kind::Cumulative),
    ];
    let report = store.write(&batch).await.unwrap();
    assert!(report.is_complete(), "{:?}", report.failures.first());
    assert_eq!(report.written, 3);
    let page = store
        .range(&RangeQuery {
            meter: MeterId::new("m1").unwrap(),
            measure: None,
            range: TimeRange::new(at, at + Duration::hours(1)).unwrap(),
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    let values: Vec<f64> = page.readings.iter().map(Reading::value).collect();
    assert_eq!(values, vec![3.0, 2.0]);
    let sent: Vec<serde_json::Value> = calls
        .bodies("BatchWriteItem")
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    for body in &sent {
        for requests in body["RequestItems"].as_object().unwrap().values() {
            let keys: Vec<String> = requests
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let item = &r["PutRequest"]["Item"];
                    format!("{}|{}", item["series"], item["ts"])
                })
                .collect();
            let mut unique = keys.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                keys.len(),
                "a request holds a key twice: {keys:?}"
            );
        }
    }
}

/// Items read by `f`, from the store's own count.
async fn items_read<F: std::future::Future<Output = ()>>(store: &DynamoReadings, f: F) -> u64 {
    use std::sync::atomic::Ordering;
    let before = store.read_cost().items.load(Ordering::Relaxed);
    f.await;
    store.read_cost().items.load(Ordering::Relaxed) - before
}

#[tokio::test]
async fn a_meters_queries_read_its_partitions_only_whatever_the_table_holds() {
    let Some((client, _)) = client().await else {
        return;
    };
    let [_, table, _, _] = create_tables(&client, &prefix("cost")).await.unwrap();
    let store = DynamoReadings::new(client.clone(), &table);
    let start = t("2024-05-01T00:00:00Z");
    let hourly: Vec<Reading> = (0..72)
        .map(|h| reading("A", "flow", start + Duration::hours(h), 2.0, Kind::Interval))
        .collect();
    assert!(store.write(&hourly).await.unwrap().is_complete());
    let first = parse_date("2024-05-01").unwrap();
    let last = parse_date("2024-05-03").unwrap();
    let daily = RollupQuery::new(
        MeterId::new("A").unwrap(),
        None,
        TimeRange::local_days(first, last, Tz::UTC).unwrap(),
        Granularity::Day,
        Tz::UTC,
    );
    let range = RangeQuery {
        meter: MeterId::new("A").unwrap(),
        measure: None,
        range: TimeRange::new(start, start + Duration::hours(6)).unwrap(),
        limit: 100,
        after: None,
    };
    let days = |store: &DynamoReadings| {
        let (store, q) = (store.clone(), daily.clone());
        async move {
            let r = store.rollup(&q).await.unwrap();
            let values: Vec<Option<f64>> = r.buckets.iter().map(|b| b.value).collect();
            assert_eq!(values, [Some(48.0); 3]);
        }
    };
    let rows = |store: &DynamoReadings| {
        let (store, q) = (store.clone(), range.clone());
        async move { assert_eq!(store.range(&q).await.unwrap().readings.len(), 6) }
    };
    // Three days: the meter's catalogue item and three stored days, not 72 readings.
    let alone = (
        items_read(&store, days(&store)).await,
        items_read(&store, rows(&store)).await,
    );
    assert_eq!(alone.0, 1 + 3);
    assert_eq!(alone.1, 1 + 6);
    // Fifty more meters change nothing a query of A reads.
    let others: Vec<Reading> = (0..50)
        .map(|m| reading(&format!("M{m:02}"), "flow", start, 1.0, Kind::Interval))
        .collect();
    let report = store.write(&others).await.unwrap();
    assert!(report.is_complete(), "{:?}", report.failures.first());
    let crowded = (
        items_read(&store, days(&store)).await,
        items_read(&store, rows(&store)).await,
    );
    assert_eq!(crowded, alone);
    // The list of every meter pages through the list's partitions.
    assert_eq!(store.meters().await.unwrap().len(), 51);
}
