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
