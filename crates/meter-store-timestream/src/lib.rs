//! Amazon Timestream adapter of the reading ports, for accounts that have Timestream for
//! LiveAnalytics (closed to new accounts since 2025-06-20; the others use DynamoDB).
//!
//! - Writes: one WriteRecords request per batch of at most 100 readings, with the shared time
//!   and dimensions in `CommonAttributes` ([`layout`] has the record layout, seed 000's included).
//!   Readings beyond Timestream's windows (more than 15 minutes ahead, or older than the memory
//!   store when the table refuses magnetic-store writes) are reported before anything is sent;
//!   old readings go in their own requests, to the magnetic store. `RejectedRecords` are
//!   reported one by one with Timestream's reason; a conflicting value is retried with a higher
//!   version only in [`WriteMode::Upsert`].
//! - Reads: SQL built with escaped literals ([`sql`]), every page followed through `NextToken`,
//!   parsed into readings ([`rows`]). A rollup is one query that aggregates in the database
//!   (`bin()` per hour, or per quarter hour in zones with :30 or :45 offsets) and returns only
//!   the counter readings the counter rules need, which meter-core decides
//!   ([`meter_core::binned`]).
//! - Endpoint discovery is on against real AWS (the SDK requires it) and off when an endpoint
//!   override (`AWS_ENDPOINT_URL`, the local emulator) is configured. Clients are built on first
//!   use, so a cold start pays for discovery only when it touches Timestream.

pub mod layout;
pub mod rows;
pub mod sql;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_timestreamquery::Client as QueryClient;
use aws_sdk_timestreamwrite::error::SdkError;
use aws_sdk_timestreamwrite::operation::write_records::WriteRecordsError;
use aws_sdk_timestreamwrite::types::{
    MagneticStoreWriteProperties, RejectedRecord, RetentionProperties,
};
use aws_sdk_timestreamwrite::Client as WriteClient;
use chrono::{DateTime, TimeDelta, Utc};
use meter_aws::{merge_chunk, send_batch, store_error, Answer, RetryPolicy};
use meter_core::batch::TIMESTREAM_MAX_RECORDS;
use meter_core::binned::{self, BinnedError};
use meter_core::ports::{
    rollup_from_readings, ItemFailure, MeterInfo, Page, RangeQuery, RangeReader, ReadingReader,
    ReadingWriter, RollupQuery, StoreError, WriteReport,
};
use meter_core::rollup::RollupBuilder;
use meter_core::{MeasureName, MeterId, Reading, Rollup};
use tokio::sync::OnceCell;

use crate::layout::PlannedRecord;
use crate::rows::Table;
use crate::sql::Sql;

const BACKEND: &str = "Timestream";
/// How far ahead of the server's clock Timestream accepts a record.
const FUTURE_WINDOW: TimeDelta = TimeDelta::minutes(15);
/// Upsert retries of one record before its conflict is reported.
const MAX_VERSION_RETRIES: usize = 3;

/// What to do when a reading's key already holds a different value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Report the conflict (Timestream keeps the first value).
    #[default]
    Insert,
    /// Replace the stored value by writing a higher version.
    Upsert,
}

/// Where the readings live and how to write them.
#[derive(Debug, Clone)]
pub struct TimestreamConfig {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// How far back unbounded questions ("the latest reading") look, in days.
    pub lookback_days: u32,
    /// Conflicting values: report or replace.
    pub mode: WriteMode,
    /// How long one write keeps retrying throttling before reporting.
    pub retry_budget: Duration,
}

impl TimestreamConfig {
    /// A table with the defaults: a 400-day lookback, insert mode, 20 s of retries.
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            database: database.into(),
            table: table.into(),
            lookback_days: 400,
            mode: WriteMode::Insert,
            retry_budget: Duration::from_secs(20),
        }
    }
}

/// The table's windows, learnt once from DescribeTable.
#[derive(Debug, Clone, Copy)]
struct TableWindows {
    memory: TimeDelta,
    magnetic_writes: bool,
}

#[derive(Debug, Clone)]
struct Clients {
    write: WriteClient,
    query: QueryClient,
}

/// What the writes of one store sent, for the cost figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// WriteRecords requests sent.
    pub requests: u64,
    /// Records sent.
    pub records: u64,
    /// Bytes Timestream meters (timestamps, dimensions, measure names and values).
    pub metered_bytes: u64,
    /// Write units billed (1 KiB each, per request).
    pub write_units: u64,
}

#[derive(Debug, Default)]
struct Stats {
    raw_rollups: AtomicU64,
    requests: AtomicU64,
    records: AtomicU64,
    metered_bytes: AtomicU64,
    write_units: AtomicU64,
}

/// The history store on a Timestream table.
#[derive(Debug)]
pub struct TimestreamReadings {
    sdk: Option<aws_config::SdkConfig>,
    clients: OnceCell<Clients>,
    windows: OnceCell<Option<TableWindows>>,
    config: TimestreamConfig,
    sql: Sql,
    stats: Stats,
}

/// Builds the clients, with endpoint discovery unless an endpoint override is set.
async fn build_clients(sdk: &aws_config::SdkConfig) -> Result<Clients, StoreError> {
    let write = WriteClient::new(sdk);
    let query = QueryClient::new(sdk);
    if sdk.endpoint_url().is_some() {
        // The emulator's DescribeEndpoints names the real AWS host; discovery would leave it.
        return Ok(Clients { write, query });
    }
    let unavailable =
        |what: &str, e: aws_sdk_timestreamwrite::error::BoxError| StoreError::Unavailable {
            backend: BACKEND,
            message: format!("{what} endpoint discovery failed: {e}"),
            source: Some(e),
        };
    let (write, write_reload) = write
        .with_endpoint_discovery_enabled()
        .await
        .map_err(|e| unavailable("write", e))?;
    let (query, query_reload) = query
        .with_endpoint_discovery_enabled()
        .await
        .map_err(|e| unavailable("query", e))?;
    tokio::spawn(write_reload.reload_task());
    tokio::spawn(query_reload.reload_task());
    Ok(Clients { write, query })
}

impl TimestreamReadings {
    /// A store whose clients are built from `sdk` on first use.
    pub fn new(sdk: &aws_config::SdkConfig, config: TimestreamConfig) -> Self {
        Self::make(Some(sdk.clone()), OnceCell::new(), config)
    }

    /// A store on ready-made clients (tests attach interceptors to them).
    pub fn with_clients(write: WriteClient, query: QueryClient, config: TimestreamConfig) -> Self {
        Self::make(
            None,
            OnceCell::new_with(Some(Clients { write, query })),
            config,
        )
    }

    fn make(
        sdk: Option<aws_config::SdkConfig>,
        clients: OnceCell<Clients>,
        config: TimestreamConfig,
    ) -> Self {
        Self {
            sdk,
            clients,
            windows: OnceCell::new(),
            sql: Sql::new(&config.database, &config.table, config.lookback_days),
            config,
            stats: Stats::default(),
        }
    }

    /// Rollups that read raw readings because the binned answer could not decide a counter.
    pub fn raw_rollups(&self) -> u64 {
        self.stats.raw_rollups.load(Ordering::Relaxed)
    }

    /// The query builder of this table (seed 000's queries included).
    pub fn sql(&self) -> &Sql {
        &self.sql
    }

    /// What the writes so far sent.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            requests: self.stats.requests.load(Ordering::Relaxed),
            records: self.stats.records.load(Ordering::Relaxed),
            metered_bytes: self.stats.metered_bytes.load(Ordering::Relaxed),
            write_units: self.stats.write_units.load(Ordering::Relaxed),
        }
    }

    async fn clients(&self) -> Result<&Clients, StoreError> {
        self.clients
            .get_or_try_init(|| async {
                let sdk = self.sdk.as_ref().ok_or_else(|| StoreError::Refused {
                    backend: BACKEND,
                    message: "no SDK configuration".into(),
                    source: None,
                })?;
                build_clients(sdk).await
            })
            .await
    }

    /// The table's retention windows; `None` when DescribeTable is not allowed or fails, in
    /// which case Timestream itself judges each record.
    async fn windows(&self) -> Result<Option<TableWindows>, StoreError> {
        let clients = self.clients().await?;
        Ok(*self
            .windows
            .get_or_init(|| async {
                let out = clients
                    .write
                    .describe_table()
                    .database_name(&self.config.database)
                    .table_name(&self.config.table)
                    .send()
                    .await;
                match out {
                    Ok(out) => out.table().map(|t| TableWindows {
                        memory: TimeDelta::hours(
                            t.retention_properties()
                                .map(|r| r.memory_store_retention_period_in_hours())
                                .unwrap_or(6),
                        ),
                        magnetic_writes: t
                            .magnetic_store_write_properties()
                            .is_some_and(|m| m.enable_magnetic_store_writes()),
                    }),
                    Err(e) => {
                        let e = store_error(BACKEND, "DescribeTable", e);
                        tracing::warn!(error = %e, "Cannot read the table's retention; Timestream will judge each record.");
                        None
                    }
                }
            })
            .await)
    }

    /// Sends one request's records through [`send_batch`]: throttled calls are repeated, and in
    /// upsert mode records refused for an older stored version are resent with a higher one.
    async fn send(
        &self,
        clients: &Clients,
        planned: Vec<PlannedRecord>,
    ) -> Result<WriteReport, StoreError> {
        let version_rounds = AtomicUsize::new(0);
        let policy =
            RetryPolicy::new(self.config.retry_budget).with_base(Duration::from_millis(100));
        let items = planned.into_iter().map(|p| (p.index, p)).collect();
        send_batch(policy, items, |pending| {
            let version_rounds = &version_rounds;
            async move {
                let planned: Vec<PlannedRecord> = pending.into_iter().map(|(_, p)| p).collect();
                let rejected = match self.write_once(clients, &planned).await? {
                    None => return Ok(Answer::all(planned.len())),
                    Some(rejected) => rejected,
                };
                let rounds = version_rounds.fetch_add(1, Ordering::Relaxed);
                let upsert = self.config.mode == WriteMode::Upsert && rounds < MAX_VERSION_RETRIES;
                let (retry, refused, written) = triage(planned, &rejected, upsert);
                Ok(Answer {
                    written,
                    resend: retry.into_iter().map(|p| (p.index, p)).collect(),
                    resend_reason: "a newer version of the record is stored".into(),
                    refused,
                })
            }
        })
        .await
    }

    /// One `WriteRecords` call: `None` when every record was ingested, else the rejected ones.
    async fn write_once(
        &self,
        clients: &Clients,
        planned: &[PlannedRecord],
    ) -> Result<Option<Vec<RejectedRecord>>, StoreError> {
        let req = layout::request(planned);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .records
            .fetch_add(req.records.len() as u64, Ordering::Relaxed);
        self.stats
            .metered_bytes
            .fetch_add(req.metered_bytes as u64, Ordering::Relaxed);
        self.stats
            .write_units
            .fetch_add(layout::write_units(req.metered_bytes), Ordering::Relaxed);
        let sent = clients
            .write
            .write_records()
            .database_name(&self.config.database)
            .table_name(&self.config.table)
            .common_attributes(req.common)
            .set_records(Some(req.records))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), WriteRecordsError::RejectedRecordsException(_)) =>
            {
                let WriteRecordsError::RejectedRecordsException(r) = e.into_err() else {
                    unreachable!("matched above")
                };
                Ok(Some(r.rejected_records().to_vec()))
            }
            Err(e) => Err(store_error(BACKEND, "WriteRecords", e)),
        }
    }
}

/// Splits a request's records after a RejectedRecords answer: the ones to send again with a
/// higher version (upsert), the failures to report, and how many were ingested.
pub fn triage(
    planned: Vec<PlannedRecord>,
    rejected: &[RejectedRecord],
    upsert: bool,
) -> (Vec<PlannedRecord>, Vec<ItemFailure>, usize) {
    let by_index: BTreeMap<usize, &RejectedRecord> = rejected
        .iter()
        .filter_map(|r| usize::try_from(r.record_index()).ok().map(|i| (i, r)))
        .collect();
    let (mut retry, mut failures, mut ingested) = (Vec::new(), Vec::new(), 0);
    for (i, mut p) in planned.into_iter().enumerate() {
        let Some(r) = by_index.get(&i) else {
            ingested += 1;
            continue;
        };
        let reason = r.reason().unwrap_or("rejected without a reason");
        match r.existing_version() {
            Some(existing) if upsert => {
                p.version = Some(existing + 1);
                retry.push(p);
            }
            Some(existing) => failures.push(ItemFailure {
                index: p.index,
                reason: format!(
                    "Timestream rejected the record: {reason} (stored version {existing}; \
                     write in upsert mode to replace it)"
                ),
                retryable: false,
            }),
            None => failures.push(ItemFailure {
                index: p.index,
                reason: format!("Timestream rejected the record: {reason}"),
                retryable: false,
            }),
        }
    }
    (retry, failures, ingested)
}

#[async_trait]
impl ReadingWriter for TimestreamReadings {
    fn max_batch(&self) -> usize {
        TIMESTREAM_MAX_RECORDS
    }

    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let mut report = WriteReport::default();
        if readings.is_empty() {
            return Ok(report);
        }
        let clients = self.clients().await?;
        let windows = self.windows().await?;
        let now = Utc::now();
        let (mut recent, mut old) = (Vec::new(), Vec::new());
        for (i, r) in readings.iter().enumerate() {
            let fail = |reason: String| ItemFailure {
                index: i,
                reason,
                retryable: false,
            };
            if r.time() > now + FUTURE_WINDOW {
                report.failures.push(fail(format!(
                    "{} is more than 15 minutes ahead; Timestream refuses it (future points belong \
                     in the forecast store)",
                    r.time().to_rfc3339()
                )));
                continue;
            }
            let planned = match layout::plan(i, r) {
                Ok(p) => p,
                Err(reason) => {
                    report.failures.push(fail(reason.to_string()));
                    continue;
                }
            };
            match windows {
                Some(w) if r.time() < now - w.memory && !w.magnetic_writes => {
                    report.failures.push(fail(format!(
                        "{} is older than the memory store's {} h and table {} does not accept \
                         magnetic-store writes; enable them (`meter store init` creates tables \
                         that do)",
                        r.time().to_rfc3339(),
                        w.memory.num_hours(),
                        self.config.table
                    )));
                }
                Some(w) if r.time() < now - w.memory => old.push(planned),
                _ => recent.push(planned),
            }
        }
        for group in [recent, old] {
            for chunk in group.chunks(TIMESTREAM_MAX_RECORDS) {
                let indices = chunk.iter().map(|p| p.index);
                merge_chunk(
                    &mut report,
                    indices,
                    self.send(clients, chunk.to_vec()).await,
                )?;
            }
        }
        report.failures.sort_by_key(|f| f.index);
        Ok(report)
    }
}

impl TimestreamReadings {
    /// Runs a query and follows `NextToken` to the end.
    pub async fn query(&self, sql: &str) -> Result<Table, StoreError> {
        let clients = self.clients().await?;
        let mut table = Table::default();
        let mut token: Option<String> = None;
        loop {
            let out = clients
                .query
                .query()
                .query_string(sql)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| store_error(BACKEND, "Query", e))?;
            if table.columns.is_empty() {
                table.columns = out
                    .column_info()
                    .iter()
                    .map(|c| c.name().unwrap_or_default().to_owned())
                    .collect();
            }
            for row in out.rows() {
                table.rows.push(
                    row.data()
                        .iter()
                        .map(|d| {
                            if d.null_value() == Some(true) {
                                None
                            } else {
                                d.scalar_value().map(str::to_owned)
                            }
                        })
                        .collect(),
                );
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(table),
            }
        }
    }

    async fn infos(&self, meter: Option<&MeterId>) -> Result<Vec<MeterInfo>, StoreError> {
        let table = self.query(&self.sql.series(meter)).await?;
        let mut out: Vec<MeterInfo> = Vec::new();
        for (m, s) in table.series()? {
            match out.last_mut() {
                Some(last) if last.meter == m => last.series.push(s),
                _ => out.push(MeterInfo {
                    meter: m,
                    series: vec![s],
                }),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl RangeReader for TimestreamReadings {
    async fn range(&self, q: &RangeQuery) -> Result<Page, StoreError> {
        let after = q.after.as_ref().map(|c| c.reading_position()).transpose()?;
        let sql = self.sql.range(
            &q.meter,
            q.measure.as_ref(),
            q.range,
            after.as_ref().map(|(m, t)| (m, *t)),
            q.limit,
        );
        let readings = self.query(&sql).await?.readings()?;
        Ok(Page::of(readings, q.limit, false))
    }
}

#[async_trait]
impl ReadingReader for TimestreamReadings {
    async fn latest(&self, meter: Option<&MeterId>) -> Result<Vec<Reading>, StoreError> {
        self.query(&self.sql.latest(meter)).await?.readings()
    }

    async fn before(
        &self,
        (meter, measure): (&MeterId, &MeasureName),
        t: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let sql = self.sql.before(meter, measure, t, n);
        let mut readings = self.query(&sql).await?.readings()?;
        readings.reverse();
        Ok(readings)
    }

    async fn meters(&self) -> Result<Vec<MeterInfo>, StoreError> {
        self.infos(None).await
    }

    async fn meter(&self, meter: &MeterId) -> Result<Option<MeterInfo>, StoreError> {
        Ok(self.infos(Some(meter)).await?.into_iter().next())
    }

    /// One query aggregates the range in the database ([`Sql::rollup`]); the counter rules
    /// decide the readings it kept ([`meter_core::binned`]). The raw readings are read instead
    /// when the answer cannot decide a counter (it sat under its level for longer than the
    /// query looks) or no bin width fits the buckets; the series' catalogue is read first only
    /// when the query names no measure, or the range holds no reading (for its unit and kind).
    async fn rollup(&self, query: &RollupQuery) -> Result<Rollup, StoreError> {
        let info = || async {
            let info = self.meter(&query.meter).await?.ok_or_else(|| {
                StoreError::InvalidQuery(format!(
                    "no readings are stored for meter {}",
                    query.meter
                ))
            })?;
            let s = info.pick(query.measure.as_ref())?;
            Ok::<_, StoreError>((s.measure.clone(), s.unit.clone(), s.kind))
        };
        let measure = match &query.measure {
            Some(m) => m.clone(),
            None => info().await?.0,
        };
        let Some(width) = binned::bin_width(query.range, query.granularity, query.zone)? else {
            return rollup_from_readings(self, query, info().await?).await;
        };
        let sql = self.sql.rollup(&query.meter, &measure, query.range, width);
        let answer = self.query(&sql).await?.binned(measure.as_str())?;
        let (unit, kind) = match answer.series {
            Some(series) => series,
            None => {
                let (_, unit, kind) = info().await?;
                (unit, kind)
            }
        };
        let mut builder = RollupBuilder::for_query(query, kind)?;
        let filled = binned::fill(
            &mut builder,
            query.range,
            kind,
            query.register,
            width,
            &answer.bins,
            &answer.kept,
        );
        match filled {
            Ok(()) => query.answer((measure, unit, kind), builder),
            Err(BinnedError::Undecidable { at }) => {
                self.stats.raw_rollups.fetch_add(1, Ordering::Relaxed);
                tracing::info!(meter = %query.meter, %measure, %at, "rollup reads raw readings: the binned answer cannot decide the counter there");
                rollup_from_readings(self, query, (measure, unit, kind)).await
            }
            Err(BinnedError::Rollup(e)) => Err(e.into()),
            Err(e @ BinnedError::Inconsistent(_)) => Err(StoreError::Corrupt(e.to_string())),
        }
    }
}

/// The retention a table is created with when `meter store init` makes it: the template's
/// defaults.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Memory store, hours.
    pub memory_hours: i64,
    /// Magnetic store, days.
    pub magnetic_days: i64,
}

impl Default for Retention {
    fn default() -> Self {
        use meter_core::contract::cloud as names;
        Self {
            memory_hours: names::TIMESTREAM_MEMORY_RETENTION_HOURS,
            magnetic_days: names::TIMESTREAM_MAGNETIC_RETENTION_DAYS,
        }
    }
}

/// Creates the database and table when missing, with magnetic-store writes on (old readings
/// land there); returns whether anything was created.
pub async fn create_table(
    sdk: &aws_config::SdkConfig,
    database: &str,
    table: &str,
    retention: Retention,
) -> Result<bool, StoreError> {
    let clients = build_clients(sdk).await?;
    let mut created = false;
    match clients
        .write
        .describe_database()
        .database_name(database)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            clients
                .write
                .create_database()
                .database_name(database)
                .send()
                .await
                .map_err(|e| store_error(BACKEND, &format!("CreateDatabase {database}"), e))?;
            created = true;
        }
        Err(e) => {
            return Err(store_error(
                BACKEND,
                &format!("DescribeDatabase {database}"),
                e,
            ))
        }
    }
    match clients
        .write
        .describe_table()
        .database_name(database)
        .table_name(table)
        .send()
        .await
    {
        Ok(_) => Ok(created),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            let retention = RetentionProperties::builder()
                .memory_store_retention_period_in_hours(retention.memory_hours)
                .magnetic_store_retention_period_in_days(retention.magnetic_days)
                .build()
                .map_err(|e| StoreError::InvalidQuery(e.to_string()))?;
            clients
                .write
                .create_table()
                .database_name(database)
                .table_name(table)
                .retention_properties(retention)
                .magnetic_store_write_properties(
                    MagneticStoreWriteProperties::builder()
                        .enable_magnetic_store_writes(true)
                        .build()
                        .map_err(|e| StoreError::InvalidQuery(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| store_error(BACKEND, &format!("CreateTable {database}.{table}"), e))?;
            Ok(true)
        }
        Err(e) => Err(store_error(
            BACKEND,
            &format!("DescribeTable {database}.{table}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use meter_core::{Kind, SourceName, Unit};

    fn planned(n: usize) -> Vec<PlannedRecord> {
        (0..n)
            .map(|i| {
                let r = Reading::new(
                    MeterId::new(format!("c{i}").as_str()).unwrap(),
                    MeasureName::new("volume").unwrap(),
                    10.0,
                    Unit::Litre,
                    Kind::Cumulative,
                    Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
                    SourceName::new("sst-cloud").unwrap(),
                )
                .unwrap();
                layout::plan(i + 10, &r).unwrap()
            })
            .collect()
    }

    fn rejected(index: i32, existing: Option<i64>) -> RejectedRecord {
        RejectedRecord::builder()
            .record_index(index)
            .reason(
                "A record with the same time and dimensions already exists with a different value.",
            )
            .set_existing_version(existing)
            .build()
    }

    #[test]
    fn rejected_records_are_reported_with_the_callers_index_and_reason() {
        let (retry, failures, ingested) = triage(
            planned(4),
            &[rejected(1, Some(1)), rejected(3, None)],
            false,
        );
        assert!(retry.is_empty());
        assert_eq!(ingested, 2);
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].index, 11);
        assert!(
            failures[0].reason.contains("stored version 1"),
            "{}",
            failures[0].reason
        );
        assert!(failures[0].reason.contains("different value"));
        assert_eq!(failures[1].index, 13);
    }

    #[test]
    fn upsert_retries_conflicts_with_a_higher_version() {
        let (retry, failures, ingested) =
            triage(planned(3), &[rejected(2, Some(4)), rejected(0, None)], true);
        assert_eq!(ingested, 1);
        assert_eq!(failures.len(), 1, "no version known: reported");
        assert_eq!(failures[0].index, 10);
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].index, 12);
        assert_eq!(retry[0].version, Some(5));
    }
}
