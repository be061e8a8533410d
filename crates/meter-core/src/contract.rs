//! Names shared by the code and the deployment (environment variables, file names), defined
//! once so the binaries, the functions and the template cannot drift apart.

/// The embedded store's file (`meter --store`).
pub const ENV_STORE: &str = "METER_STORE";
/// The default IANA zone for days and hours when a command names none.
pub const ENV_TZ: &str = "METER_TZ";
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
