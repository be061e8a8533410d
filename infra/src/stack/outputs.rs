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
    // One output a line: name, description, value, condition.
    #[rustfmt::skip]
    let outputs = [
        ("ApiUrl", "The API's Function URL.", urls.api_url.url(), None),
        ("WebhookUrl", "The URL to register as the mbed Connector callback.", urls.webhook_url.url(), None),
        ("WriteUrl", "The InfluxDB write API (POST /api/v2/write, POST /write).", urls.write_url.url(), None),
        ("WriteTokenSecretArn", "The write API's token.", secrets.write_secret.arn(), None),
        ("IngestQueueUrl", "MQTT messages from the IoT topic rule.", queues.ingest_queue.url(), None),
        ("IngestDeadLetterQueueUrl", "MQTT messages that kept failing or could not be delivered.", queues.ingest_dlq.url(), None),
        ("ImportBucketName", "Put CSV and Pi JSON files here.", bucket.name(), None),
        ("RegistryTableName", "The registry table.", tables.registry.name(), None),
        ("ReadingsTableName", "The readings table (HistoryStore=dynamodb).", tables.readings.name(), Some(USE_DYNAMODB)),
        ("ForecastsTableName", "The forecasts table.", tables.forecasts.name(), None),
        ("CountersTableName", "The counters table.", tables.counters.name(), None),
        ("FetchQueueUrl", "The fetch job queue.", queues.fetch_queue.url(), None),
        ("FetchDeadLetterQueueUrl", "Fetch jobs that kept failing.", queues.fetch_dlq.url(), None),
        ("ImportDeadLetterQueueUrl", "Import events that kept failing.", queues.import_dlq.url(), None),
        ("TimestreamDatabaseName", "The Timestream database (HistoryStore=timestream).", tables.ts_db.name(), Some(USE_TIMESTREAM)),
        ("TimestreamTableName", "The Timestream table (HistoryStore=timestream).", tables.ts_table.name(), Some(USE_TIMESTREAM)),
        ("SstSecretArn", "Put the SST Cloud token here.", secrets.sst_secret.arn(), None),
        ("ApiTokenSecretArn", "The API's bearer token.", secrets.api_secret.arn(), None),
        ("WebhookSecretArn", "The webhook's shared secret.", secrets.hook_secret.arn(), None),
    ];
    for (name, description, value, condition) in outputs {
        t.output(name, description, value, condition);
    }
    for (f, name) in functions.iter().zip(names::FUNCTIONS) {
        t.output(
            &format!("{}FunctionName", pascal(name)),
            &format!("The {name} function."),
            f.function.name(),
            None,
        );
    }
}
