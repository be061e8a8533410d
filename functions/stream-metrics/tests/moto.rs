//! The stream-metrics handler on the records the emulator's DynamoDB stream actually produced
//! for the counters table, publishing to the emulator's CloudWatch.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use chrono::{TimeZone, Utc};
use meter_aws_io::CloudWatchMetrics;
use meter_aws_testing::{CountCalls, Fault};
use meter_core::contract::cloud::ops;
use meter_core::ports::{CounterKey, Counters};
use meter_fn_stream_metrics::{change_of, handle, Config, StreamMetrics};
use meter_lambda::metrics::Emitter;
use meter_store_dynamodb::{create_table, DynamoCounters, TableKind};

fn endpoint() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(e) => Some(e),
        Err(_) => {
            assert!(std::env::var_os("METER_REQUIRE_MOTO").is_none());
            eprintln!("skipped: no AWS_ENDPOINT_URL (scripts/test.sh starts moto)");
            None
        }
    }
}

struct Setup {
    event: Event,
    count_records: Vec<String>,
}

/// Counts presses in a fresh counters table and reads its stream back.
async fn setup(endpoint: &str, tag: &str) -> Setup {
    let sdk = meter_aws::sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("{tag}-{}", std::process::id());
    create_table(&ddb, TableKind::Counters, &table)
        .await
        .unwrap();
    let counters = DynamoCounters::new(ddb.clone(), &table);
    let hour = Utc.with_ymd_and_hms(2026, 11, 23, 13, 20, 0).unwrap();
    for (ep, press) in [
        ("b1", "1"),
        ("b1", "2"),
        ("b1", "3"),
        ("b2", "1"),
        ("b1", "3"),
    ] {
        counters
            .add(&CounterKey::at(ep, hour), 1, Some(&format!("{ep}/{press}")))
            .await
            .unwrap();
    }
    assert_eq!(
        counters.total(&CounterKey::at("b1", hour)).await.unwrap(),
        3,
        "the replay is not counted"
    );
    let stream_arn = ddb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table()
        .unwrap()
        .latest_stream_arn()
        .unwrap()
        .to_owned();
    let event = meter_aws_testing::stream_event(endpoint, &stream_arn).await;
    // The records that change a count. (moto writes an update inside a transaction as two
    // records, the key alone and then the item with its count; the first adds nothing.)
    let count_records = event
        .records
        .iter()
        .filter(|r| change_of(r).unwrap().delta() != 0.0)
        .map(|r| r.change.sequence_number.clone().unwrap())
        .collect();
    Setup {
        event,
        count_records,
    }
}

#[tokio::test]
async fn stream_records_become_one_sum_per_endpoint_and_hour() {
    let Some(endpoint) = endpoint() else { return };
    let Setup {
        event,
        count_records,
    } = setup(&endpoint, "stream-ok").await;
    assert_eq!(
        count_records.len(),
        4,
        "an insert and two updates of b1, an insert of b2"
    );
    let sdk = meter_aws::sdk_config().await;
    let calls = CountCalls::keeping_bodies();
    let cw = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let namespace = format!("MbedButtonPressHour-{}", std::process::id());
    let state = StreamMetrics::with_parts(
        Arc::new(CloudWatchMetrics::new(cw.clone())),
        &Config {
            namespace: namespace.clone(),
        },
    );
    let response = handle(&state, event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(calls.get("PutMetricData"), 1, "every sum in one call");

    let hour = aws_smithy_types::DateTime::from_secs(
        Utc.with_ymd_and_hms(2026, 11, 23, 13, 0, 0)
            .unwrap()
            .timestamp(),
    );
    for (ep, presses) in [("b1", 3.0), ("b2", 1.0)] {
        let stats = cw
            .get_metric_statistics()
            .namespace(&namespace)
            .metric_name(ep)
            .start_time(hour)
            .end_time(aws_smithy_types::DateTime::from_secs(hour.secs() + 3600))
            .period(3600)
            .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
            .send()
            .await
            .unwrap();
        let sums: Vec<f64> = stats.datapoints().iter().filter_map(|d| d.sum()).collect();
        assert_eq!(sums, vec![presses], "{ep}");
    }
}

#[tokio::test]
async fn a_failed_publish_retries_exactly_the_counting_records() {
    let Some(endpoint) = endpoint() else { return };
    let Setup {
        event,
        count_records,
    } = setup(&endpoint, "stream-fail").await;
    let sdk = meter_aws::sdk_config().await;
    let unavailable = r#"<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>Service is unavailable.</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
    let cw = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&sdk)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .interceptor(Fault::new(
                "PutMetricData",
                usize::MAX,
                503,
                "text/xml",
                unavailable,
            ))
            .build(),
    );
    let state = StreamMetrics::with_parts(
        Arc::new(
            CloudWatchMetrics::new(cw).with_retry_budget(std::time::Duration::from_millis(200)),
        ),
        &Config {
            namespace: "MbedButtonPressHour".into(),
        },
    );
    let (metrics, captured) = Emitter::capture("stream-metrics");
    let state = state.with_metrics(metrics);
    let response = handle(&state, event).await;
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, count_records);
    assert_eq!(
        captured.sum(ops::BATCH_ITEM_FAILURES).unwrap(),
        count_records.len() as f64
    );
}
