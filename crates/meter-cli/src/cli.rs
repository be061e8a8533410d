//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use meter_core::contract;

/// meterflow on one machine: import meter readings and query them.
#[derive(Debug, Parser)]
#[command(name = "meter", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// The store: a SQLite file (default: meterflow/meterflow.db in the per-user data folder),
    /// or a deployed history store for import and query, as dynamodb:TABLE or
    /// timestream:DATABASE/TABLE (AWS credentials and AWS_ENDPOINT_URL as usual).
    #[arg(long, global = true, env = contract::ENV_STORE, value_name = "PATH|SPEC")]
    pub(crate) store: Option<PathBuf>,

    /// The registry for `registry`, `sst discover` and `collect`: the store's own (default), or
    /// a deployed stack's DynamoDB table as `dynamodb:TABLE`.
    #[arg(long, global = true, env = "METER_REGISTRY", value_name = "SPEC")]
    pub(crate) registry: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Import files or folders of readings (wide or long CSV, Pi JSON, mbed, SST counters).
    Import(ImportArgs),
    /// Print readings, latest values, meters, or hourly/daily rollups.
    #[command(subcommand)]
    Query(QueryArgs),
    /// Run the whole product on this machine: the API and page, the webhook, the drop folder
    /// and scheduled collection. Stops cleanly on Ctrl-C.
    Serve(ServeArgs),
    /// Manage the registry of what `collect` and `serve` poll.
    #[command(subcommand)]
    Registry(RegistryArgs),
    /// SST Cloud (Neptun) accounts: configured by SST_TOKEN, or SST_USERNAME and SST_PASSWORD.
    #[command(subcommand)]
    Sst(SstArgs),
    /// Collect every enabled registry entry once from its source (what the scheduler does).
    Collect(CollectArgs),
    /// Manage the store itself.
    #[command(subcommand)]
    Store(StoreArgs),
}

impl Command {
    /// The command's name, for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Import(_) => "import",
            Command::Query(_) => "query",
            Command::Serve(_) => "serve",
            Command::Registry(_) => "registry",
            Command::Sst(_) => "sst",
            Command::Collect(_) => "collect",
            Command::Store(_) => "store",
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum StoreArgs {
    /// Create the store when it is missing: the SQLite file, or the cloud store's table with
    /// the definitions the template uses (Timestream: magnetic-store writes on, for backfills).
    Init,
    /// Recompute the stored hourly and daily rollups from the readings (every meter's, or one
    /// meter's): the local store migrates by itself; a DynamoDB table written by an earlier
    /// version needs it once (it also moves the series catalogue to the per-meter layout).
    RebuildRollups {
        /// Only this meter.
        meter: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryArgs {
    /// Add an entry, or replace the one with the same id.
    Add(RegistryAddArgs),
    /// List the entries.
    List(FormatOnly),
    /// Remove an entry.
    Remove {
        /// The entry's id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RegistryAddArgs {
    /// The entry's id (the meter id for per-meter sources).
    pub(crate) id: String,
    /// The source that reads it: sst-cloud or http-json.
    #[arg(long)]
    pub(crate) source: String,
    /// A source setting, as KEY=VALUE (repeatable): house=9086, url=..., api_key_env=...
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub(crate) params: Vec<String>,
    /// The IANA zone its days are cut in.
    #[arg(long, value_name = "ZONE")]
    pub(crate) zone: Option<String>,
    /// Add it switched off.
    #[arg(long)]
    pub(crate) disabled: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SstArgs {
    /// Log in, list the account's houses and counters, and add each house to the registry.
    Discover(FormatOnly),
}

#[derive(Debug, Args)]
pub(crate) struct CollectArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) listen: std::net::SocketAddr,
    /// The drop folder: files put there are imported, then moved to done/ or quarantine/
    /// (default: `drop` next to the store).
    #[arg(long, value_name = "DIR")]
    pub(crate) drop: Option<PathBuf>,
    /// Serve without authentication (only where something else authenticates callers).
    #[arg(long)]
    pub(crate) no_auth: bool,
    /// How often the drop folder is scanned (a file is imported once it is unchanged for one scan).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub(crate) scan_every: String,
    /// Where the kernel cannot say when a dropped file's writer closed it (not Linux), how long
    /// a file must stay unchanged before it is imported.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub(crate) settle: String,
    /// How often registry entries are collected from their sources.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub(crate) collect_every: String,
    /// The zone of days and hours when a request and the registry name none (default: METER_TZ,
    /// else UTC).
    #[arg(long, value_name = "ZONE", value_parser = zone_name)]
    pub(crate) tz: Option<String>,
    /// The text encoding of dropped files: utf-8 (the default; other bytes are refused row by
    /// row), latin1 or windows-1252.
    #[arg(long, value_name = "ENCODING", value_parser = encoding)]
    pub(crate) encoding: Option<&'static encoding_rs::Encoding>,
    /// The InfluxDB line-protocol tag that names the meter of a point written to /api/v2/write
    /// or /write (default `meter`, then `device`, then `host`).
    #[arg(long, value_name = "TAG")]
    pub(crate) meter_tag: Option<String>,
    /// Subscribe to an MQTT broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (user and
    /// password from METER_MQTT_USERNAME and METER_MQTT_PASSWORD).
    #[arg(long, value_name = "URL")]
    pub(crate) mqtt: Option<String>,
    /// A topic filter to subscribe to (repeatable; default `meters/#`).
    #[arg(long = "mqtt-topic", value_name = "FILTER", requires = "mqtt")]
    pub(crate) mqtt_topics: Vec<String>,
    /// A TOML file of `[[map]]` rules reading JSON messages of any shape.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub(crate) mqtt_map: Option<PathBuf>,
    /// The MQTT client id, which names the broker's persistent session (default: derived from
    /// the store's path, the same on every start).
    #[arg(long, value_name = "ID", requires = "mqtt")]
    pub(crate) mqtt_client_id: Option<String>,
    /// The PEM file of the certificate authority of an mqtts:// broker (default: the system's).
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub(crate) mqtt_ca: Option<PathBuf>,
}

/// Input formats, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// Recognise each file from its content (and extension, for empty files).
    Auto,
    /// `Meter,Date,0:00,...,23:30` half-hourly rows.
    WideCsv,
    /// One reading per row.
    LongCsv,
    /// Raspberry Pi logger objects.
    PiJson,
    /// mbed Connector notification bodies.
    Mbed,
    /// SST Cloud counter lists.
    Sst,
    /// InfluxDB line protocol (`measurement,meter=M field=1 <ns>`).
    LineProtocol,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Files or folders (folders are walked for .csv, .json, .jsonl, .txt and .lp files), or
    /// `-` for standard input.
    #[arg(required = true, value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,

    /// The input format.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub(crate) format: FormatArg,

    /// Decode and validate only; store nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// The IANA zone of times written without an offset (CSV dates and slots); default
    /// METER_TZ, else UTC, as on every other path.
    #[arg(long, value_name = "ZONE", env = contract::ENV_TZ, default_value = "UTC", value_parser = zone_name)]
    pub(crate) tz: String,

    /// How long-CSV time columns are written: auto, rfc3339, local, epoch-s, epoch-ms.
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    pub(crate) time_format: String,

    /// The files' text encoding: utf-8 (the default; other bytes are refused row by row),
    /// latin1 or windows-1252.
    #[arg(long, value_name = "ENCODING", value_parser = encoding)]
    pub(crate) encoding: Option<&'static encoding_rs::Encoding>,

    /// The unit of line-protocol timestamps: ns (the default), us, ms or s.
    #[arg(long, value_name = "PRECISION", default_value = "ns")]
    pub(crate) precision: String,

    /// The line-protocol tag that names the meter (default `meter`, then `device`, then `host`).
    #[arg(long, value_name = "TAG")]
    pub(crate) meter_tag: Option<String>,

    /// The meter of every reading (for files that do not name one).
    #[arg(long, value_name = "ID")]
    pub(crate) meter: Option<String>,

    /// The measure name, instead of the format's default.
    #[arg(long)]
    pub(crate) measure: Option<String>,

    /// The unit, instead of the format's default (kWh, L, m3, degC...).
    #[arg(long)]
    pub(crate) unit: Option<String>,

    /// The kind of value: cumulative, interval or gauge.
    #[arg(long)]
    pub(crate) kind: Option<String>,

    /// A tag added to every reading, as KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub(crate) tags: Vec<String>,

    /// Where rejected rows are kept (default: next to the store, *.quarantine.jsonl).
    #[arg(long, value_name = "PATH")]
    pub(crate) quarantine: Option<PathBuf>,

    /// Never show a progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub(crate) no_progress: bool,

    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Output formats of queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum OutFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueryArgs {
    /// Readings of a meter in a time range.
    Readings(ReadingsArgs),
    /// The newest reading of each series (of one meter, or all).
    Latest(LatestArgs),
    /// Every meter with its measures, units, kinds and time spans.
    Meters(FormatOnly),
    /// Daily rollup of a meter: sum, last minus first, or min/mean/max by kind.
    Daily(RollupArgs),
    /// Hourly rollup of a meter.
    Hourly(RollupArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FormatOnly {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: OutFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ReadingsArgs {
    /// The meter.
    pub(crate) meter: String,
    /// Start: an instant (RFC 3339, epoch) or a date (its start in --tz).
    #[arg(long)]
    pub(crate) from: String,
    /// End (exclusive): an instant, or a date (the end of that day in --tz).
    #[arg(long)]
    pub(crate) to: String,
    /// One measure only.
    #[arg(long)]
    pub(crate) measure: Option<String>,
    /// The zone for dates and for local times in the output.
    #[arg(long, value_name = "ZONE", value_parser = zone_name)]
    pub(crate) tz: Option<String>,
    /// The most readings to print.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: OutFormat,
}

#[derive(Debug, Args)]
pub(crate) struct LatestArgs {
    /// One meter, or all of them.
    pub(crate) meter: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: OutFormat,
}

#[derive(Debug, Args)]
pub(crate) struct RollupArgs {
    /// The meter.
    pub(crate) meter: String,
    /// The first day (yyyy-MM-dd).
    #[arg(long)]
    pub(crate) from: String,
    /// The last day, included (yyyy-MM-dd).
    #[arg(long)]
    pub(crate) to: String,
    /// The IANA zone days and hours are cut in (default: the meter's zone in the registry,
    /// else METER_TZ, else UTC).
    #[arg(long, value_name = "ZONE", value_parser = zone_name)]
    pub(crate) tz: Option<String>,
    /// The measure (needed when the meter has several).
    #[arg(long)]
    pub(crate) measure: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: OutFormat,
}

/// `--tz`: an IANA zone name, checked while parsing so a bad one is a usage error (exit 2).
fn zone_name(text: &str) -> Result<String, meter_core::time::TimeError> {
    meter_core::time::parse_zone(text).map(|_| text.to_owned())
}

/// `--encoding`: a text encoding by name, checked while parsing (exit 2 on an unknown one).
fn encoding(name: &str) -> Result<&'static encoding_rs::Encoding, meter_core::choice::UnknownName> {
    meter_core::decode::encoding_named(name)
}
