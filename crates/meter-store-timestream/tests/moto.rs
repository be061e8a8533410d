//! The Timestream adapter against the local AWS emulator (moto), started by the test command
//! (`scripts/moto.sh`), which exports `AWS_ENDPOINT_URL`. moto keeps WriteRecords payloads
//! verbatim (readable at `/moto-api/data.json`) and answers queries only with results queued at
//! `/moto-api/static/timestream/query-results`, so reads are tested with recorded answers.

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use meter_aws_testing::{unique, CountCalls, Fault};
use meter_core::ports::{RangeQuery, RangeReader, ReadingWriter, StoreError};
use meter_core::time::TimeRange;
use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Tags, Unit};
use meter_store_timestream::{
    create_table, Retention, TimestreamConfig, TimestreamReadings, WriteMode,
};
use serde_json::{json, Value};

/// A store on a fresh table, counting requests; `extra` interceptors go on the write client.
async fn make_store(
    sdk: &aws_config::SdkConfig,
    test: &str,
    mode: WriteMode,
    extra: Option<Fault>,
) -> (TimestreamReadings, CountCalls, String) {
    let db = unique(test);
    assert!(create_table(sdk, &db, "readings", Retention::default())
        .await
        .unwrap());
    assert!(
        !create_table(sdk, &db, "readings", Retention::default())
            .await
            .unwrap(),
        "a second init creates nothing"
    );
    let calls = CountCalls::default();
    let mut write = aws_sdk_timestreamwrite::config::Builder::from(sdk).interceptor(calls.clone());
    if let Some(x) = extra {
        write = write.interceptor(x);
    }
    let query = aws_sdk_timestreamquery::config::Builder::from(sdk).interceptor(calls.clone());
    let mut config = TimestreamConfig::new(&db, "readings");
    config.mode = mode;
    let store = TimestreamReadings::with_clients(
        aws_sdk_timestreamwrite::Client::from_conf(write.build()),
        aws_sdk_timestreamquery::Client::from_conf(query.build()),
        config,
    );
    (store, calls, db)
}

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap()
}

/// The records moto stored for a table, as sent.
async fn stored(db: &str) -> Vec<Value> {
    meter_aws_testing::timestream_records(db).await
}

fn counter(id: usize, value: f64, time: DateTime<Utc>, hot: bool) -> Reading {
    let meter = format!("counter-{id}");
    let kind = Kind::Cumulative;
    meter_core::testing::reading(&meter, "volume", time, value, kind, Unit::Litre).with_tags(
        Tags::new([
            ("service", "water"),
            ("location", "flat"),
            ("water_temperature", if hot { "hot" } else { "cold" }),
            ("counter_id", &id.to_string()),
        ])
        .unwrap(),
    )
}

fn now_s() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap()
}

#[tokio::test]
async fn ten_thousand_readings_take_one_hundred_requests_in_the_seed_layout() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let (store, calls, db) = make_store(&sdk, "ts-bulk", WriteMode::Insert, None).await;
    let start = now_s() - Duration::hours(2);
    // 100 counters polled 100 times: every poll shares its time, as seed 000's runs did.
    let readings: Vec<Reading> = (0..100)
        .flat_map(|step| {
            (0..100).map(move |c| {
                counter(
                    c,
                    (1000 * c + step) as f64,
                    start + Duration::minutes(step as i64),
                    c % 2 == 1,
                )
            })
        })
        .collect();
    for batch in readings.chunks(store.max_batch()) {
        let report = store.write(batch).await.unwrap();
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.written, batch.len());
    }
    assert_eq!(calls.get("WriteRecords"), 100);
    assert_eq!(calls.get("DescribeTable"), 1, "the windows are read once");
    let stats = store.stats();
    assert_eq!((stats.requests, stats.records), (100, 10_000));

    let records = stored(&db).await;
    assert_eq!(records.len(), 10_000);
    // moto keeps each record as sent: the shared time and dimensions went in CommonAttributes,
    // so a record carries only what is its own.
    let first = &records[1];
    assert_eq!(first["MeasureName"], "volume");
    assert_eq!(first["MeasureValue"], "1000");
    assert!(first.get("Time").is_none(), "{first}");
    let dims: Vec<(&str, &str)> = first["Dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["Name"].as_str().unwrap(), d["Value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        dims,
        vec![
            ("counter_id", "1"),
            ("meter", "counter-1"),
            ("water_temperature", "hot")
        ]
    );
    let sum: i64 = records
        .iter()
        .map(|r| r["MeasureValue"].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    let expected: i64 = (0..100)
        .flat_map(|s| (0..100).map(move |c| 1000 * c + s))
        .sum();
    assert_eq!(sum, expected);
}

#[tokio::test]
async fn readings_timestream_would_refuse_are_reported_and_the_rest_land() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let (store, calls, db) = make_store(&sdk, "ts-bad", WriteMode::Insert, None).await;
    let now = now_s();
    let temperature = Reading::new(
        MeterId::new("pool").unwrap(),
        MeasureName::new("temperature").unwrap(),
        23.437,
        Unit::Celsius,
        Kind::Gauge,
        now - Duration::minutes(5),
        SourceName::new("pi-logger").unwrap(),
    )
    .unwrap();
    let batch = vec![
        counter(1, 10.0, now, false),
        counter(2, 10.0, now + Duration::hours(1), false),
        counter(3, 10.5, now, false),
        temperature,
        // Older than the memory store's 30 days: a request of its own, to the magnetic store.
        counter(4, 7.0, now - Duration::days(90), true),
    ];
    let report = store.write(&batch).await.unwrap();
    assert_eq!(report.written, 3);
    let failed: Vec<usize> = report.failures.iter().map(|f| f.index).collect();
    assert_eq!(failed, vec![1, 2]);
    assert!(report.failures[0].reason.contains("15 minutes ahead"));
    assert!(report.failures[1].reason.contains("whole litres"));
    assert_eq!(
        calls.get("WriteRecords"),
        2,
        "recent and old readings go apart"
    );

    let records = stored(&db).await;
    assert_eq!(records.len(), 3);
    let multi = records
        .iter()
        .find(|r| r["MeasureName"] == "temperature")
        .unwrap();
    assert_eq!(
        multi["MeasureValues"],
        json!([{"Name": "value", "Value": "23.437", "Type": "DOUBLE"}])
    );
    assert!(records.iter().any(|r| r["MeasureValue"] == "7"));
}

#[tokio::test]
async fn old_readings_are_refused_up_front_when_the_table_has_no_magnetic_writes() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let db = unique("ts-mem");
    let client = aws_sdk_timestreamwrite::Client::new(&sdk);
    client
        .create_database()
        .database_name(&db)
        .send()
        .await
        .unwrap();
    client
        .create_table()
        .database_name(&db)
        .table_name("t")
        .retention_properties(
            aws_sdk_timestreamwrite::types::RetentionProperties::builder()
                .memory_store_retention_period_in_hours(24)
                .magnetic_store_retention_period_in_days(30)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let store = TimestreamReadings::new(&sdk, TimestreamConfig::new(&db, "t"));
    let now = now_s();
    let report = store
        .write(&[
            counter(1, 1.0, now - Duration::days(2), false),
            counter(1, 2.0, now, false),
        ])
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0]
            .reason
            .contains("older than the memory store's 24 h"),
        "{}",
        report.failures[0].reason
    );
    assert_eq!(stored(&db).await.len(), 1);
}

#[tokio::test]
async fn a_missing_table_is_a_refusal_naming_it() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let store = TimestreamReadings::new(&sdk, TimestreamConfig::new(unique("nodb"), "readings"));
    let err = store
        .write(&[counter(1, 1.0, now_s(), false)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("ResourceNotFound"), "{err}");
}

/// The first WriteRecords answered with a RejectedRecordsException in the shape Timestream
/// sends (HTTP 419, awsJson 1.0), rejecting record 1 as a conflicting duplicate.
fn reject_once() -> Fault {
    let body = json!({
        "__type": "com.amazonaws.timestream.v20181101#RejectedRecordsException",
        "Message": "One or more records have been rejected. See RejectedRecords for details.",
        "RejectedRecords": [{
            "RecordIndex": 1,
            "Reason": "A record with the same time, dimensions and measure name already exists with a different measure value.",
            "ExistingVersion": 1
        }]
    });
    Fault::new(
        "WriteRecords",
        1,
        419,
        "application/x-amz-json-1.0",
        body.to_string(),
    )
}

#[tokio::test]
async fn a_rejected_conflict_is_reported_or_upserted_with_a_higher_version() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let now = now_s();
    let batch = [
        counter(1, 1.0, now, false),
        counter(2, 2.0, now, false),
        counter(3, 3.0, now, false),
    ];

    let (store, calls, _) =
        make_store(&sdk, "ts-rej", WriteMode::Insert, Some(reject_once())).await;
    let report = store.write(&batch).await.unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].index, 1);
    assert!(report.failures[0]
        .reason
        .contains("different measure value"));
    assert!(report.failures[0].reason.contains("upsert"));
    assert_eq!(calls.get("WriteRecords"), 1);

    let (store, calls, db) =
        make_store(&sdk, "ts-ups", WriteMode::Upsert, Some(reject_once())).await;
    let report = store.write(&batch).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.written, 3);
    assert_eq!(calls.get("WriteRecords"), 2);
    // The interceptor replaced moto's answer to the first request (which moto stored whole),
    // then the retry sent only the conflicting record, with version 2.
    let records = stored(&db).await;
    assert_eq!(records.len(), 4);
    assert_eq!(records[3]["MeasureValue"], "2");
}

/// A Timestream Query answer in the service's JSON shape.
fn answer(rows: &[[Option<&str>; 8]], next: Option<&str>) -> Value {
    let columns = [
        ("meter", "VARCHAR"),
        ("unit", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("location", "VARCHAR"),
        ("measure_name", "VARCHAR"),
        ("time", "TIMESTAMP"),
        ("measure_value::bigint", "BIGINT"),
        ("value", "DOUBLE"),
    ];
    let mut out = json!({
        "QueryId": "AEDQCANVXLHZ3",
        "ColumnInfo": columns.iter().map(|(n, t)| json!({"Name": n, "Type": {"ScalarType": t}})).collect::<Vec<_>>(),
        "Rows": rows.iter().map(|r| json!({"Data": r.iter().map(|c| match c {
            Some(v) => json!({"ScalarValue": v}),
            None => json!({"NullValue": true}),
        }).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "QueryStatus": {"ProgressPercentage": 100.0, "CumulativeBytesScanned": 1024, "CumulativeBytesMetered": 10_000_000},
    });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    out
}

#[tokio::test]
async fn queries_follow_next_token_and_parse_into_readings() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let (store, calls, _) = make_store(&sdk, "ts-q", WriteMode::Insert, None).await;
    let meter = MeterId::new(&unique("it's-a-meter")).unwrap();
    let range = TimeRange::new(
        "2024-05-01T00:00:00Z".parse().unwrap(),
        "2024-05-02T00:00:00Z".parse().unwrap(),
    )
    .unwrap();
    let query = RangeQuery {
        meter: meter.clone(),
        measure: None,
        range,
        limit: 2,
        after: None,
    };
    let sql = store.sql().range(&meter, None, range, None, 2);
    assert!(sql.contains("'it''s-a-meter"), "{sql}");
    let m = Some(meter.as_str());
    let pages = json!({"results": {sql.clone(): [
        answer(&[[m, Some("L"), Some("cumulative"), Some("flat"), Some("volume"), Some("2024-05-01 10:00:00.000000000"), Some("100"), None]], Some("token-1")),
        // Timestream may answer a page with no rows and a token: the reader goes on.
        answer(&[], Some("token-2")),
        answer(&[
            [m, Some("L"), Some("cumulative"), Some("flat"), Some("volume"), Some("2024-05-01 10:05:00.000000000"), Some("104"), None],
            [m, Some("degC"), Some("gauge"), None, Some("temperature"), Some("2024-05-01 10:00:00.000000000"), None, Some("21.5")],
        ], None),
    ]}});
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/timestream/query-results",
            endpoint()
        ))
        .json(&pages)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());

    let page = store.range(&query).await.unwrap();
    assert_eq!(calls.get("Query"), 3);
    let got: Vec<(String, f64)> = page
        .readings
        .iter()
        .map(|r| (r.measure().to_string(), r.value()))
        .collect();
    assert_eq!(
        got,
        vec![("volume".into(), 100.0), ("volume".into(), 104.0)]
    );
    assert_eq!(page.readings[0].tags().get("location"), Some("flat"));
    assert_eq!(
        page.readings[1].time().to_rfc3339(),
        "2024-05-01T10:05:00+00:00"
    );
    let next = page.next.expect("a third row means another page");
    assert_eq!(next.reading_position().unwrap().1, 1_714_557_900_000);
}

/// The rows a rollup query answers, in the service's JSON shape: what Timestream returns for
/// `readings` under the query's rules ([`meter_core::binned::answer`] is their reference).
fn rollup_answer(
    readings: &[(i64, f64)],
    range: TimeRange,
    width: i64,
    kind: Kind,
    unit: &str,
) -> Value {
    let (bins, kept) = meter_core::binned::answer(readings, range, width, kind == Kind::Cumulative);
    let time = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.9f")
            .to_string()
    };
    let mut rows: Vec<(i64, [Option<String>; 9])> = Vec::new();
    for b in &bins {
        rows.push((
            b.start,
            [
                Some("bin".into()),
                Some(time(b.start)),
                None,
                Some(b.count.to_string()),
                Some(b.sum.to_string()),
                Some(b.min.to_string()),
                Some(b.max.to_string()),
                Some(kind.as_str().into()),
                Some(unit.into()),
            ],
        ));
    }
    for k in &kept {
        rows.push((
            k.ts,
            [
                Some("reading".into()),
                Some(time(k.ts)),
                Some(k.row.to_string()),
                None,
                Some(k.value.to_string()),
                None,
                None,
                Some(kind.as_str().into()),
                Some(unit.into()),
            ],
        ));
    }
    rows.sort_by_key(|(ts, r)| (*ts, r[0].clone()));
    let columns = [
        ("part", "VARCHAR"),
        ("time", "TIMESTAMP"),
        ("i", "BIGINT"),
        ("n", "BIGINT"),
        ("v", "DOUBLE"),
        ("lo", "DOUBLE"),
        ("hi", "DOUBLE"),
        ("kind", "VARCHAR"),
        ("unit", "VARCHAR"),
    ];
    json!({
        "QueryId": "AEDQCANVXLHZ4",
        "ColumnInfo": columns.iter().map(|(n, t)| json!({"Name": n, "Type": {"ScalarType": t}})).collect::<Vec<_>>(),
        "Rows": rows.iter().map(|(_, r)| json!({"Data": r.iter().map(|c| match c {
            Some(v) => json!({"ScalarValue": v}),
            None => json!({"NullValue": true}),
        }).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "QueryStatus": {"ProgressPercentage": 100.0, "CumulativeBytesScanned": 1024, "CumulativeBytesMetered": 10_000_000},
    })
}

/// The rollup the raw readings give, with a counter's context around the range (what the
/// adapter computed before it aggregated in the database).
fn raw_rollup(
    readings: &[(i64, f64)],
    q: &meter_core::ports::RollupQuery,
    kind: Kind,
) -> Vec<meter_core::Bucket> {
    let mut b = meter_core::rollup::RollupBuilder::for_query(q, kind).unwrap();
    let (from, to) = (
        q.range.from().timestamp_millis(),
        q.range.to().timestamp_millis(),
    );
    let start = readings.partition_point(|(ts, _)| *ts < from);
    let end = readings.partition_point(|(ts, _)| *ts < to);
    let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
    for (ts, v) in &readings[start.saturating_sub(meter_core::counter::CONTEXT_BEFORE)..start] {
        b.baseline(at(*ts), *v);
    }
    for (ts, v) in readings[start..]
        .iter()
        .take(end - start + meter_core::counter::WINDOW)
    {
        b.push(at(*ts), *v).unwrap();
    }
    b.finish_checked().unwrap()
}

async fn queue_answer(sql: &str, answer: Value) {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/timestream/query-results",
            endpoint()
        ))
        .json(&json!({"results": {sql: [answer]}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}

#[tokio::test]
async fn a_rollup_is_one_query_aggregated_in_the_database() {
    use meter_core::ports::{ReadingReader, RollupQuery};
    use meter_core::Granularity;
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let (store, calls, _) = make_store(&sdk, "ts-rollup", WriteMode::Insert, None).await;
    let zone = chrono_tz::Tz::Europe__Berlin;
    let t0: DateTime<Utc> = "2024-03-29T00:00:00Z".parse().unwrap();
    // Four days of 5-minute counter readings across the spring change, with a momentary zero,
    // a spike and a reset.
    let counter: Vec<(i64, f64)> = (0..4 * 288)
        .map(|i: i64| {
            let v = match i {
                150 => 0.0,
                450 => 1e7,
                _ if i >= 750 => (i - 750) as f64 * 0.5,
                _ => 40_000.0 + i as f64 * 0.5,
            };
            ((t0 + Duration::minutes(5 * i)).timestamp_millis(), v)
        })
        .collect();
    let gauge: Vec<(i64, f64)> = (0..4 * 288)
        .map(|i: i64| {
            let v = 20.0 + ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin() * 3.0;
            ((t0 + Duration::minutes(5 * i)).timestamp_millis(), v)
        })
        .collect();
    let range = TimeRange::local_days(
        "2024-03-29".parse().unwrap(),
        "2024-03-31".parse().unwrap(),
        zone,
    )
    .unwrap();
    for (measure, readings, kind, unit, granularity) in [
        ("volume", &counter, Kind::Cumulative, "L", Granularity::Day),
        ("volume", &counter, Kind::Cumulative, "L", Granularity::Hour),
        (
            "temperature",
            &gauge,
            Kind::Gauge,
            "degC",
            Granularity::Hour,
        ),
    ] {
        let meter = MeterId::new(&unique("rollup")).unwrap();
        let measure = MeasureName::new(measure).unwrap();
        let q = RollupQuery::new(
            meter.clone(),
            Some(measure.clone()),
            range,
            granularity,
            zone,
        );
        let width = meter_core::binned::bin_width(range, granularity, zone)
            .unwrap()
            .unwrap();
        let sql = store.sql().rollup(&meter, &measure, range, width);
        queue_answer(&sql, rollup_answer(readings, range, width, kind, unit)).await;
        let before = calls.get("Query");
        let got = store.rollup(&q).await.unwrap();
        assert_eq!(calls.get("Query") - before, 1, "{measure} {granularity:?}");
        assert_eq!((got.kind, got.unit.to_string()), (kind, unit.to_owned()));
        let want = raw_rollup(readings, &q, kind);
        meter_core::testing::rollup_cases::agree(&got.buckets, &want).unwrap();
        if kind == Kind::Cumulative && granularity == Granularity::Day {
            let notes: Vec<String> = got.buckets.iter().map(|b| b.notes()).collect();
            assert_eq!(
                notes,
                ["1 glitch", "1 spike", "1 reset"],
                "{:?}",
                got.buckets
            );
        }
    }
    assert_eq!(store.raw_rollups(), 0);

    // A counter that sits under its level after a step back for longer than the query looks:
    // the adapter reads the raw readings instead (here the emulator has none to give).
    let stuck: Vec<(i64, f64)> = (0..200)
        .map(|i: i64| {
            let v = match i {
                0..50 => 1_000.0 + i as f64,
                50..120 => 1_048.9,
                _ => 1_050.0 + i as f64,
            };
            ((t0 + Duration::minutes(5 * i)).timestamp_millis(), v)
        })
        .collect();
    let meter = MeterId::new(&unique("stuck")).unwrap();
    let measure = MeasureName::new("volume").unwrap();
    let short = TimeRange::new(t0 + Duration::hours(1), t0 + Duration::hours(15)).unwrap();
    let q = RollupQuery::new(
        meter.clone(),
        Some(measure.clone()),
        short,
        Granularity::Hour,
        zone,
    );
    let sql = store.sql().rollup(&meter, &measure, short, 3_600_000);
    queue_answer(
        &sql,
        rollup_answer(&stuck, short, 3_600_000, Kind::Cumulative, "L"),
    )
    .await;
    let before = calls.get("Query");
    store.rollup(&q).await.unwrap();
    assert_eq!(store.raw_rollups(), 1);
    assert!(calls.get("Query") - before > 1);
}
