//! The enqueue handler against the local AWS emulator: a registry of 10,000 entries in
//! DynamoDB becomes fetch jobs on an SQS queue, each enabled entry in exactly one job.

use std::collections::BTreeSet;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use meter_aws_testing::{CountCalls, Fault};
use meter_core::collect::FetchJob;
use meter_core::contract::cloud::ops;
use meter_core::ports::{MeterRegistry, RegistryEntry};
use meter_fn_enqueue::{handle, Config, Enqueue};
use meter_lambda::metrics::Emitter;
use meter_store_dynamodb::{create_table, DynamoRegistry, TableKind};

mod common;
use common::{entry, registry_and_queue};

/// The scheduled-rule event EventBridge sends (the older trigger), as AWS documents it.
fn scheduled_event() -> serde_json::Value {
    let event: CloudWatchEvent = serde_json::from_value(serde_json::json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-23T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/collect"],
        "detail": {}
    }))
    .unwrap();
    serde_json::to_value(event).unwrap()
}

#[tokio::test]
async fn ten_thousand_registry_entries_become_jobs_each_entry_once() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    // 40 SST houses (2 switched off) and 9,960 HTTP JSON identifiers.
    let entries: Vec<RegistryEntry> = (0..40)
        .map(|i| entry(format!("house-{i}"), "sst-cloud", i >= 2))
        .chain((0..9_960).map(|i| entry(format!("id-{i:05}"), "http-json", true)))
        .collect();
    let tag = format!("enqueue-{}", std::process::id());
    let (table, queue_url) = registry_and_queue(&sdk, &tag, &entries).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    let config = Config {
        registry_table: table,
        queue_url: queue_url.clone(),
    };
    let calls = CountCalls::keeping_bodies();
    let sqs_counted = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let state = Enqueue::with_clients(ddb.clone(), sqs_counted, &config);
    let report = handle(&state, scheduled_event()).await.unwrap();
    assert_eq!(report.entries, 10_000);
    assert_eq!(report.disabled, 2);
    // One job per enabled house, and the identifiers ten to a job, ten jobs to a request.
    assert_eq!(report.jobs, 38 + 996);
    assert_eq!(report.sent, report.jobs);
    assert_eq!(calls.get("SendMessageBatch"), 104);

    // What was sent (the emulator's queue is too slow to drain 1,034 messages in a test).
    let mut seen = BTreeSet::new();
    let mut jobs = 0;
    for body in calls.bodies("SendMessageBatch") {
        let request: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(request["QueueUrl"], queue_url.as_str());
        for e in request["Entries"].as_array().unwrap() {
            jobs += 1;
            let job = FetchJob::parse(e["MessageBody"].as_str().unwrap()).unwrap();
            assert!(job.entries.len() <= 10);
            for id in job.entries {
                assert!(seen.insert(id.to_string()), "{id} queued twice");
            }
        }
    }
    assert_eq!(jobs, report.jobs);
    assert_eq!(seen.len(), 9_998);
    assert!(!seen.contains("house-0") && !seen.contains("house-1"));

    // And the queue holds them: a receive answers jobs as sent.
    let got = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 10);
    for m in got.messages() {
        FetchJob::parse(m.body().unwrap()).unwrap();
    }
}

#[tokio::test]
async fn a_scheduler_invocation_queues_the_same_jobs_as_a_scheduled_rule() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let entries: Vec<RegistryEntry> = (0..25)
        .map(|i| entry(format!("id-{i:02}"), "http-json", true))
        .collect();
    let tag = format!("sched-{}", std::process::id());
    let (table, queue_url) = registry_and_queue(&sdk, &tag, &entries).await;
    let state = Enqueue::new(
        &sdk,
        &Config {
            registry_table: table,
            queue_url,
        },
    );
    // EventBridge Scheduler invokes with the schedule's input (none here).
    let a = handle(&state, serde_json::json!({})).await.unwrap();
    let b = handle(&state, scheduled_event()).await.unwrap();
    assert_eq!(a, b);
    assert_eq!((a.entries, a.jobs, a.sent), (25, 3, 3));
}

#[tokio::test]
async fn the_sdk_retries_of_a_run_show_in_its_metrics() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let entries: Vec<RegistryEntry> = (0..5)
        .map(|i| entry(format!("id-{i:02}"), "http-json", true))
        .collect();
    let tag = format!("retries-{}", std::process::id());
    let (table, queue_url) = registry_and_queue(&sdk, &tag, &entries).await;
    // SQS throttles the first two attempts; the SDK's third succeeds.
    let throttle = Fault::new(
        "SendMessageBatch",
        2,
        400,
        "application/x-amz-json-1.0",
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(throttle.clone())
            .build(),
    );
    let (metrics, captured) = Emitter::capture("enqueue");
    let config = Config {
        registry_table: table,
        queue_url,
    };
    let state = Enqueue::with_clients(aws_sdk_dynamodb::Client::new(&sdk), sqs, &config)
        .with_metrics(metrics);
    let report = handle(&state, serde_json::json!({})).await.unwrap();
    assert_eq!((report.jobs, report.sent, throttle.left()), (1, 1, 0));
    assert_eq!(captured.sum(ops::AWS_RETRIES).unwrap(), 2.0);
    assert_eq!(captured.sum(ops::INVOCATIONS_FAILED).unwrap(), 0.0);
    let line = meter_lambda::metrics::read(&captured.lines()[0]).unwrap();
    assert_eq!(line.namespace, "meterflow");
    assert_eq!(
        line.dimensions,
        vec![("FunctionName".to_owned(), "enqueue".to_owned())]
    );
}

#[tokio::test]
async fn a_missing_queue_fails_the_run_so_the_schedule_retries() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let table = format!("enqueue-noqueue-{}", std::process::id());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&ddb, TableKind::Registry, &table)
        .await
        .unwrap();
    DynamoRegistry::new(ddb, &table)
        .put(&entry("house-1".into(), "sst-cloud", true))
        .await
        .unwrap();
    let state = Enqueue::new(
        &sdk,
        &Config {
            registry_table: table,
            queue_url: format!(
                "{}/123456789012/no-such-queue",
                std::env::var("AWS_ENDPOINT_URL").unwrap()
            ),
        },
    );
    let (metrics, captured) = Emitter::capture("enqueue");
    let state = state.with_metrics(metrics);
    let err = handle(&state, scheduled_event()).await.unwrap_err();
    assert_eq!(captured.sum(ops::INVOCATIONS_FAILED).unwrap(), 1.0);
    assert!(
        err.to_string().contains("not queued") || err.to_string().contains("queueing"),
        "{err}"
    );
}
