//! What connects the parts: the schedule, the event source mappings, the import bucket's
//! EventBridge rule, the IoT topic rule, and the Function URLs.

use meter_core::contract::cloud::{self as names, iot};
use serde_json::json;

use super::functions::{Func, Functions};
use super::queues::Queues;
use super::tables::Tables;
use super::{ids, API_PUBLIC, WEBHOOK_PUBLIC, WRITE_PUBLIC};
use crate::cfn::{kind, skip_checkov, Expr, Handle, Template};
use crate::iam::{policy, Grant};

/// The Function URLs.
pub(super) struct Urls {
    pub(super) api_url: Handle<kind::FunctionUrl>,
    pub(super) webhook_url: Handle<kind::FunctionUrl>,
    pub(super) write_url: Handle<kind::FunctionUrl>,
}

/// Adds the wiring.
pub(super) fn add(
    t: &mut Template,
    functions: &Functions,
    tables: &Tables,
    queues: &Queues,
    bucket: &Handle<kind::Bucket>,
) -> Urls {
    // Schedule -> enqueue.
    let scheduler_role: Handle<kind::Role> = t.add(
        "ScheduleRole",
        "AWS::IAM::Role",
        json!({
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": Expr::pseudo("AWS::AccountId").into_value()}},
            }]},
            "Policies": [{"PolicyName": "invoke-enqueue", "PolicyDocument": policy(&[
                Grant::Invoke(functions.enqueue.function.arn()),
                Grant::SqsSend(queues.schedule_dlq.arn()),
            ])}],
        }),
    );
    t.add::<kind::Other>(
        "CollectSchedule",
        "AWS::Scheduler::Schedule",
        json!({
            "Description": "Collect every registry entry (EventBridge Scheduler -> enqueue).",
            "ScheduleExpression": Expr::param("ScheduleRate").into_value(),
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": functions.enqueue.function.arn().into_value(),
                "RoleArn": scheduler_role.arn().into_value(),
                "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600},
                "DeadLetterConfig": {"Arn": queues.schedule_dlq.arn().into_value()},
            },
        }),
    );

    // Fetch queue -> fetch.
    t.add::<kind::Other>(
        "FetchMapping",
        "AWS::Lambda::EventSourceMapping",
        json!({
            "EventSourceArn": queues.fetch_queue.arn().into_value(),
            "FunctionName": functions.fetch.function.arn().into_value(),
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": Expr::param("FetchMaxConcurrency").into_value()},
        }),
    );

    // IoT Core -> topic rule -> ingest queue -> ingest. The payload travels base64-encoded
    // beside its topic, so bare numbers and line protocol survive as published (a JSON-only
    // SELECT would drop them); a message the rule cannot deliver goes to the dead-letter queue.
    let rule_role: Handle<kind::Role> = t.add(
        "IngestTopicRuleRole",
        "AWS::IAM::Role",
        json!({
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": Expr::pseudo("AWS::AccountId").into_value()}},
            }]},
            "Policies": [{"PolicyName": "send-to-ingest", "PolicyDocument": policy(&[
                Grant::SqsSend(queues.ingest_queue.arn()),
                Grant::SqsSend(queues.ingest_dlq.arn()),
            ])}],
        }),
    );
    let sqs_action = |q: &Handle<kind::Queue>| {
        json!({"Sqs": {
            "QueueUrl": q.url().into_value(),
            "RoleArn": rule_role.arn().into_value(),
            "UseBase64": false,
        }})
    };
    t.add::<kind::Other>(
        ids::INGEST_TOPIC_RULE,
        "AWS::IoT::TopicRule",
        json!({
            "TopicRulePayload": {
                "Description": "MQTT messages of the meters -> the ingest queue (payload base64, with its topic and receipt time).",
                "Sql": Expr::sub(&iot::sql("${MqttTopicFilter}")).into_value(),
                "AwsIotSqlVersion": iot::SQL_VERSION,
                "RuleDisabled": false,
                "Actions": [sqs_action(&queues.ingest_queue)],
                "ErrorAction": sqs_action(&queues.ingest_dlq),
            },
        }),
    );
    t.add::<kind::Other>(
        "IngestMapping",
        "AWS::Lambda::EventSourceMapping",
        json!({
            "EventSourceArn": queues.ingest_queue.arn().into_value(),
            "FunctionName": functions.ingest.function.arn().into_value(),
            // Messages are small: a full batch shares one catalogue lookup per meter and fills
            // the store's batch requests.
            "BatchSize": 1000,
            "MaximumBatchingWindowInSeconds": 5,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": Expr::param("IngestMaxConcurrency").into_value()},
        }),
    );

    // Counters stream -> stream-metrics.
    t.add::<kind::Other>(
        "CountersStreamMapping",
        "AWS::Lambda::EventSourceMapping",
        json!({
            "EventSourceArn": tables.counters.stream_arn().into_value(),
            "FunctionName": functions.stream_metrics.function.arn().into_value(),
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 5,
            "BisectBatchOnFunctionError": true,
            "MaximumRetryAttempts": 5,
            "DestinationConfig": {"OnFailure": {"Destination": queues.stream_dlq.arn().into_value()}},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }),
    );

    // Bucket -> EventBridge -> import: the bucket references nothing, so there is no cycle.
    let rule: Handle<kind::Rule> = t.add(
        "ImportRule",
        "AWS::Events::Rule",
        json!({
            "Description": "Objects created in the import bucket -> import function.",
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                // Reports are not imports; resume markers are, and invoke the function again.
                "detail": {
                    "bucket": {"name": [bucket.name().into_value()]},
                    "object": {"key": [{"anything-but": {"prefix": names::QUARANTINE_PREFIX}}]},
                },
            },
            "Targets": [{
                "Id": "import",
                "Arn": functions.import.function.arn().into_value(),
                "RetryPolicy": {"MaximumRetryAttempts": 5, "MaximumEventAgeInSeconds": 3600},
                "DeadLetterConfig": {"Arn": queues.import_dlq.arn().into_value()},
            }],
        }),
    );
    t.add::<kind::Other>(
        "ImportRulePermission",
        "AWS::Lambda::Permission",
        json!({
            "Action": "lambda:InvokeFunction",
            "FunctionName": functions.import.function.arn().into_value(),
            "Principal": "events.amazonaws.com",
            "SourceArn": rule.arn().into_value(),
        }),
    );
    // EventBridge must be allowed to deliver failed events to the dead-letter queue.
    t.add::<kind::Other>(
        "ImportDeadLetterQueuePolicy",
        "AWS::SQS::QueuePolicy",
        json!({
            "Queues": [queues.import_dlq.url().into_value()],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queues.import_dlq.arn().into_value(),
                "Condition": {"ArnEquals": {"aws:SourceArn": rule.arn().into_value()}},
            }]},
        }),
    );
    t.add::<kind::Other>(
        "ImportInvokeConfig",
        "AWS::Lambda::EventInvokeConfig",
        json!({
            "FunctionName": functions.import.function.name().into_value(),
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": queues.import_dlq.arn().into_value()}},
        }),
    );

    // Function URLs, with both permissions callers need since October 2025 when public.
    let url = |t: &mut Template,
               id: &str,
               f: &Func,
               auth_param: &str,
               public: &'static str|
     -> Handle<kind::FunctionUrl> {
        let h = t.add(
            id,
            "AWS::Lambda::Url",
            json!({
                "TargetFunctionArn": f.function.arn().into_value(),
                "AuthType": Expr::param(auth_param).into_value(),
            }),
        );
        let p1 = t.add::<kind::Other>(
            &format!("{id}PublicInvokeUrl"),
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunctionUrl",
                "FunctionName": f.function.arn().into_value(),
                "Principal": "*",
                "FunctionUrlAuthType": "NONE",
            }),
        );
        t.resource(&p1).condition = Some(public.into());
        let p2 = t.add::<kind::Other>(
            &format!("{id}PublicInvoke"),
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunction",
                "FunctionName": f.function.arn().into_value(),
                "Principal": "*",
                "InvokedViaFunctionUrl": true,
            }),
        );
        t.resource(&p2).condition = Some(public.into());
        h
    };
    let api_url = url(t, "ApiUrl", &functions.api, "ApiAuthType", API_PUBLIC);
    let webhook_url = url(
        t,
        "WebhookUrl",
        &functions.webhook,
        "WebhookAuthType",
        WEBHOOK_PUBLIC,
    );
    let write_url = url(
        t,
        "WriteUrl",
        &functions.write,
        "WriteAuthType",
        WRITE_PUBLIC,
    );
    skip_checkov(t.resource(&write_url), "CKV_AWS_258",
        "InfluxDB clients and Telegraf cannot sign requests; the write function checks its token (Authorization: Token, or 1.x's password) in constant time.");
    // A public webhook is the point (Connector cannot sign); the function checks its secret.
    skip_checkov(t.resource(&webhook_url), "CKV_AWS_258",
        "mbed Connector cannot sign requests; the webhook authenticates its shared-secret header in constant time.");

    Urls {
        api_url,
        webhook_url,
        write_url,
    }
}
