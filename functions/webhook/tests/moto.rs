//! The webhook handler on Function URL requests (payload format 2.0, as Lambda delivers them),
//! against the local AWS emulator's DynamoDB and Secrets Manager.

use std::sync::Arc;

use meter_core::contract::cloud::ops;
use meter_core::ports::{CounterKey, Counters};
use meter_fn_webhook::{handle, Webhook};
use meter_lambda::metrics::Emitter;
use meter_lambda::testing::function_url_request;
use meter_store_dynamodb::{create_table, DynamoCounters, TableKind};
use serde_json::{json, Value};

fn request(body: &str, secret: Option<&str>) -> lambda_http::Request {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(s) = secret {
        headers.push(("x-webhook-secret", s));
    }
    function_url_request("PUT", "/webhook", "", &headers, Some(body))
}

fn presses(ep: &str, counts: &[u32]) -> String {
    use base64::Engine;
    let notes: Vec<Value> = counts
        .iter()
        .map(|c| {
            json!({"ep": ep, "path": "/3200/0/5501", "ct": "text/plain",
                   "payload": base64::engine::general_purpose::STANDARD.encode(c.to_string()), "max-age": 0})
        })
        .collect();
    json!({"notifications": notes}).to_string()
}

async fn body(resp: axum::response::Response) -> Value {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn presses_are_counted_once_and_only_with_the_secret() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let tag = format!("webhook-{}", std::process::id());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&ddb, TableKind::Counters, &tag).await.unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    secrets
        .create_secret()
        .name(&tag)
        .secret_string("hook-s3cret\n")
        .send()
        .await
        .unwrap();
    let counters = Arc::new(DynamoCounters::new(ddb, &tag));
    let (metrics, captured) = Emitter::capture("webhook");
    let state = Webhook::with_parts(
        counters.clone(),
        Arc::new(meter_aws::AwsSecrets::new(&sdk)),
        &tag,
    )
    .with_metrics(metrics);

    let resp = handle(
        &state,
        request(&presses("button-1", &[1, 2, 3]), Some("hook-s3cret")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp).await["counted"], 3);
    // Connector redelivers one notification: not counted again.
    let resp = handle(
        &state,
        request(&presses("button-1", &[3]), Some("hook-s3cret")),
    )
    .await
    .unwrap();
    assert_eq!(body(resp).await["duplicates"], 1);
    // Without the secret, or with a wrong one: refused, nothing counted.
    for secret in [None, Some("guess")] {
        let resp = handle(&state, request(&presses("button-2", &[1]), secret))
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // The refusals show in the metrics; the accepted requests write no line at all.
    assert_eq!(captured.lines().len(), 2);
    assert_eq!(captured.sum(ops::UNAUTHORIZED).unwrap(), 2.0);
    assert_eq!(captured.sum(ops::SERVER_ERRORS).unwrap(), 0.0);
    let now = chrono::Utc::now();
    assert_eq!(
        counters
            .total(&CounterKey::at("button-1", now))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        counters
            .total(&CounterKey::at("button-2", now))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_missing_secret_answers_503_and_counts_nothing() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let tag = format!("webhook-nosecret-{}", std::process::id());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&ddb, TableKind::Counters, &tag).await.unwrap();
    let state = Webhook::with_parts(
        Arc::new(DynamoCounters::new(ddb, &tag)),
        Arc::new(meter_aws::AwsSecrets::new(&sdk)),
        "no-such-secret",
    );
    let (metrics, captured) = Emitter::capture("webhook");
    let state = state.with_metrics(metrics);
    let resp = handle(&state, request(&presses("b", &[1]), Some("x")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(captured.sum(ops::SERVER_ERRORS).unwrap(), 1.0);
}
