//! The import handler on S3 events shaped as AWS sends them (a direct notification, EventBridge's
//! "Object Created"), against the local AWS emulator's S3 and DynamoDB.

use std::sync::Arc;

use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};
use meter_aws_io::S3Objects;
use meter_core::contract::cloud::ops;
use meter_core::ports::{RangeQuery, RangeReader};
use meter_core::time::TimeRange;
use meter_core::MeterId;
use meter_fn_import::{handle, Budget, Import};
use meter_lambda::metrics::{Captured, Emitter};
use meter_store_dynamodb::{create_table, DynamoReadings, TableKind};
use serde_json::{json, Value};

struct Env {
    s3: Client,
    bucket: String,
    store: Arc<DynamoReadings>,
    import: Import,
    metrics: Captured,
}

async fn env(test: &str) -> Option<Env> {
    let sdk = meter_aws_testing::emulator().await?;
    let s3 = Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("import-{test}-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&ddb, TableKind::Readings, &bucket)
        .await
        .unwrap();
    let store = Arc::new(DynamoReadings::new(ddb, &bucket));
    let (emitter, metrics) = Emitter::capture("import");
    let import = Import::with_parts(Arc::new(S3Objects::from_sdk(&sdk)), store.clone())
        .with_metrics(emitter);
    Some(Env {
        s3,
        bucket,
        store,
        import,
        metrics,
    })
}

impl Env {
    async fn put(&self, key: &str, body: String) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into_bytes().into())
            .send()
            .await
            .unwrap();
    }

    async fn get(&self, key: &str) -> Option<Value> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        let bytes = out.body.collect().await.unwrap().into_bytes();
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    /// An S3 event notification as S3 sends it (keys URL-encoded).
    fn notification(&self, key: &str) -> Value {
        json!({"Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-11-23T12:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "import",
                "bucket": {"name": self.bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{}", self.bucket)},
                "object": {"key": key.replace(' ', "+"), "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5"}
            }
        }]})
    }

    /// The "Object Created" event S3 sends through EventBridge.
    fn bridge(&self, key: &str) -> Value {
        json!({
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-11-23T12:00:00Z",
            "region": "us-east-1",
            "resources": [format!("arn:aws:s3:::{}", self.bucket)],
            "detail": {
                "version": "0",
                "bucket": {"name": self.bucket},
                "object": {"key": key, "size": 60, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "00617F08299329D189"},
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "reason": "PutObject"
            }
        })
    }

    async fn count(&self, meter: &str, from: &str, to: &str) -> (usize, f64) {
        let mut q = RangeQuery {
            meter: MeterId::new(meter).unwrap(),
            measure: None,
            range: TimeRange::new(t(from), t(to)).unwrap(),
            limit: 5_000,
            after: None,
        };
        let (mut n, mut sum) = (0, 0.0);
        loop {
            let page = self.store.range(&q).await.unwrap();
            n += page.readings.len();
            sum += page.readings.iter().map(|r| r.value()).sum::<f64>();
            match page.next {
                Some(c) => q.after = Some(c),
                None => return (n, sum),
            }
        }
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn wide_csv() -> String {
    let mut csv = String::from("Meter,Date");
    for slot in 0..48 {
        csv.push_str(&format!(",{}:{:02}", slot / 2, (slot % 2) * 30));
    }
    csv.push('\n');
    for (meter, day) in [
        ("EE00027", "2019-01-01"),
        ("EE00027", "2019-01-02"),
        ("EE00028", "2019-01-01"),
    ] {
        csv.push_str(&format!("{meter},{day}"));
        for slot in 0..48 {
            csv.push_str(&format!(",{}", slot % 5));
        }
        csv.push('\n');
    }
    csv
}

#[tokio::test]
async fn a_wide_csv_lands_its_good_rows_and_reports_the_bad_one_idempotently() {
    let Some(env) = env("wide").await else { return };
    let mut csv = wide_csv();
    csv.push_str("EE00029,2019-13-01");
    csv.push_str(&",1".repeat(48));
    csv.push('\n');
    env.put("in/jan 2019.csv", csv).await;

    let event = env.notification("in/jan 2019.csv");
    let report = handle(&env.import, &event, Budget::Records(u64::MAX))
        .await
        .unwrap();
    assert_eq!(
        (report.objects, report.readings, report.rejected),
        (1, 144, 1)
    );
    // 48 slots of 0,1,2,3,4 repeating: 93 a day.
    assert_eq!(
        env.count("EE00027", "2019-01-01T00:00:00Z", "2019-01-03T00:00:00Z")
            .await,
        (96, 186.0)
    );
    let q = env
        .get("quarantine/in/jan 2019.csv.errors.json")
        .await
        .unwrap();
    assert_eq!(q["rejected"], 1);
    assert_eq!(q["rejections"][0]["line"], 5);
    assert_eq!(q["rejections"][0]["field"], "Date");

    // Delivered again: nothing changes.
    let again = handle(&env.import, &event, Budget::Records(u64::MAX))
        .await
        .unwrap();
    assert_eq!(again, report);
    assert_eq!(
        env.count("EE00027", "2019-01-01T00:00:00Z", "2019-01-03T00:00:00Z")
            .await,
        (96, 186.0)
    );

    // One metric line per invocation, a failed one included.
    assert!(
        handle(&env.import, &json!({"not": "an event"}), Budget::Records(1))
            .await
            .is_err()
    );
    let sum = |m| env.metrics.sum(m).unwrap();
    assert_eq!(env.metrics.lines().len(), 3);
    assert_eq!(sum(ops::READINGS_STORED), 288.0);
    assert_eq!(sum(ops::ROWS_REJECTED), 2.0);
    assert_eq!(sum(ops::INVOCATIONS_FAILED), 1.0);
}

#[tokio::test]
async fn a_pi_object_through_eventbridge_becomes_a_pool_reading() {
    let Some(env) = env("pi").await else { return };
    let key = "pool/2024/06/01/120000.json";
    env.put(
        key,
        "{\"timestamp\": 1717243200, \"celcius\": 23.437, \"fahrenheit\": 74.1866}\n".into(),
    )
    .await;
    let report = handle(&env.import, &env.bridge(key), Budget::Records(u64::MAX))
        .await
        .unwrap();
    assert_eq!((report.readings, report.rejected), (1, 0));
    assert_eq!(
        env.count("pool", "2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z")
            .await,
        (1, 23.437)
    );
    assert!(env
        .get("quarantine/pool/2024/06/01/120000.json.errors.json")
        .await
        .is_none());
    // Our own reports never import.
    let skipped = handle(
        &env.import,
        &env.bridge("quarantine/x.errors.json"),
        Budget::Records(u64::MAX),
    )
    .await
    .unwrap();
    assert_eq!(skipped.skipped, 1);
}

#[tokio::test]
async fn an_object_too_big_for_one_run_is_resumed_to_the_end_without_loss() {
    let Some(env) = env("resume").await else {
        return;
    };
    let mut csv = String::from("meter,time,value\n");
    for i in 0..6_000u32 {
        if matches!(i, 999 | 2_999 | 5_999) {
            csv.push_str(&format!("m{},2024-01-01T00:00:00Z,not-a-number\n", i % 3));
            continue;
        }
        csv.push_str(&format!(
            "m{},2024-01-{:02}T{:02}:{:02}:00Z,{}\n",
            i % 3,
            1 + i / 1440,
            (i / 60) % 24,
            i % 60,
            i % 7
        ));
    }
    env.put("big/readings.csv", csv).await;
    // Each run stops after 2,500 records: three runs, chained by resume markers.
    let mut event = env.notification("big/readings.csv");
    let mut runs = 0;
    let mut readings = 0;
    let mut rejected = 0;
    loop {
        runs += 1;
        let report = handle(&env.import, &event, Budget::Records(2_500))
            .await
            .unwrap();
        readings += report.readings;
        rejected += report.rejected;
        if report.resumed == 0 {
            break;
        }
        let marker = env.get("_resume/big/readings.csv.json").await.unwrap();
        assert_eq!(marker["skip"], 2_500 * runs);
        event = env.bridge("_resume/big/readings.csv.json");
    }
    assert_eq!(runs, 3);
    assert_eq!((readings, rejected), (5_997, 3));
    let mut stored = 0;
    for m in ["m0", "m1", "m2"] {
        stored += env
            .count(m, "2024-01-01T00:00:00Z", "2024-01-06T00:00:00Z")
            .await
            .0;
    }
    assert_eq!(stored, 5_997);
    // Each part reports its own rejects: records 1000, 3000 and 6000 fell in parts 0, 1 and 2.
    let first = env
        .get("quarantine/big/readings.csv.errors.json")
        .await
        .unwrap();
    assert_eq!(first["rejections"][0]["line"], 1_001);
    let second = env
        .get("quarantine/big/readings.csv.part-1.errors.json")
        .await
        .unwrap();
    assert_eq!(second["rejections"][0]["line"], 3_001);
    assert_eq!(second["first_record"], 2_500);
    assert!(env
        .get("quarantine/big/readings.csv.part-2.errors.json")
        .await
        .is_some());
}

#[tokio::test]
async fn an_unreadable_object_gets_a_report_saying_why() {
    let Some(env) = env("unknown").await else {
        return;
    };
    env.put("in/photo.bin", "\u{1}\u{2}binary".into()).await;
    let report = handle(
        &env.import,
        &env.notification("in/photo.bin"),
        Budget::Records(u64::MAX),
    )
    .await
    .unwrap();
    assert_eq!((report.readings, report.rejected), (0, 1));
    let q = env
        .get("quarantine/in/photo.bin.errors.json")
        .await
        .unwrap();
    assert!(
        !q["rejections"][0]["reason"].as_str().unwrap().is_empty(),
        "{q}"
    );
}
