//! The source port ("given a registry entry, produce readings") and one collection round over
//! the registry. A vendor is one implementation of [`Source`]; the `meter serve` timer and the
//! Lambda fetch function both drive sources through this module.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::decode::Rejection;
use crate::ports::{write_all, BoxError, MeterRegistry, ReadingWriter, RegistryEntry, StoreError};
use crate::reading::Reading;

/// One unit of work for the fetch function: registry entries to collect. Seed 003's queue
/// messages, `{"identifiers": [...]}`, are read as jobs too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchJob {
    /// The registry entries, by id.
    #[serde(alias = "identifiers")]
    pub entries: Vec<crate::reading::MeterId>,
}

impl FetchJob {
    /// Parses a queue message body, saying what is wrong with a bad one.
    pub fn parse(body: &str) -> Result<Self, JobError> {
        let job: Self = serde_json::from_str(body).map_err(JobError::NotJob)?;
        if job.entries.is_empty() {
            return Err(JobError::NoEntries);
        }
        Ok(job)
    }
}

/// Why a queue message is not a fetch job. Permanent: the same body fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The body is not a job's JSON.
    #[error("not a fetch job: {0}")]
    NotJob(#[source] serde_json::Error),
    /// The job lists nothing to collect.
    #[error("the fetch job names no registry entries")]
    NoEntries,
}

/// Why a fetch job failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The message is not a job.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The registry could not be read.
    #[error("reading registry entry {id}: {cause}")]
    Registry {
        /// The entry being read.
        id: crate::reading::MeterId,
        /// The store's error.
        #[source]
        cause: StoreError,
    },
    /// The entry names a source this deployment does not run.
    #[error("entry {id} names source {source_name}, which is not configured here")]
    UnknownSource {
        /// The entry.
        id: crate::reading::MeterId,
        /// The source it names.
        source_name: String,
    },
    /// The source failed.
    #[error("entry {id}: {cause}")]
    Source {
        /// The entry.
        id: crate::reading::MeterId,
        /// The source's error.
        #[source]
        cause: SourceError,
    },
}

impl CollectError {
    /// Whether retrying the job later may succeed: a store or source that is down, not a bad
    /// job or a source missing from the configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry { cause, .. } => cause.is_retryable(),
            Self::Source { cause, .. } => cause.is_retryable(),
            Self::Job(_) | Self::UnknownSource { .. } => false,
        }
    }
}

/// Identifiers per fetch job for sources read one identifier at a time (seed 003 put 2 in a
/// message; 10 keeps a job well inside the fetch function's timeout).
pub const JOB_GROUP: usize = 10;

/// Cuts enabled registry entries into fetch jobs: one per SST Cloud entry (an account or house,
/// one login and one listing), and groups of up to `group` identifiers per other source.
pub fn plan_jobs(entries: impl IntoIterator<Item = RegistryEntry>, group: usize) -> Vec<FetchJob> {
    let mut jobs = Vec::new();
    let mut open: BTreeMap<String, Vec<crate::reading::MeterId>> = BTreeMap::new();
    for e in entries.into_iter().filter(|e| e.enabled) {
        if e.source.as_str() == crate::contract::SOURCE_SST {
            jobs.push(FetchJob {
                entries: vec![e.id],
            });
            continue;
        }
        let ids = open.entry(e.source.to_string()).or_default();
        ids.push(e.id);
        if ids.len() >= group.max(1) {
            jobs.push(FetchJob {
                entries: std::mem::take(ids),
            });
        }
    }
    jobs.extend(
        open.into_values()
            .filter(|ids| !ids.is_empty())
            .map(|entries| FetchJob { entries }),
    );
    jobs
}

/// What one collection from a source produced.
#[derive(Debug, Default)]
pub struct Collected {
    /// Readings up to now: they go to the history store.
    pub readings: Vec<Reading>,
    /// Readings from now on (forecasts): they go to the forecast store.
    pub forecasts: Vec<Reading>,
    /// Records the source answered but that could not become readings.
    pub rejected: Vec<Rejection>,
}

impl Collected {
    /// Sorts readings into history (before `now`) and forecasts (from `now` on), the split seed
    /// 003 made.
    pub fn split(readings: impl IntoIterator<Item = Reading>, now: DateTime<Utc>) -> Self {
        let (forecasts, readings) = readings.into_iter().partition(|r| r.time() >= now);
        Self {
            readings,
            forecasts,
            rejected: Vec::new(),
        }
    }
}

/// Why a source could not collect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The service is down, slow or throttling; a later attempt may succeed.
    #[error("{source_name} is unavailable: {message}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// What happened.
        message: String,
        /// The client's error.
        #[source]
        cause: Option<BoxError>,
    },
    /// The service refused (bad credentials, unknown account, changed response shape).
    #[error("{source_name} refused: {message}")]
    Refused {
        /// The source.
        source_name: String,
        /// What happened.
        message: String,
        /// The client's error.
        #[source]
        cause: Option<BoxError>,
    },
    /// The registry entry lacks a setting the source needs.
    #[error("registry entry {entry} is misconfigured: {message}")]
    Config {
        /// The entry.
        entry: String,
        /// What is wrong.
        message: String,
    },
}

impl SourceError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A source of readings for registry entries naming it.
#[async_trait]
pub trait Source: Send + Sync {
    /// The source name registry entries use (`sst-cloud`, `http-json`).
    fn name(&self) -> &str;
    /// Collects what is new for one entry.
    async fn collect(
        &self,
        entry: &RegistryEntry,
        now: DateTime<Utc>,
    ) -> Result<Collected, SourceError>;
}

/// What one round over the registry did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CollectReport {
    /// Entries visited.
    pub entries: usize,
    /// Entries switched off.
    pub disabled: usize,
    /// Entries collected without error.
    pub collected: usize,
    /// Entries whose source failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Entries naming a source this process does not have.
    pub unknown_source: Vec<(String, String)>,
    /// Readings stored in the history store.
    pub readings_written: usize,
    /// Readings stored in the forecast store.
    pub forecasts_written: usize,
    /// Records the sources rejected.
    pub rejected: usize,
    /// Readings a store refused (with reasons in the log).
    pub write_failures: usize,
}

/// Collects what one fetch job names: each registry entry through its source. Entries removed
/// or switched off since the job was queued are skipped; an entry whose source is missing or
/// fails fails the job (the queue retries it). Records a source could not turn into readings
/// are in the result's `rejected`.
pub async fn collect_job(
    job: &FetchJob,
    registry: &dyn MeterRegistry,
    sources: &BTreeMap<String, Arc<dyn Source>>,
    now: DateTime<Utc>,
) -> Result<Collected, CollectError> {
    let mut out = Collected::default();
    for id in &job.entries {
        let entry = match registry.entry(id).await {
            Ok(Some(e)) if e.enabled => e,
            Ok(_) => continue,
            Err(cause) => {
                return Err(CollectError::Registry {
                    id: id.clone(),
                    cause,
                })
            }
        };
        let source =
            sources
                .get(entry.source.as_str())
                .ok_or_else(|| CollectError::UnknownSource {
                    id: id.clone(),
                    source_name: entry.source.to_string(),
                })?;
        let c = source
            .collect(&entry, now)
            .await
            .map_err(|cause| CollectError::Source {
                id: id.clone(),
                cause,
            })?;
        out.readings.extend(c.readings);
        out.forecasts.extend(c.forecasts);
        out.rejected.extend(c.rejected);
    }
    Ok(out)
}

/// Write calls in flight per store during a collection round.
const WRITE_CONCURRENCY: usize = 4;

/// Page size when walking the registry.
const REGISTRY_PAGE: usize = 500;

/// One collection round: every enabled entry of the registry through its source, readings to
/// `history` and forecasts to `forecasts`. A failing source fails only its entry; a failing store
/// ends the round.
pub async fn collect_all(
    registry: &dyn MeterRegistry,
    sources: &BTreeMap<String, Arc<dyn Source>>,
    history: &dyn ReadingWriter,
    forecasts: &dyn ReadingWriter,
    now: DateTime<Utc>,
) -> Result<CollectReport, StoreError> {
    let mut report = CollectReport::default();
    let mut after = None;
    loop {
        let page = registry.list(after.as_ref(), REGISTRY_PAGE).await?;
        for entry in &page.entries {
            report.entries += 1;
            if !entry.enabled {
                report.disabled += 1;
                continue;
            }
            let Some(source) = sources.get(entry.source.as_str()) else {
                report
                    .unknown_source
                    .push((entry.id.to_string(), entry.source.to_string()));
                continue;
            };
            match source.collect(entry, now).await {
                Ok(c) => {
                    report.collected += 1;
                    report.rejected += c.rejected.len();
                    let h = write_all(history, &c.readings, WRITE_CONCURRENCY).await?;
                    let f = write_all(forecasts, &c.forecasts, WRITE_CONCURRENCY).await?;
                    report.readings_written += h.written;
                    report.forecasts_written += f.written;
                    report.write_failures += h.failures.len() + f.failures.len();
                }
                Err(e) => report.failed.push((entry.id.to_string(), e.to_string())),
            }
        }
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{Kind, MeasureName, MeterId, SourceName, Unit};
    use crate::testing::MemoryStore;
    use chrono::Duration;

    struct Fake;

    #[async_trait]
    impl Source for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        async fn collect(
            &self,
            entry: &RegistryEntry,
            now: DateTime<Utc>,
        ) -> Result<Collected, SourceError> {
            if entry.params.contains_key("down") {
                return Err(SourceError::Unavailable {
                    source_name: "fake".into(),
                    message: "timed out".into(),
                    cause: None,
                });
            }
            let readings = (-2..3).map(|h| {
                Reading::new(
                    entry.id.clone(),
                    MeasureName::new("value").unwrap(),
                    1.0,
                    Unit::Dimensionless,
                    Kind::Gauge,
                    now + Duration::hours(h),
                    SourceName::new("fake").unwrap(),
                )
                .unwrap()
            });
            Ok(Collected::split(readings, now))
        }
    }

    fn entry(id: &str, source: &str, params: &[(&str, &str)], enabled: bool) -> RegistryEntry {
        RegistryEntry {
            id: MeterId::new(id).unwrap(),
            source: SourceName::new(source).unwrap(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            zone: None,
            enabled,
        }
    }

    #[test]
    fn jobs_read_our_form_and_seed_003s() {
        let ours = FetchJob::parse(r#"{"entries": ["a", "b"]}"#).unwrap();
        let seed = FetchJob::parse(r#"{"identifiers": ["a", "b"]}"#).unwrap();
        assert_eq!(ours, seed);
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            r#"{"entries":["a","b"]}"#
        );
        assert!(matches!(
            FetchJob::parse(r#"{"entries": []}"#),
            Err(JobError::NoEntries)
        ));
        let empty_id = FetchJob::parse(r#"{"entries": [""]}"#).unwrap_err();
        assert!(empty_id.to_string().contains("empty"), "{empty_id}");
        assert!(matches!(FetchJob::parse("nope"), Err(JobError::NotJob(_))));
        assert!(!CollectError::from(empty_id).is_retryable());
    }

    #[tokio::test]
    async fn a_round_splits_history_from_forecasts_and_isolates_failures() {
        let registry = MemoryStore::new();
        for e in [
            entry("a", "fake", &[], true),
            entry("b", "fake", &[("down", "1")], true),
            entry("c", "other", &[], true),
            entry("d", "fake", &[], false),
        ] {
            registry.put(&e).await.unwrap();
        }
        let (history, forecasts) = (MemoryStore::new(), MemoryStore::new());
        let sources: BTreeMap<String, Arc<dyn Source>> =
            [("fake".to_owned(), Arc::new(Fake) as Arc<dyn Source>)].into();
        let now = DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = collect_all(&registry, &sources, &history, &forecasts, now)
            .await
            .unwrap();
        assert_eq!((r.entries, r.collected, r.disabled), (4, 1, 1));
        assert_eq!(r.failed.len(), 1);
        assert!(r.failed[0].1.contains("timed out"));
        assert_eq!(r.unknown_source, vec![("c".to_owned(), "other".to_owned())]);
        assert_eq!((r.readings_written, r.forecasts_written), (2, 3));
        assert_eq!(history.all().len(), 2);
        assert!(forecasts.all().iter().all(|f| f.time() >= now));
    }

    #[test]
    fn jobs_are_one_per_sst_entry_and_groups_of_identifiers_otherwise() {
        let entries = vec![
            entry("house-1", "sst-cloud", &[], true),
            entry("house-2", "sst-cloud", &[], false),
            entry("a", "http-json", &[], true),
            entry("b", "http-json", &[], true),
            entry("c", "http-json", &[], true),
            entry("x", "other", &[], true),
        ];
        let jobs = plan_jobs(entries, 2);
        let ids: Vec<Vec<&str>> = jobs
            .iter()
            .map(|j| j.entries.iter().map(|m| m.as_str()).collect())
            .collect();
        assert_eq!(
            ids,
            vec![vec!["house-1"], vec!["a", "b"], vec!["c"], vec!["x"]]
        );
    }

    #[tokio::test]
    async fn a_job_collects_its_entries_skips_removed_ones_and_fails_on_a_down_source() {
        let registry = MemoryStore::new();
        registry.put(&entry("a", "fake", &[], true)).await.unwrap();
        registry
            .put(&entry("off", "fake", &[], false))
            .await
            .unwrap();
        registry
            .put(&entry("down", "fake", &[("down", "1")], true))
            .await
            .unwrap();
        registry
            .put(&entry("other", "nowhere", &[], true))
            .await
            .unwrap();
        let sources: BTreeMap<String, Arc<dyn Source>> =
            [("fake".to_owned(), Arc::new(Fake) as Arc<dyn Source>)].into();
        let job = |ids: &[&str]| FetchJob {
            entries: ids.iter().map(|i| MeterId::new(i).unwrap()).collect(),
        };
        let now = Utc::now();
        let c = collect_job(&job(&["a", "off", "gone"]), &registry, &sources, now)
            .await
            .unwrap();
        assert_eq!((c.readings.len(), c.forecasts.len()), (2, 3));
        let err = collect_job(&job(&["a", "down"]), &registry, &sources, now)
            .await
            .unwrap_err();
        assert!(
            err.is_retryable(),
            "a source that timed out is worth retrying"
        );
        let text = err.to_string();
        assert!(
            text.contains("entry down") && text.contains("timed out"),
            "{text}"
        );
        let err = collect_job(&job(&["other"]), &registry, &sources, now)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CollectError::UnknownSource { source_name, .. } if source_name == "nowhere"),
            "{err}"
        );
        assert!(!err.is_retryable());
    }
}
