//! The dashboard: readings stored and rejected, retries, refusals, dead-letter queues, errors,
//! and seed 002's button presses.

use meter_core::contract::cloud::ops;
use serde_json::{json, Value};

use super::functions::{Func, Functions};
use super::queues::Queues;
use crate::cfn::{kind, Expr, Template};

/// Adds the dashboard.
pub(super) fn add(t: &mut Template, all: &Functions, queues: &Queues) {
    let functions = all.all();
    let widget = |title: &str, metrics: Vec<Value>| {
        json!({
            "type": "metric", "width": 12, "height": 6,
            "properties": {"title": title, "region": "${AWS::Region}", "stat": "Sum", "period": 300, "metrics": metrics},
        })
    };
    // One dashboard line per (metric, function), the function by its physical name.
    let ops_lines = |pairs: &[(&str, &Func)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(metric, f)| {
                json!([
                    ops::NAMESPACE,
                    metric,
                    ops::DIMENSION,
                    format!("${{{}}}", f.function.id())
                ])
            })
            .collect()
    };
    let errors: Vec<Value> = functions
        .iter()
        .map(|f| {
            json!([
                "AWS/Lambda",
                "Errors",
                "FunctionName",
                format!("${{{}}}", f.function.id())
            ])
        })
        .collect();
    let retries: Vec<(&str, &Func)> = functions.iter().map(|f| (ops::AWS_RETRIES, *f)).collect();
    let body = json!({"widgets": [
        widget("Readings stored and rejected", ops_lines(&[
            (ops::READINGS_STORED, &all.fetch), (ops::READINGS_STORED, &all.import),
            (ops::READINGS_STORED, &all.ingest),
            (ops::ROWS_REJECTED, &all.fetch), (ops::ROWS_REJECTED, &all.import), (ops::ROWS_REJECTED, &all.stream_metrics),
            (ops::ROWS_REJECTED, &all.ingest),
        ])),
        widget("Retries and partial failures", [ops_lines(&retries), ops_lines(&[
            (ops::BATCH_ITEM_FAILURES, &all.fetch), (ops::BATCH_ITEM_FAILURES, &all.stream_metrics),
            (ops::BATCH_ITEM_FAILURES, &all.ingest),
            (ops::INVOCATIONS_FAILED, &all.enqueue), (ops::INVOCATIONS_FAILED, &all.import),
        ])].concat()),
        widget("Refused and failed requests", ops_lines(&[
            (ops::UNAUTHORIZED, &all.api), (ops::CLIENT_ERRORS, &all.api), (ops::SERVER_ERRORS, &all.api),
            (ops::UNAUTHORIZED, &all.webhook), (ops::CLIENT_ERRORS, &all.webhook), (ops::SERVER_ERRORS, &all.webhook),
            (ops::UNAUTHORIZED, &all.write), (ops::CLIENT_ERRORS, &all.write), (ops::SERVER_ERRORS, &all.write),
        ])),
        widget("Dead-letter queues", [&queues.fetch_dlq, &queues.import_dlq, &queues.stream_dlq, &queues.schedule_dlq, &queues.ingest_dlq].iter()
            .map(|q| json!(["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", format!("${{{}.QueueName}}", q.id())])).collect()),
        widget("Function errors", errors),
        widget("Button presses (seed 002)", vec![json!([{"expression": "SEARCH('{${MetricNamespace}} ', 'Sum', 3600)", "id": "presses"}])]),
    ]});
    t.add::<kind::Other>(
        "Dashboard",
        "AWS::CloudWatch::Dashboard",
        json!({
            "DashboardBody": Expr::sub(&body.to_string()).into_value(),
        }),
    );
}
