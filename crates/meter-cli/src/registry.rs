//! `meter registry`, `meter sst discover` and `meter collect`: the registry of what to poll, and
//! one collection round over it, on the SQLite store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::Utc;
use meter_core::collect::collect_all;
use meter_core::ports::{MeterRegistry, RegistryEntry};
use meter_core::time::parse_zone;
use meter_core::{contract, MeterId, SourceName};
use meter_sources::sst::{SstClient, SstConfig};
use meter_store_sqlite::SqliteStore;
use serde::Serialize;

use crate::cli::{CollectArgs, FormatOnly, RegistryAddArgs, RegistryArgs, SstArgs};
use crate::output::{number, print, Row};
use crate::Outcome;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The sources this process can run, with a note for each it cannot (missing settings).
pub(crate) async fn sources(store: &SqliteStore) -> (meter_sources::Sources, Vec<String>) {
    // Secrets Manager (and the AWS configuration) is only reached when a setting names a secret.
    let secrets: Arc<dyn meter_core::ports::SecretStore> = Arc::new(meter_aws::LazySecrets::new());
    meter_sources::from_env(Arc::new(env), Arc::new(store.clone()), || {
        Some(secrets.clone())
    })
}

#[derive(Debug, Serialize)]
struct EntryRow {
    id: String,
    source: String,
    params: BTreeMap<String, String>,
    zone: Option<String>,
    enabled: bool,
}

impl Row for EntryRow {
    fn header() -> &'static [&'static str] {
        &["id", "source", "params", "zone", "enabled"]
    }
    fn cells(&self) -> Vec<String> {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![
            self.id.clone(),
            self.source.clone(),
            params.join(" "),
            self.zone.clone().unwrap_or_default(),
            self.enabled.to_string(),
        ]
    }
}

/// The registry: the SQLite store's, or a DynamoDB table (`dynamodb:TABLE`, the deployed
/// stack's registry, reached with the usual AWS credential chain and `AWS_ENDPOINT_URL`).
pub(crate) async fn registry_backend(
    store_path: &Path,
    spec: Option<&str>,
) -> anyhow::Result<Arc<dyn MeterRegistry>> {
    match spec {
        None => Ok(Arc::new(SqliteStore::open(store_path)?)),
        Some(s) => match s.split_once(':') {
            Some(("dynamodb", table)) if !table.is_empty() => {
                let sdk = meter_aws::sdk_config().await;
                let client = aws_sdk_dynamodb::Client::new(&sdk);
                Ok(Arc::new(meter_store_dynamodb::DynamoRegistry::new(
                    client, table,
                )))
            }
            _ => {
                bail!("--registry {s:?}: use dynamodb:TABLE (or leave it out for the local store)")
            }
        },
    }
}

/// A secret store for SST_SECRET_ID (Secrets Manager), only when a secret is named.
async fn secrets_for(config: &SstConfig) -> Option<Arc<dyn meter_core::ports::SecretStore>> {
    if matches!(config.auth, meter_sources::sst::SstAuth::SecretId(_)) {
        let sdk = meter_aws::sdk_config().await;
        Some(Arc::new(meter_aws::AwsSecrets::new(&sdk)))
    } else {
        None
    }
}

async fn all_entries(store: &dyn MeterRegistry) -> anyhow::Result<Vec<RegistryEntry>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after.as_ref(), 1000).await?;
        out.extend(page.entries);
        match page.next {
            Some(c) => after = Some(c),
            None => return Ok(out),
        }
    }
}

pub(crate) async fn registry(
    store_path: &Path,
    registry: Option<&str>,
    args: RegistryArgs,
) -> anyhow::Result<Outcome> {
    let store = registry_backend(store_path, registry).await?;
    let store = store.as_ref();
    match args {
        RegistryArgs::Add(a) => add(store, a).await,
        RegistryArgs::List(FormatOnly { format }) => {
            let rows: Vec<EntryRow> = all_entries(store)
                .await?
                .into_iter()
                .map(|e| EntryRow {
                    id: e.id.to_string(),
                    source: e.source.to_string(),
                    params: e.params,
                    zone: e.zone,
                    enabled: e.enabled,
                })
                .collect();
            print(&rows, format)?;
            Ok(Outcome::Success)
        }
        RegistryArgs::Remove { id } => {
            let id = MeterId::new(&id)?;
            if !store.remove(&id).await? {
                bail!("the registry has no entry {id}");
            }
            println!("removed {id}");
            Ok(Outcome::Success)
        }
    }
}

async fn add(store: &dyn MeterRegistry, a: RegistryAddArgs) -> anyhow::Result<Outcome> {
    let source = SourceName::new(&a.source).context("--source")?;
    let mut params = BTreeMap::new();
    for p in &a.params {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?}: write KEY=VALUE"))?;
        params.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if let Some(z) = &a.zone {
        parse_zone(z).context("--zone")?;
    }
    match source.as_str() {
        contract::SOURCE_HTTP_JSON if !params.contains_key("url") => {
            bail!(
                "an http-json entry needs --param url=... (with {{identifier}} where the id goes)"
            )
        }
        contract::SOURCE_SST | contract::SOURCE_HTTP_JSON => {}
        other => eprintln!("note: no source named {other} is built into this meter yet"),
    }
    let entry = RegistryEntry {
        id: MeterId::new(&a.id)?,
        source,
        params,
        zone: a.zone,
        enabled: !a.disabled,
    };
    store.put(&entry).await?;
    println!("added {}", entry.id);
    Ok(Outcome::Success)
}

#[derive(Debug, Serialize)]
struct CounterRow {
    house: i64,
    entry: String,
    meter: String,
    water: String,
    line: String,
    litres: f64,
}

impl Row for CounterRow {
    fn header() -> &'static [&'static str] {
        &["house", "entry", "meter", "water", "line", "litres"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.house.to_string(),
            self.entry.clone(),
            self.meter.clone(),
            self.water.clone(),
            self.line.clone(),
            number(self.litres),
        ]
    }
}

pub(crate) async fn sst(
    store_path: &Path,
    registry: Option<&str>,
    args: SstArgs,
) -> anyhow::Result<Outcome> {
    let SstArgs::Discover(FormatOnly { format }) = args;
    let config = SstConfig::from_lookup(env)?;
    let secrets = secrets_for(&config).await;
    let client = SstClient::new(config, secrets)?;
    let store = registry_backend(store_path, registry).await?;
    let houses = client.houses().await?;
    if houses.is_empty() {
        bail!("the SST Cloud account has no houses");
    }
    let mut rows = Vec::new();
    for h in houses {
        let entry = h.registry_entry()?;
        let id = entry.id.clone();
        store.put(&entry).await?;
        let (readings, _) = client.counters(h.id, Utc::now()).await?;
        for r in readings {
            rows.push(CounterRow {
                house: h.id,
                entry: id.to_string(),
                meter: r.meter().to_string(),
                water: r.tags().get("water_temperature").unwrap_or("").to_owned(),
                line: r.tags().get("line").unwrap_or("").to_owned(),
                litres: r.value(),
            });
        }
    }
    print(&rows, format)?;
    Ok(Outcome::Success)
}

pub(crate) async fn collect(
    store_path: &Path,
    registry: Option<&str>,
    args: CollectArgs,
) -> anyhow::Result<Outcome> {
    let store = SqliteStore::open(store_path)?;
    let entries = registry_backend(store_path, registry).await?;
    let (sources, notes) = sources(&store).await;
    let report = collect_all(entries.as_ref(), &sources, &store, &store, Utc::now()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "entries: {} ({} disabled), collected: {}, readings stored: {}, forecasts stored: {}, rejected: {}, not stored: {}",
            report.entries,
            report.disabled,
            report.collected,
            report.readings_written,
            report.forecasts_written,
            report.rejected,
            report.write_failures
        );
        for (entry, why) in &report.failed {
            println!("failed {entry}: {why}");
        }
        for (entry, source) in &report.unknown_source {
            println!("skipped {entry}: no {source} source here");
        }
    }
    if !report.unknown_source.is_empty() {
        for n in notes {
            eprintln!("note: {n}");
        }
    }
    let problems =
        report.failed.len() + report.unknown_source.len() + report.rejected + report.write_failures;
    Ok(if problems == 0 {
        Outcome::Success
    } else if report.collected > 0 {
        Outcome::Partial
    } else {
        Outcome::Failure
    })
}
