//! The stack's outputs: URLs, names and ARNs that scripts and people look up.

use meter_core::contract::cloud as names;

use super::functions::Functions;
use super::queues::Queues;
use super::secrets::Secrets;
use super::tables::Tables;
use super::wiring::Urls;
use super::{pascal, USE_DYNAMODB, USE_TIMESTREAM};
use crate::cfn::{kind, Handle, Template};

/// Adds the outputs.
pub(super) fn add(
    t: &mut Template,
    all: &Functions,
    tables: &Tables,
    queues: &Queues,
    secrets: &Secrets,
    bucket: &Handle<kind::Bucket>,
    urls: &Urls,
) {
    let functions = all.all();
    t.output(
        "ApiUrl",
        "The API's Function URL.",
        urls.api_url.url(),
        None,
    );
    t.output(
        "WebhookUrl",
        "The URL to register as the mbed Connector callback.",
        urls.webhook_url.url(),
        None,
    );
    t.output(
        "ImportBucketName",
        "Put CSV and Pi JSON files here.",
        bucket.name(),
        None,
    );
    t.output(
        "RegistryTableName",
        "The registry table.",
        tables.registry.name(),
        None,
    );
    t.output(
        "ReadingsTableName",
        "The readings table (HistoryStore=dynamodb).",
        tables.readings.name(),
        Some(USE_DYNAMODB),
    );
    t.output(
        "ForecastsTableName",
        "The forecasts table.",
        tables.forecasts.name(),
        None,
    );
    t.output(
        "CountersTableName",
        "The counters table.",
        tables.counters.name(),
        None,
    );
    t.output(
        "FetchQueueUrl",
        "The fetch job queue.",
        queues.fetch_queue.url(),
        None,
    );
    t.output(
        "FetchDeadLetterQueueUrl",
        "Fetch jobs that kept failing.",
        queues.fetch_dlq.url(),
        None,
    );
    t.output(
        "ImportDeadLetterQueueUrl",
        "Import events that kept failing.",
        queues.import_dlq.url(),
        None,
    );
    t.output(
        "TimestreamDatabaseName",
        "The Timestream database (HistoryStore=timestream).",
        tables.ts_db.name(),
        Some(USE_TIMESTREAM),
    );
    t.output(
        "TimestreamTableName",
        "The Timestream table (HistoryStore=timestream).",
        tables.ts_table.name(),
        Some(USE_TIMESTREAM),
    );
    t.output(
        "SstSecretArn",
        "Put the SST Cloud token here.",
        secrets.sst_secret.arn(),
        None,
    );
    t.output(
        "ApiTokenSecretArn",
        "The API's bearer token.",
        secrets.api_secret.arn(),
        None,
    );
    t.output(
        "WebhookSecretArn",
        "The webhook's shared secret.",
        secrets.hook_secret.arn(),
        None,
    );
    for (f, name) in functions.iter().zip(names::FUNCTIONS) {
        t.output(
            &format!("{}FunctionName", pascal(name)),
            &format!("The {name} function."),
            f.function.name(),
            None,
        );
    }
}
