//! The meterflow stack: every function with its log group and role, the schedule, the fetch
//! queue and its dead-letter queue, the IoT topic rule with the ingest queue and its dead-letter
//! queue, the import bucket and its EventBridge rule, the tables, the
//! optional Timestream database, the Function URLs, the secrets, alarms and a dashboard.
//!
//! `template()` calls one module per part of the stack, in the order the resources appear in the
//! template: [`params`], [`tables`], [`queues`], [`secrets`], [`bucket`], [`functions`],
//! [`wiring`] (schedule, mappings, the import rule, Function URLs), [`alarms`], [`dashboard`]
//! and [`outputs`].

mod alarms;
mod bucket;
mod dashboard;
mod functions;
mod outputs;
mod params;
mod queues;
mod secrets;
mod tables;
mod wiring;

use serde_json::json;

use crate::cfn::Template;

/// The history store a variant defaults to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStore {
    /// DynamoDB (any account).
    DynamoDb,
    /// Amazon Timestream (accounts that had it before 2025-06-20).
    Timestream,
}

impl HistoryStore {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DynamoDb => "dynamodb",
            Self::Timestream => "timestream",
        }
    }
}

/// The stack's choices fixed at synthesis (the rest are CloudFormation parameters).
#[derive(Debug, Clone, Copy)]
pub struct StackOptions {
    /// The default of the `HistoryStore` parameter.
    pub history: HistoryStore,
}

fn pascal(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template parameter holding a function's code key (`stream-metrics` ->
/// `StreamMetricsCodeKey`).
pub fn code_key_parameter(function: &str) -> String {
    format!("{}CodeKey", pascal(function))
}

/// Logical ids that code outside the template looks resources up by (the end-to-end run's
/// local deployment); functions are found with [`function_id`].
pub mod ids {
    pub const REGISTRY_TABLE: &str = "RegistryTable";
    pub const READINGS_TABLE: &str = "ReadingsTable";
    pub const FORECASTS_TABLE: &str = "ForecastsTable";
    pub const COUNTERS_TABLE: &str = "CountersTable";
    pub const TIMESTREAM_DATABASE: &str = "TimestreamDatabase";
    pub const TIMESTREAM_TABLE: &str = "TimestreamTable";
    pub const FETCH_QUEUE: &str = "FetchQueue";
    pub const FETCH_DEAD_LETTER_QUEUE: &str = "FetchDeadLetterQueue";
    pub const IMPORT_BUCKET: &str = "ImportBucket";
    pub const SST_SECRET: &str = "SstSecret";
    pub const API_TOKEN_SECRET: &str = "ApiTokenSecret";
    pub const WEBHOOK_SECRET: &str = "WebhookSecret";
    pub const WRITE_TOKEN_SECRET: &str = "WriteTokenSecret";
    pub const INGEST_QUEUE: &str = "IngestQueue";
    pub const INGEST_DEAD_LETTER_QUEUE: &str = "IngestDeadLetterQueue";
    pub const INGEST_TOPIC_RULE: &str = "IngestTopicRule";
}

/// A function's logical id (`stream-metrics` -> `StreamMetricsFunction`).
pub fn function_id(function: &str) -> String {
    format!("{}Function", pascal(function))
}

const USE_TIMESTREAM: &str = "UseTimestream";
const HAS_ALARM_EMAIL: &str = "HasAlarmEmail";
const USE_DYNAMODB: &str = "UseDynamoDB";
const API_PUBLIC: &str = "ApiIsPublic";
const WEBHOOK_PUBLIC: &str = "WebhookIsPublic";
const WRITE_PUBLIC: &str = "WriteIsPublic";
const HAS_MQTT_MAPPING: &str = "HasMqttMapping";

/// Synthesises the stack.
pub fn template(options: StackOptions) -> Template {
    let mut t = Template {
        description:
            "meterflow: meter readings collected, imported, stored and served (cargo run -p infra)"
                .into(),
        ..Template::default()
    };
    t.metadata.insert(
        "cfn-lint".into(),
        json!({"config": {"ignore_checks": ["W3697"]}}),
    );
    t.metadata.insert(
        "IgnoreReasons".into(),
        json!({"W3697": "Timestream for LiveAnalytics is in maintenance mode; it is created only when HistoryStore=timestream, for accounts that still have it."}),
    );

    params::add(&mut t, options);
    let tables = tables::add(&mut t);
    let queues = queues::add(&mut t);
    let secrets = secrets::add(&mut t);
    let bucket = bucket::add(&mut t);
    let functions = functions::add(&mut t, &tables, &queues, &secrets, &bucket);
    let urls = wiring::add(&mut t, &functions, &tables, &queues, &bucket);
    alarms::add(&mut t, &functions, &queues);
    dashboard::add(&mut t, &functions, &queues);
    outputs::add(
        &mut t, &functions, &tables, &queues, &secrets, &bucket, &urls,
    );
    t
}
