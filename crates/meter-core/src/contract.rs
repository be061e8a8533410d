//! Names shared by the code and the deployment (environment variables, file names), defined
//! once so the binaries, the functions and the template cannot drift apart.

/// The embedded store's file (`meter --store`).
pub const ENV_STORE: &str = "METER_STORE";
/// The default IANA zone for days and hours when a command names none.
pub const ENV_TZ: &str = "METER_TZ";
/// Registry param: the digits of a meter's counter register (its index wraps at 10^digits).
pub const PARAM_REGISTER_DIGITS: &str = "register_digits";
/// The log filter of the `meter` binary (tracing's `EnvFilter` syntax).
pub const ENV_LOG: &str = "METER_LOG";

/// The store's file name inside the per-user data folder.
pub const DEFAULT_STORE_FILE: &str = "meterflow.db";
/// The folder name inside the per-user data folder.
pub const DATA_DIR_NAME: &str = "meterflow";
/// The suffix of the quarantine file kept next to a store (`meterflow.db.quarantine.jsonl`).
pub const QUARANTINE_SUFFIX: &str = ".quarantine.jsonl";

/// The API's bearer token (`meter serve`).
pub const ENV_API_TOKEN: &str = "METER_API_TOKEN";
/// A file holding the API's bearer token, instead of [`ENV_API_TOKEN`].
pub const ENV_API_TOKEN_FILE: &str = "METER_API_TOKEN_FILE";
/// The mbed webhook's shared secret.
pub const ENV_WEBHOOK_SECRET: &str = "METER_WEBHOOK_SECRET";
/// The token of the InfluxDB write routes (`meter serve`); the API token when unset.
pub const ENV_WRITE_TOKEN: &str = "METER_WRITE_TOKEN";
/// The user name `meter serve --mqtt` connects to the broker with.
pub const ENV_MQTT_USERNAME: &str = "METER_MQTT_USERNAME";
/// The password `meter serve --mqtt` connects to the broker with.
pub const ENV_MQTT_PASSWORD: &str = "METER_MQTT_PASSWORD";
/// Seed 003's `x-security-token` value, when it differs from the API token.
pub const ENV_SEED003_TOKEN: &str = "METER_SEED003_TOKEN";

/// The drop folder's subfolder for imported files.
pub const DROP_DONE_DIR: &str = "done";
/// The drop folder's subfolder for files with rejected rows, next to their reports.
pub const DROP_QUARANTINE_DIR: &str = "quarantine";
/// The suffix of a dropped file's rejects report (`quarantine/<name>.errors.json`).
pub const DROP_REPORT_SUFFIX: &str = ".errors.json";

/// SST Cloud's base URL (default `https://api.sst-cloud.com`).
pub const ENV_SST_BASE_URL: &str = "SST_BASE_URL";
/// An SST Cloud API token.
pub const ENV_SST_TOKEN: &str = "SST_TOKEN";
/// Seed 000's name for the token (its typo kept), accepted so its users can swap in place.
pub const ENV_SST_TOKEN_SEED: &str = "SST_CLOUT_TOKEN";
/// The SST Cloud account's e-mail, to log in when no token is given.
pub const ENV_SST_USERNAME: &str = "SST_USERNAME";
/// The SST Cloud account's password.
pub const ENV_SST_PASSWORD: &str = "SST_PASSWORD";
/// A Secrets Manager secret holding the token.
pub const ENV_SST_SECRET_ID: &str = "SST_SECRET_ID";
/// Seed 000's name for the secret.
pub const ENV_SST_SECRET_ID_SEED: &str = "TOKEN_SECRET_NAME";
/// The `location` tag of SST readings (seed 000's `LOCATION`).
pub const ENV_LOCATION: &str = "LOCATION";
/// Seconds one SST Cloud request may take (default 30: single requests take 10-30 s).
pub const ENV_SST_TIMEOUT_SECS: &str = "SST_TIMEOUT_SECS";
/// The largest plausible use, in litres per hour since the previous reading (default 2000).
pub const ENV_SST_MAX_LITRES_PER_HOUR: &str = "SST_MAX_LITRES_PER_HOUR";
/// The registry source name of SST Cloud entries.
pub const SOURCE_SST: &str = "sst-cloud";
/// The registry source name of HTTP JSON entries.
pub const SOURCE_HTTP_JSON: &str = "http-json";

/// Names shared by the Lambda functions and the CloudFormation template (`cargo run -p infra`):
/// environment variables the template sets and the functions read, and the key attributes of
/// the tables the template creates and the adapters use.
pub mod cloud {
    /// Which history store the functions write: `dynamodb` or `timestream`.
    pub const ENV_HISTORY_STORE: &str = "HISTORY_STORE";
    /// The DynamoDB readings table (history store `dynamodb`).
    pub const ENV_READINGS_TABLE: &str = "READINGS_TABLE";
    /// The DynamoDB forecasts table (seed 003's future points, with a TTL).
    pub const ENV_FORECASTS_TABLE: &str = "FORECASTS_TABLE";
    /// The DynamoDB registry table.
    pub const ENV_REGISTRY_TABLE: &str = "REGISTRY_TABLE";
    /// The DynamoDB counters table (seed 002).
    pub const ENV_COUNTERS_TABLE: &str = "COUNTERS_TABLE";
    /// The Timestream database (seed 000's `DATABASE_NAME` is accepted too).
    pub const ENV_TIMESTREAM_DATABASE: &str = "TIMESTREAM_DATABASE";
    /// The Timestream table (seed 000's `TABLE_NAME` is accepted too).
    pub const ENV_TIMESTREAM_TABLE: &str = "TIMESTREAM_TABLE";
    /// The SQS queue of fetch jobs.
    pub const ENV_FETCH_QUEUE_URL: &str = "FETCH_QUEUE_URL";
    /// The CloudWatch namespace of the button metrics (seed 002's `MbedButtonPressHour`).
    pub const ENV_METRIC_NAMESPACE: &str = "METRIC_NAMESPACE";
    /// The Secrets Manager secret holding the API token.
    pub const ENV_API_TOKEN_SECRET: &str = "API_TOKEN_SECRET_ARN";
    /// The Secrets Manager secret holding the webhook secret.
    pub const ENV_WEBHOOK_SECRET_SECRET: &str = "WEBHOOK_SECRET_ARN";
    /// Whether the API checks bearer tokens itself (`false` behind an AWS_IAM Function URL).
    pub const ENV_API_AUTH: &str = "API_AUTH";
    /// The Secrets Manager secret holding the write API's token (InfluxDB clients' token).
    pub const ENV_WRITE_TOKEN_SECRET: &str = "WRITE_TOKEN_SECRET_ARN";
    /// The bucket whose `quarantine/` prefix keeps rejected push messages and write lines.
    pub const ENV_QUARANTINE_BUCKET: &str = "QUARANTINE_BUCKET";
    /// The TOML text of an MQTT mapping (the same as `meter serve --mqtt-map`'s file).
    pub const ENV_MQTT_MAPPING: &str = "MQTT_MAPPING";
    /// The line-protocol tag naming the meter, when not `meter` (then `device`, `host`).
    pub const ENV_METER_TAG: &str = "METER_TAG";

    /// What the IoT topic rule puts in each ingest-queue message: a JSON object with the
    /// message's topic, its payload base64-encoded (so numbers, line protocol and any bytes
    /// arrive as they were published) and the time IoT Core received it (epoch milliseconds).
    pub mod iot {
        /// The topic (`topic()`).
        pub const TOPIC: &str = "topic";
        /// The payload, base64 (`encode(*, 'base64')`).
        pub const PAYLOAD: &str = "payload";
        /// When the broker received it, in epoch milliseconds (`timestamp()`).
        pub const RECEIVED: &str = "received";
        /// The rule's SQL version (`2016-03-23` reads `encode`, `topic()` and `timestamp()`).
        pub const SQL_VERSION: &str = "2016-03-23";

        /// The rule's statement for a topic filter: every message, whatever its payload.
        pub fn sql(filter: &str) -> String {
            format!(
                "SELECT encode(*, 'base64') AS {PAYLOAD}, topic() AS {TOPIC}, timestamp() AS \
                 {RECEIVED} FROM '{filter}'"
            )
        }
    }

    /// Hours a Timestream table keeps readings in its memory store (the template's default):
    /// 30 days, so a month of late readings still lands there.
    pub const TIMESTREAM_MEMORY_RETENTION_HOURS: i64 = 720;
    /// Days a Timestream table keeps readings in its magnetic store (the template's default).
    pub const TIMESTREAM_MAGNETIC_RETENTION_DAYS: i64 = 3650;
    /// Import bucket: rejected rows of `<key>` are reported at `quarantine/<key>.errors.json`;
    /// the import function never imports this prefix.
    pub const QUARANTINE_PREFIX: &str = "quarantine/";
    /// Import bucket: rejected MQTT messages (IoT Core through the ingest queue).
    pub const MQTT_QUARANTINE_PREFIX: &str = "quarantine/mqtt/";
    /// Import bucket: rejected lines of the write API.
    pub const WRITE_QUARANTINE_PREFIX: &str = "quarantine/write/";
    /// Import bucket: markers that hand the rest of a large object to the next invocation.
    pub const RESUME_PREFIX: &str = "_resume/";
    /// Seed 002's metric namespace, the default of [`ENV_METRIC_NAMESPACE`].
    pub const DEFAULT_METRIC_NAMESPACE: &str = "MbedButtonPressHour";

    /// Registry table: partition key (string), the entry id.
    pub const REGISTRY_PK: &str = "id";
    /// Readings table: partition key (string), `<meter>#<measure>`, so "meter, time range" is
    /// one Query.
    pub const READINGS_PK: &str = "series";
    /// Readings table: sort key (number), epoch milliseconds.
    pub const READINGS_SK: &str = "ts";
    /// Forecasts table: partition key (string), seed 003's `identifier`.
    pub const FORECASTS_PK: &str = "identifier";
    /// Forecasts table: sort key (number), seed 003's `time` in epoch seconds.
    pub const FORECASTS_SK: &str = "time";
    /// Forecasts table: the TTL attribute, seed 003's `expiry`.
    pub const FORECASTS_TTL: &str = "expiry";
    /// Counters table: partition key (string), seed 002's `Endpoint`.
    pub const COUNTERS_PK: &str = "Endpoint";
    /// Counters table: sort key (string), seed 002's `EventHour`.
    pub const COUNTERS_SK: &str = "EventHour";
    /// Counters table: the `Endpoint` prefix of dedupe items, which are not counts.
    pub const COUNTERS_DEDUPE_PREFIX: &str = "#dedupe#";
    /// Counters table: seed 002's count attribute.
    pub const COUNTERS_COUNT: &str = "EventCount";
    /// Counters table: the TTL attribute of dedupe items.
    pub const COUNTERS_TTL: &str = "expires";

    /// A DynamoDB key attribute's type.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KeyType {
        /// `S`.
        String,
        /// `N`.
        Number,
    }

    impl KeyType {
        /// The attribute type's letter in DynamoDB's API and CloudFormation.
        pub fn letter(self) -> &'static str {
            match self {
                Self::String => "S",
                Self::Number => "N",
            }
        }
    }

    /// One table's key schema, TTL attribute and stream: the template and the DynamoDB
    /// store's `create_table` both build tables from these, so the two cannot drift.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TableSchema {
        /// The partition key.
        pub partition: (&'static str, KeyType),
        /// The sort key, when the table has one.
        pub sort: Option<(&'static str, KeyType)>,
        /// The TTL attribute, when items expire.
        pub ttl: Option<&'static str>,
        /// Whether the table has a stream of new and old images.
        pub stream: bool,
    }

    /// The registry table.
    pub const REGISTRY_TABLE: TableSchema = TableSchema {
        partition: (REGISTRY_PK, KeyType::String),
        sort: None,
        ttl: None,
        stream: false,
    };
    /// The readings table.
    pub const READINGS_TABLE: TableSchema = TableSchema {
        partition: (READINGS_PK, KeyType::String),
        sort: Some((READINGS_SK, KeyType::Number)),
        ttl: None,
        stream: false,
    };
    /// The forecasts table.
    pub const FORECASTS_TABLE: TableSchema = TableSchema {
        partition: (FORECASTS_PK, KeyType::String),
        sort: Some((FORECASTS_SK, KeyType::Number)),
        ttl: Some(FORECASTS_TTL),
        stream: false,
    };
    /// The counters table, with the stream the metrics function reads.
    pub const COUNTERS_TABLE: TableSchema = TableSchema {
        partition: (COUNTERS_PK, KeyType::String),
        sort: Some((COUNTERS_SK, KeyType::String)),
        ttl: Some(COUNTERS_TTL),
        stream: true,
    };

    /// The Lambda functions, by logical name; the binaries are named `meter-fn-<name>`.
    pub const FUNCTIONS: [&str; 8] = [
        "enqueue",
        "fetch",
        "import",
        "webhook",
        "stream-metrics",
        "api",
        "ingest",
        "write",
    ];

    /// The functions' own operational metrics, published as CloudWatch embedded-metric log
    /// lines (no API call) and read by the stack's alarms and dashboard. A value is written
    /// only when it is not zero: CloudWatch bills a custom metric for each month it receives
    /// data, so a failure metric that never fires costs nothing.
    pub mod ops {
        /// The namespace.
        pub const NAMESPACE: &str = "meterflow";
        /// The one dimension: the Lambda function's name (`AWS_LAMBDA_FUNCTION_NAME`).
        pub const DIMENSION: &str = "FunctionName";
        /// AWS requests sent again: by the SDK after a throttle, 5xx, timeout or cut
        /// connection, and by our adapters for a batch's unprocessed items.
        pub const AWS_RETRIES: &str = "AwsRetries";
        /// Readings written to the history store (fetch, import).
        pub const READINGS_STORED: &str = "ReadingsStored";
        /// Rows, records or readings turned away for good and quarantined or logged with
        /// their reason (import's quarantined rows; fetch's unreadable source records and
        /// readings a store refused).
        pub const ROWS_REJECTED: &str = "RowsRejected";
        /// Batch items answered as `batchItemFailures`, so SQS or the stream retries them
        /// (fetch jobs, stream-metrics records).
        pub const BATCH_ITEM_FAILURES: &str = "BatchItemFailures";
        /// Invocations that ended in an error, so Lambda retries the whole event (enqueue,
        /// import).
        pub const INVOCATIONS_FAILED: &str = "InvocationsFailed";
        /// Requests refused for a missing or wrong credential (api, webhook).
        pub const UNAUTHORIZED: &str = "Unauthorized";
        /// Other requests answered 4xx: malformed, too large, unknown route (api, webhook).
        pub const CLIENT_ERRORS: &str = "ClientErrors";
        /// Requests answered 5xx; the webhook's caller resends them (api, webhook).
        pub const SERVER_ERRORS: &str = "ServerErrors";

        /// Which functions (by logical name, as in `FUNCTIONS`) write each metric: what the
        /// stack's alarms and dashboard may watch.
        pub const WRITTEN_BY: [(&str, &[&str]); 8] = [
            (AWS_RETRIES, &super::FUNCTIONS),
            (READINGS_STORED, &["fetch", "import", "ingest"]),
            (
                ROWS_REJECTED,
                &["fetch", "import", "stream-metrics", "ingest"],
            ),
            (BATCH_ITEM_FAILURES, &["fetch", "stream-metrics", "ingest"]),
            (INVOCATIONS_FAILED, &["enqueue", "import"]),
            (UNAUTHORIZED, &["api", "webhook", "write"]),
            (CLIENT_ERRORS, &["api", "webhook", "write"]),
            (SERVER_ERRORS, &["api", "webhook", "write"]),
        ];

        /// Whether `function` writes `metric`.
        pub fn writes(function: &str, metric: &str) -> bool {
            WRITTEN_BY
                .iter()
                .any(|(m, fs)| *m == metric && fs.contains(&function))
        }
    }
}
