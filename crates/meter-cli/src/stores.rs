//! Which store a command works on: the local SQLite file (the default), or a deployed stack's
//! history store, `dynamodb:TABLE` or `timestream:DATABASE/TABLE`, reached with the usual AWS
//! credential chain and `AWS_ENDPOINT_URL` (backfilling history from a laptop). A cloud store is
//! chosen and built by `meter_lambda::History`, exactly as the functions build theirs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use meter_lambda::{History, HistoryConfig};

/// A parsed `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreSpec {
    /// The embedded SQLite store at a path.
    Local(PathBuf),
    /// A deployed stack's history store, chosen and built as the functions do.
    Cloud(HistoryConfig),
}

impl StoreSpec {
    /// Reads `--store`: `dynamodb:TABLE`, `timestream:DATABASE/TABLE`, or a path (write
    /// `./dynamodb:x` for a file of that name).
    pub(crate) fn parse(flag: PathBuf) -> anyhow::Result<Self> {
        let Some(text) = flag.to_str() else {
            return Ok(Self::Local(flag));
        };
        if let Some(table) = text.strip_prefix("dynamodb:") {
            if table.is_empty() {
                bail!("--store {text:?}: name the table, as dynamodb:TABLE");
            }
            return Ok(Self::Cloud(HistoryConfig::Dynamo {
                table: table.to_owned(),
            }));
        }
        if let Some(rest) = text.strip_prefix("timestream:") {
            return match rest.split_once('/') {
                Some((d, t)) if !d.is_empty() && !t.is_empty() && !t.contains('/') => {
                    Ok(Self::Cloud(HistoryConfig::Timestream {
                        database: d.to_owned(),
                        table: t.to_owned(),
                    }))
                }
                _ => bail!("--store {text:?}: name both, as timestream:DATABASE/TABLE"),
            };
        }
        Ok(Self::Local(flag))
    }

    /// The local path, or an error saying `command` works on the local store only.
    pub(crate) fn local(&self, command: &str) -> anyhow::Result<&Path> {
        match self {
            Self::Local(p) => Ok(p),
            other => bail!(
                "`meter {command}` works on the local store; {} is a cloud history store \
                 (import, query and store init work on it)",
                other.label()
            ),
        }
    }

    /// How the store is named in messages and file names.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::Cloud(HistoryConfig::Dynamo { table }) => format!("dynamodb:{table}"),
            Self::Cloud(HistoryConfig::Timestream { database, table }) => {
                format!("timestream:{database}/{table}")
            }
        }
    }

    /// Where an import's quarantine goes by default: next to a local store, else in the
    /// working folder, named after the store.
    pub(crate) fn default_quarantine(&self) -> PathBuf {
        let mut name = match self {
            Self::Local(p) => p.as_os_str().to_owned(),
            other => other.label().replace([':', '/'], "-").into(),
        };
        name.push(meter_core::contract::QUARANTINE_SUFFIX);
        PathBuf::from(name)
    }
}

/// Opens a cloud store (`None` for the local one) as the functions open it, its writer a bulk
/// one (an import flushes it at its end).
pub(crate) async fn open_cloud(spec: &StoreSpec) -> Option<History> {
    match spec {
        StoreSpec::Local(_) => None,
        StoreSpec::Cloud(config) => Some(History::bulk(&meter_aws::sdk_config().await, config)),
    }
}

/// `meter store init`: creates the store (its tables) when missing, with the template's
/// definitions; says what it did.
pub(crate) async fn init(spec: &StoreSpec) -> anyhow::Result<String> {
    match spec {
        StoreSpec::Local(path) => {
            let existed = path.exists();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            meter_store_sqlite::SqliteStore::open(path)?;
            Ok(if existed {
                format!("{} exists (schema up to date)", path.display())
            } else {
                format!("created {}", path.display())
            })
        }
        StoreSpec::Cloud(HistoryConfig::Dynamo { table }) => {
            let client = aws_sdk_dynamodb::Client::new(&meter_aws::sdk_config().await);
            let created = meter_store_dynamodb::create_table(
                &client,
                meter_store_dynamodb::TableKind::Readings,
                table,
            )
            .await?;
            Ok(status(created, &spec.label()))
        }
        StoreSpec::Cloud(HistoryConfig::Timestream { database, table }) => {
            let created = meter_store_timestream::create_table(
                &meter_aws::sdk_config().await,
                database,
                table,
                meter_store_timestream::Retention::default(),
            )
            .await?;
            Ok(status(created, &spec.label()))
        }
    }
}

/// `meter store rebuild-rollups [METER]`: recomputes the stored rollups from the readings (a
/// DynamoDB table written before stored rollups also gets its per-meter catalogue); says what
/// it did.
pub(crate) async fn rebuild_rollups(
    spec: &StoreSpec,
    meter: Option<&meter_core::MeterId>,
) -> anyhow::Result<String> {
    let n = match spec {
        StoreSpec::Local(path) => {
            meter_store_sqlite::SqliteStore::open(path)?.rebuild_rollups(meter)?
        }
        StoreSpec::Cloud(HistoryConfig::Dynamo { table }) => {
            let client = aws_sdk_dynamodb::Client::new(&meter_aws::sdk_config().await);
            meter_store_dynamodb::DynamoReadings::new(client, table)
                .rebuild_rollups(meter)
                .await?
        }
        StoreSpec::Cloud(HistoryConfig::Timestream { .. }) => {
            return Ok(format!(
                "{} computes rollups in the database: nothing is stored to rebuild",
                spec.label()
            ))
        }
    };
    if let (Some(m), 0) = (meter, n) {
        anyhow::bail!("no readings are stored for meter {m} in {}", spec.label());
    }
    Ok(format!(
        "rebuilt the stored rollups of {n} series in {}",
        spec.label()
    ))
}

fn status(created: bool, label: &str) -> String {
    if created {
        format!("created {label}")
    } else {
        format!("{label} exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse_or_say_what_is_missing() {
        let p = |s: &str| StoreSpec::parse(PathBuf::from(s));
        assert_eq!(p("a/b.db").unwrap(), StoreSpec::Local("a/b.db".into()));
        assert_eq!(
            p("dynamodb:readings").unwrap(),
            StoreSpec::Cloud(HistoryConfig::Dynamo {
                table: "readings".into()
            })
        );
        assert_eq!(
            p("timestream:mydb/meters").unwrap(),
            StoreSpec::Cloud(HistoryConfig::Timestream {
                database: "mydb".into(),
                table: "meters".into()
            })
        );
        assert_eq!(
            p("./dynamodb:x").unwrap(),
            StoreSpec::Local("./dynamodb:x".into())
        );
        assert!(p("dynamodb:")
            .unwrap_err()
            .to_string()
            .contains("dynamodb:TABLE"));
        assert!(p("timestream:mydb")
            .unwrap_err()
            .to_string()
            .contains("DATABASE/TABLE"));
        assert!(p("timestream:a/b/c").is_err());
        assert_eq!(
            p("timestream:d/t").unwrap().default_quarantine(),
            PathBuf::from("timestream-d-t.quarantine.jsonl")
        );
        let err = p("dynamodb:t")
            .unwrap()
            .local("serve")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("meter serve") && err.contains("dynamodb:t"),
            "{err}"
        );
    }
}
