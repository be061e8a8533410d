//! The fetch handler on SQS events shaped as Lambda delivers them, against the local AWS
//! emulator (DynamoDB registry, readings and forecasts; Timestream as the other history store)
//! and seed 003's stand-in API.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Duration, Utc};
use meter_core::contract::cloud::ops;
use meter_core::ports::{MeterRegistry, RangeQuery, RangeReader, ReadingWriter, RegistryEntry};
use meter_core::time::TimeRange;
use meter_core::{MeterId, SourceName};
use meter_fn_fetch::{handle, Fetch};
use meter_standins::SeriesStandIn;
use meter_store_dynamodb::{create_tables, DynamoForecasts, DynamoReadings, DynamoRegistry};
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn http_json(id: &str, url: &str) -> RegistryEntry {
    RegistryEntry {
        id: MeterId::new(id).unwrap(),
        source: SourceName::new("http-json").unwrap(),
        params: [(
            "url".to_owned(),
            format!("{url}/series/{{identifier}}?from={{from_ms}}&to={{to_ms}}"),
        )]
        .into(),
        zone: None,
        enabled: true,
    }
}

/// An SQS event as Lambda delivers it (the documented shape), one record per body.
fn sqs_event(bodies: &[&str]) -> SqsEvent {
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("059f36b4-87a3-44ab-83d2-66197564881{i}"),
                "receiptHandle": format!("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a{i}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185"
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fetch",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

async fn count(
    reader: &dyn RangeReader,
    meter: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> usize {
    let mut q = RangeQuery {
        meter: MeterId::new(meter).unwrap(),
        measure: None,
        range: TimeRange::new(from, to).unwrap(),
        limit: 1000,
        after: None,
    };
    let mut n = 0;
    loop {
        let page = reader.range(&q).await.unwrap();
        n += page.readings.len();
        match page.next {
            Some(c) => q.after = Some(c),
            None => return n,
        }
    }
}

#[tokio::test]
async fn a_batch_lands_its_good_jobs_and_fails_exactly_the_bad_ones() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let api = SeriesStandIn::start(Some(now()), None).await;
    let locked = SeriesStandIn::start(Some(now()), Some("k3y")).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let [registry, readings, forecasts, _] =
        create_tables(&ddb, &format!("fetch-{}-", std::process::id()))
            .await
            .unwrap();
    let registry = Arc::new(DynamoRegistry::new(ddb.clone(), &registry));
    registry.put(&http_json("a", &api.url())).await.unwrap();
    registry.put(&http_json("b", &api.url())).await.unwrap();
    // The locked API answers 403 without a key: that job fails, the others do not.
    registry
        .put(&http_json("locked", &locked.url()))
        .await
        .unwrap();
    let history = Arc::new(DynamoReadings::new(ddb.clone(), &readings));
    let future = Arc::new(DynamoForecasts::new(ddb.clone(), &forecasts));
    let (sources, _) = meter_sources::from_env(Arc::new(|_: &str| None), history.clone(), || None);
    let (metrics, captured) = meter_lambda::metrics::Emitter::capture("fetch");
    let state =
        Fetch::with_parts(registry, sources, history.clone(), future.clone()).with_metrics(metrics);

    let event = sqs_event(&[
        r#"{"entries":["a"]}"#,
        r#"{"identifiers":["b"]}"#,
        "not a job",
        r#"{"entries":["locked"]}"#,
        r#"{"entries":["removed-since"]}"#,
    ]);
    let response = handle(&state, event, now()).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec![
            "059f36b4-87a3-44ab-83d2-661975648812",
            "059f36b4-87a3-44ab-83d2-661975648813"
        ]
    );
    let day = Duration::hours(24);
    for id in ["a", "b"] {
        assert_eq!(
            count(&*history, id, now() - day, now()).await,
            288,
            "history of {id}"
        );
        assert_eq!(
            count(&*future, id, now(), now() + day + Duration::hours(1)).await,
            288,
            "forecasts of {id}"
        );
    }
    assert_eq!(count(&*history, "locked", now() - day, now()).await, 0);
    // The batch's metric line: what was stored, and the two jobs SQS will redeliver.
    assert_eq!(captured.lines().len(), 1);
    assert_eq!(captured.sum(ops::READINGS_STORED).unwrap(), 576.0);
    assert_eq!(captured.sum(ops::BATCH_ITEM_FAILURES).unwrap(), 2.0);
    assert_eq!(captured.sum(ops::AWS_RETRIES).unwrap(), 0.0);

    // The future points carry seed 003's TTL attribute.
    let item = ddb
        .query()
        .table_name(&forecasts)
        .key_condition_expression("identifier = :id")
        .expression_attribute_values(
            ":id",
            aws_sdk_dynamodb::types::AttributeValue::S("a".into()),
        )
        .limit(1)
        .send()
        .await
        .unwrap();
    assert!(item.items()[0].contains_key("expiry"));

    // Redelivery of the same jobs changes nothing.
    let again = handle(&state, sqs_event(&[r#"{"entries":["a"]}"#]), now()).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(count(&*history, "a", now() - day, now()).await, 288);
}

#[tokio::test]
async fn a_missing_history_table_fails_every_job_for_a_retry() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let api = SeriesStandIn::start(Some(now()), None).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let [registry, _, forecasts, _] =
        create_tables(&ddb, &format!("fetch-nohist-{}-", std::process::id()))
            .await
            .unwrap();
    let registry = Arc::new(DynamoRegistry::new(ddb.clone(), &registry));
    registry.put(&http_json("a", &api.url())).await.unwrap();
    let history: Arc<dyn ReadingWriter> =
        Arc::new(DynamoReadings::new(ddb.clone(), "no-such-table"));
    let (sources, _) = meter_sources::from_env(
        Arc::new(|_: &str| None),
        Arc::new(meter_core::testing::MemoryStore::new()),
        || None,
    );
    let state = Fetch::with_parts(
        registry,
        sources,
        history,
        Arc::new(DynamoForecasts::new(ddb, &forecasts)),
    );
    let response = handle(&state, sqs_event(&[r#"{"entries":["a"]}"#]), now()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn readings_go_to_timestream_when_it_is_the_history_store() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    // A now inside the memory store's window, so the past day lands there.
    let now = Utc::now();
    let api = SeriesStandIn::start(Some(now), None).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let tag = format!("fetch-ts-{}", std::process::id());
    let [registry, _, forecasts, _] = create_tables(&ddb, &format!("{tag}-")).await.unwrap();
    meter_store_timestream::create_table(&sdk, &tag, "history", Default::default())
        .await
        .unwrap();
    let registry = Arc::new(DynamoRegistry::new(ddb.clone(), &registry));
    registry
        .put(&http_json("test-run", &api.url()))
        .await
        .unwrap();
    let history = meter_lambda::History::new(
        &sdk,
        &meter_lambda::HistoryConfig::Timestream {
            database: tag.clone(),
            table: "history".into(),
        },
    );
    let (sources, _) =
        meter_sources::from_env(Arc::new(|_: &str| None), history.reader.clone(), || None);
    let state = Fetch::with_parts(
        registry,
        sources,
        history.writer,
        Arc::new(DynamoForecasts::new(ddb, &forecasts)),
    );
    let response = handle(&state, sqs_event(&[r#"{"identifiers":["test-run"]}"#]), now).await;
    assert!(response.batch_item_failures.is_empty());
    let records = meter_aws_testing::timestream_records(&tag).await.len();
    assert_eq!(records, 288, "the past day, in 3 requests of at most 100");
}
