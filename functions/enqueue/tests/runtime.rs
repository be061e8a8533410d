//! The built enqueue binary as Lambda runs it: a process talking to a Lambda Runtime API
//! (`AWS_LAMBDA_RUNTIME_API`), invoked with a scheduled event, against the local AWS emulator.

use std::process::{Command, Stdio};

use meter_standins::runtime_api::{lambda_env, Outcome, RuntimeApi};

mod common;
use common::{entry, registry_and_queue};
use serde_json::json;

#[tokio::test]
async fn the_function_process_serves_invocations_through_the_runtime_api() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let tag = format!("runtime-{}", std::process::id());
    let entries: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| entry((*id).to_owned(), "http-json", true))
        .collect();
    let (table, queue) = registry_and_queue(&sdk, &tag, &entries).await;

    let api = RuntimeApi::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_meter-fn-enqueue"))
        .envs(lambda_env(&api, "meterflow-enqueue"))
        .env("REGISTRY_TABLE", &table)
        .env("FETCH_QUEUE_URL", &queue)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scheduled = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2026-11-23T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/collect"], "detail": {}
    });
    let first = api.invoke(scheduled.clone()).await;
    let second = api.invoke(json!({})).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let expected = json!({"entries": 3, "disabled": 0, "jobs": 1, "sent": 1});
    assert_eq!(first, Outcome::Response(expected.clone()));
    assert_eq!(second, Outcome::Response(expected));
    assert!(api.first_next().is_some());
}

#[tokio::test]
async fn a_failed_run_writes_its_metric_line_to_stdout_beside_the_json_logs() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let tag = format!("runtime-fail-{}", std::process::id());
    let entries = [entry("a".to_owned(), "http-json", true)];
    let (table, queue) = registry_and_queue(&sdk, &tag, &entries).await;
    let api = RuntimeApi::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_meter-fn-enqueue"))
        .envs(lambda_env(&api, "stack-EnqueueFunction-x1"))
        .env("REGISTRY_TABLE", &table)
        .env("FETCH_QUEUE_URL", format!("{queue}-missing"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let outcome = api.invoke(json!({})).await;
    assert!(matches!(outcome, Outcome::Error(_)), "{outcome:?}");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let metric_lines: Vec<&str> = stdout.lines().filter(|l| l.contains("\"_aws\"")).collect();
    assert_eq!(metric_lines.len(), 1, "{stdout}");
    let m = meter_lambda::metrics::read(metric_lines[0]).unwrap();
    assert_eq!(
        m.dimensions,
        vec![(
            "FunctionName".to_owned(),
            "stack-EnqueueFunction-x1".to_owned()
        )]
    );
    assert_eq!(m.values, vec![("InvocationsFailed".to_owned(), 1.0)]);
    // The log lines beside it are the runtime's JSON, one object per line.
    for l in stdout.lines().filter(|l| !l.contains("\"_aws\"")) {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn a_missing_setting_stops_the_start_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_meter-fn-enqueue"))
        .env_remove("FETCH_QUEUE_URL")
        .env("REGISTRY_TABLE", "registry")
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FETCH_QUEUE_URL"), "{err}");
}
