//! The ports: what every backend (SQLite, DynamoDB, Timestream, CloudWatch, the in-memory fakes)
//! implements, and what handlers, the API and the CLI call.
//!
//! Traits are object-safe (`async_trait`) so a binary picks its backend at start-up and passes
//! `&dyn ReadingWriter` around.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::counter::{CONTEXT_BEFORE, WINDOW};
use crate::reading::{Kind, MeasureName, MeterId, Reading, SourceName, Unit};
use crate::rollup::{Granularity, Rollup, RollupBuilder, RollupError, RollupRule};
use crate::time::TimeRange;

/// A boxed error from a backend's client, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of a whole call to a backend (per-item failures are in the reports instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or was overloaded; the call may succeed if retried.
    #[error("{backend} is unavailable: {message}")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The client's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend refused the call (permissions, validation, missing table); retrying will
    /// not help.
    #[error("{backend} refused the request: {message}")]
    Refused {
        /// Which backend.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The client's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The query itself was invalid (a cursor from elsewhere, a range too large).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// What was stored could not be read back as valid data.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl From<RollupError> for StoreError {
    fn from(e: RollupError) -> Self {
        Self::InvalidQuery(e.to_string())
    }
}

/// One item of a batch that was not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    /// Its position in the batch passed to the call.
    pub index: usize,
    /// Why, in words a person can act on.
    pub reason: String,
    /// Whether sending it again may succeed (throttling) or not (a conflicting unit).
    pub retryable: bool,
}

/// The outcome of a batch write: how many items were stored, and which were not and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteReport {
    /// Items stored (new, replaced or unchanged: writes are idempotent).
    pub written: usize,
    /// Items not stored, by index into the batch.
    pub failures: Vec<ItemFailure>,
}

impl WriteReport {
    /// Whether every item was stored.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// Adds a later report about a sub-batch that started at `offset` in the caller's batch.
    pub fn merge(&mut self, other: WriteReport, offset: usize) {
        self.written += other.written;
        self.failures
            .extend(other.failures.into_iter().map(|mut f| {
                f.index += offset;
                f
            }));
    }
}

/// Stores readings. Writes are idempotent: a reading is keyed by (meter, measure, time), so the
/// same key written twice is stored once, and a changed value replaces the stored one.
#[async_trait]
pub trait ReadingWriter: Send + Sync {
    /// The most readings one call accepts (the backend's request limit).
    fn max_batch(&self) -> usize;

    /// Writes a batch of at most [`Self::max_batch`] readings. Items that fail are listed in
    /// the report; the call only errs when nothing could be attempted.
    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError>;

    /// Finishes what the writer deferred to the end of a bulk write (a DynamoDB backfill's
    /// stored rollups, recomputed once per series rather than once per call); the readings
    /// are stored either way, and a failure says what is left to redo (writing them again).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The stored series of `meters`, asked of `reader` with up to `concurrency` requests in flight,
/// for decoders of messages that may not say their unit and kind ([`FoundSeries`]). A meter
/// with nothing stored is simply absent.
///
/// [`FoundSeries`]: crate::decode::FoundSeries
pub async fn find_series(
    reader: &dyn ReadingReader,
    meters: impl IntoIterator<Item = MeterId>,
    concurrency: usize,
) -> Result<crate::decode::FoundSeries, StoreError> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let infos: Vec<Option<MeterInfo>> = stream::iter(meters)
        .map(|m| async move { reader.meter(&m).await })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut found = crate::decode::FoundSeries::default();
    for info in infos.into_iter().flatten() {
        for s in info.series {
            found.insert(info.meter.clone(), s.measure, s.unit, s.kind);
        }
    }
    Ok(found)
}

/// Writes any number of readings through `writer`, in batches of its maximum size with up to
/// `concurrency` calls in flight. A batch whose call failed as a whole is reported item by item;
/// the call only errs when every batch failed with an error that retrying will not fix (a
/// missing table), so a caller can stop sending more.
pub async fn write_all(
    writer: &dyn ReadingWriter,
    readings: &[Reading],
    concurrency: usize,
) -> Result<WriteReport, StoreError> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    // A plain async fn, not a closure returning a future: the resulting future must be Send for
    // every lifetime, which rustc cannot prove for closures over borrowed chunks.
    async fn one<'a>(
        writer: &'a dyn ReadingWriter,
        offset: usize,
        chunk: &'a [Reading],
    ) -> (usize, usize, Result<WriteReport, StoreError>) {
        (offset, chunk.len(), writer.write(chunk).await)
    }
    // A series' readings go out together whatever order they came in: in time order (every
    // meter at t, then at t+5 min) each request would carry one reading of each of its 25 or
    // 100 meters; grouped, a Timestream request shares its dimensions in `CommonAttributes`
    // and a DynamoDB request writes one meter's neighbouring items. The sort is stable, so of
    // two readings of one instant the later still comes later.
    let key = |r: &Reading| (r.meter().clone(), r.measure().clone(), r.time());
    let grouped = readings.windows(2).all(|w| key(&w[0]) <= key(&w[1]));
    let order: Option<Vec<usize>> = (!grouped).then(|| {
        let mut order: Vec<usize> = (0..readings.len()).collect();
        order.sort_by_cached_key(|i| key(&readings[*i]));
        order
    });
    let sorted: Vec<Reading>;
    let readings = match &order {
        Some(order) => {
            sorted = order.iter().map(|i| readings[*i].clone()).collect();
            &sorted[..]
        }
        None => readings,
    };
    let size = writer.max_batch().max(1);
    let mut chunks = readings.chunks(size).enumerate();
    let mut in_flight = FuturesUnordered::new();
    let mut report = WriteReport::default();
    let mut fatal: Option<StoreError> = None;
    let mut all_fatal = true;
    loop {
        while in_flight.len() < concurrency.max(1) {
            match chunks.next() {
                Some((i, chunk)) => in_flight.push(one(writer, i * size, chunk)),
                None => break,
            }
        }
        let Some((offset, len, result)) = in_flight.next().await else {
            break;
        };
        match result {
            Ok(r) => {
                all_fatal = false;
                report.merge(r, offset);
            }
            Err(e) => {
                all_fatal &= !e.is_retryable();
                report
                    .failures
                    .extend((offset..offset + len).map(|index| ItemFailure {
                        index,
                        reason: format!("not stored: {e}"),
                        retryable: e.is_retryable(),
                    }));
                fatal.get_or_insert(e);
            }
        }
    }
    match fatal {
        Some(e) if all_fatal => Err(e),
        _ => {
            if let Some(order) = &order {
                for f in &mut report.failures {
                    f.index = order[f.index];
                }
            }
            report.failures.sort_by_key(|f| f.index);
            Ok(report)
        }
    }
}

/// An opaque position in a paginated listing, made by the backend that returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

impl Cursor {
    /// The position just after a reading in a listing ordered by measure then time, the order
    /// of [`ReadingReader::range`]; the reading stores share this form.
    pub fn after_reading(r: &Reading) -> Self {
        Self(format!("{}:{}", r.measure(), r.time().timestamp_millis()))
    }

    /// The measure and epoch milliseconds of a cursor made by [`Cursor::after_reading`].
    pub fn reading_position(&self) -> Result<(MeasureName, i64), StoreError> {
        let bad = || StoreError::InvalidQuery("the cursor was not made by this store".into());
        let (m, t) = self.0.rsplit_once(':').ok_or_else(bad)?;
        Ok((
            MeasureName::new(m).map_err(|_| bad())?,
            t.parse().map_err(|_| bad())?,
        ))
    }
}

/// A request for the readings of one meter in a time range.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    /// The meter.
    pub meter: MeterId,
    /// One measure, or all of them.
    pub measure: Option<MeasureName>,
    /// The range, `[from, to)`.
    pub range: TimeRange,
    /// The most readings to return in this page.
    pub limit: usize,
    /// Where the previous page ended.
    pub after: Option<Cursor>,
}

/// One page of readings, ordered by measure then time.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The readings.
    pub readings: Vec<Reading>,
    /// Where to continue, or `None` after the last page.
    pub next: Option<Cursor>,
}

impl Page {
    /// A page from readings fetched one past `limit` (the extra one, or `more`, says another
    /// page follows), with the cursor after its last reading.
    pub fn of(mut readings: Vec<Reading>, limit: usize, more: bool) -> Self {
        let more = more || readings.len() > limit;
        readings.truncate(limit);
        let next = if more {
            readings.last().map(Cursor::after_reading)
        } else {
            None
        };
        Self { readings, next }
    }
}

/// What a store knows of one series (one measure of one meter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesInfo {
    /// The measure.
    pub measure: MeasureName,
    /// Its unit.
    pub unit: Unit,
    /// Its kind.
    pub kind: Kind,
    /// How many readings are stored, when the store can tell without reading them all
    /// (DynamoDB cannot: counting a partition means reading it).
    pub count: Option<u64>,
    /// The earliest reading's time.
    pub first: DateTime<Utc>,
    /// The latest reading's time.
    pub last: DateTime<Utc>,
}

/// What a store knows of one meter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeterInfo {
    /// The meter.
    pub meter: MeterId,
    /// Its series, by measure name.
    pub series: Vec<SeriesInfo>,
}

impl MeterInfo {
    /// The series of one measure, or the only series when `measure` is `None`.
    pub fn pick(&self, measure: Option<&MeasureName>) -> Result<&SeriesInfo, StoreError> {
        pick_series(&self.meter, &self.series, |s| s.measure.as_str(), measure)
    }
}

/// The series of `meter` a request names (`measure`), or its only one: the rule
/// [`MeterInfo::pick`] follows, for a store that knows a meter's series in another shape.
pub fn pick_series<'a, T>(
    meter: &MeterId,
    series: &'a [T],
    name: impl Fn(&T) -> &str,
    measure: Option<&MeasureName>,
) -> Result<&'a T, StoreError> {
    let names = || series.iter().map(&name).collect::<Vec<_>>().join(", ");
    match measure {
        Some(m) => series
            .iter()
            .find(|s| name(s) == m.as_str())
            .ok_or_else(|| {
                StoreError::InvalidQuery(format!(
                    "meter {meter} has no measure {m}; it has {}",
                    names()
                ))
            }),
        None if series.len() == 1 => Ok(&series[0]),
        None => Err(StoreError::InvalidQuery(format!(
            "meter {meter} has several measures ({}); name one",
            names()
        ))),
    }
}

/// A request for a rollup.
#[derive(Debug, Clone)]
pub struct RollupQuery {
    /// The meter.
    pub meter: MeterId,
    /// The measure, or `None` for the meter's only one.
    pub measure: Option<MeasureName>,
    /// The range, `[from, to)`.
    pub range: TimeRange,
    /// Hours or days.
    pub granularity: Granularity,
    /// The zone buckets are cut in.
    pub zone: Tz,
    /// The size of a counter's register when known (it wraps there; see
    /// [`RegistryEntry::register_size`]); `None` infers it from the wraps.
    pub register: Option<f64>,
}

impl RollupQuery {
    /// A query with no register size (wraps inferred).
    pub fn new(
        meter: MeterId,
        measure: Option<MeasureName>,
        range: TimeRange,
        granularity: Granularity,
        zone: Tz,
    ) -> Self {
        Self {
            meter,
            measure,
            range,
            granularity,
            zone,
            register: None,
        }
    }

    /// The same for a counter whose register wraps at `size`.
    pub fn with_register(self, register: Option<f64>) -> Self {
        Self { register, ..self }
    }

    /// The answer to this query: `builder`'s buckets for the series `(measure, unit, kind)`.
    pub fn answer(
        &self,
        (measure, unit, kind): (MeasureName, Unit, Kind),
        builder: RollupBuilder,
    ) -> Result<Rollup, StoreError> {
        Ok(Rollup {
            meter: self.meter.clone(),
            measure,
            unit,
            kind,
            rule: RollupRule::for_kind(kind),
            zone: self.zone.name().to_owned(),
            granularity: self.granularity,
            buckets: builder.finish_checked()?,
        })
    }
}

impl RollupBuilder {
    /// A builder for `query` over a series of `kind`, with the query's register size.
    pub fn for_query(query: &RollupQuery, kind: Kind) -> Result<Self, RollupError> {
        let builder = Self::new(query.range, query.granularity, query.zone, kind)?;
        Ok(match query.register {
            Some(size) => builder.with_register(size),
            None => builder,
        })
    }
}

/// The register size the registry gives a meter, when there is a registry and it names one.
pub async fn registered_register(
    registry: Option<&dyn MeterRegistry>,
    meter: &MeterId,
) -> Result<Option<f64>, StoreError> {
    match registry {
        Some(r) => Ok(r.entry(meter).await?.and_then(|e| e.register_size())),
        None => Ok(None),
    }
}

/// Where a counter rollup looks for the readings after its range: up to a year after it.
pub fn window_after(range: TimeRange) -> Result<TimeRange, StoreError> {
    TimeRange::new(range.to(), range.to() + chrono::Duration::days(366))
        .map_err(|e| StoreError::InvalidQuery(e.to_string()))
}

/// Page size used when a rollup walks the readings of a range.
const ROLLUP_PAGE: usize = 5_000;

/// Reads the readings of a meter in a range: what every reading store answers, including the
/// forecast store, whose items live only until their time has passed.
#[async_trait]
pub trait RangeReader: Send + Sync {
    /// One page of the readings of a meter in a range, ordered by measure then time.
    async fn range(&self, query: &RangeQuery) -> Result<Page, StoreError>;
}

/// Reads the history back: ranges, and what a history of series answers beyond them (the
/// newest reading, the baseline before a range, the catalogue of meters, rollups).
#[async_trait]
pub trait ReadingReader: RangeReader {
    /// The newest reading of each series, of one meter or of every meter.
    async fn latest(&self, meter: Option<&MeterId>) -> Result<Vec<Reading>, StoreError>;

    /// The last `n` readings of a series strictly before `t`, oldest first (the context a
    /// counter's rollup reads before its range).
    async fn before(
        &self,
        series: (&MeterId, &MeasureName),
        t: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<Reading>, StoreError>;

    /// Every meter with its series.
    async fn meters(&self) -> Result<Vec<MeterInfo>, StoreError>;

    /// One meter with its series, or `None` if nothing is stored for it.
    async fn meter(&self, meter: &MeterId) -> Result<Option<MeterInfo>, StoreError> {
        Ok(self.meters().await?.into_iter().find(|m| &m.meter == meter))
    }

    /// Hourly or daily rollup of one series. The default walks the range page by page through
    /// the streaming builder ([`rollup_from_readings`]); a backend that can aggregate itself
    /// may override it.
    async fn rollup(&self, query: &RollupQuery) -> Result<Rollup, StoreError> {
        let info = self.meter(&query.meter).await?.ok_or_else(|| {
            StoreError::InvalidQuery(format!("no readings are stored for meter {}", query.meter))
        })?;
        let s = info.pick(query.measure.as_ref())?.clone();
        rollup_from_readings(self, query, (s.measure, s.unit, s.kind)).await
    }
}

/// The rollup of the series `(measure, unit, kind)` of the query's meter from its raw
/// readings: the range page by page, with a counter's context before and after it, through the
/// streaming builder.
pub async fn rollup_from_readings<R: ReadingReader + ?Sized>(
    reader: &R,
    query: &RollupQuery,
    series: (MeasureName, Unit, Kind),
) -> Result<Rollup, StoreError> {
    let (measure, _, kind) = &series;
    let mut builder = RollupBuilder::for_query(query, *kind)?;
    let counter = *kind == Kind::Cumulative;
    if counter {
        let key = (&query.meter, measure);
        for b in reader
            .before(key, query.range.from(), CONTEXT_BEFORE)
            .await?
        {
            builder.baseline(b.time(), b.value());
        }
    }
    let mut page_query = RangeQuery {
        meter: query.meter.clone(),
        measure: Some(measure.clone()),
        range: query.range,
        limit: ROLLUP_PAGE,
        after: None,
    };
    loop {
        let page = reader.range(&page_query).await?;
        for r in &page.readings {
            builder.push(r.time(), r.value())?;
        }
        match page.next {
            Some(next) => page_query.after = Some(next),
            None => break,
        }
    }
    if counter {
        // The counter rules decide the range's last readings with those after it.
        page_query.range = window_after(query.range)?;
        page_query.limit = WINDOW;
        page_query.after = None;
        for r in reader
            .range(&page_query)
            .await?
            .readings
            .iter()
            .take(WINDOW)
        {
            builder.push(r.time(), r.value())?;
        }
    }
    query.answer(series, builder)
}

/// One thing to poll or accept: an SST Cloud account, an HTTP JSON identifier, a CSV meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The entry's key (an identifier, or an account name for account-wide sources).
    pub id: MeterId,
    /// Which source reads it.
    pub source: SourceName,
    /// Source-specific settings (house id, URL template, the name of a secret; never a secret).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The zone its days are cut in, when not UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Whether the scheduler polls it.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

impl RegistryEntry {
    /// The size of the meter's counter register, from its `register_digits` param (a 5-digit
    /// index wraps at 100,000), when the param names one.
    pub fn register_size(&self) -> Option<f64> {
        let digits: i32 = self
            .params
            .get(crate::contract::PARAM_REGISTER_DIGITS)?
            .trim()
            .parse()
            .ok()?;
        (1..=15).contains(&digits).then(|| 10f64.powi(digits))
    }
}

fn enabled_default() -> bool {
    true
}

/// One page of registry entries, in id order.
#[derive(Debug, Clone, Default)]
pub struct RegistryPage {
    /// The entries.
    pub entries: Vec<RegistryEntry>,
    /// Where to continue, or `None` after the last page.
    pub next: Option<Cursor>,
}

/// The registry of what to poll.
#[async_trait]
pub trait MeterRegistry: Send + Sync {
    /// Adds or replaces an entry.
    async fn put(&self, entry: &RegistryEntry) -> Result<(), StoreError>;
    /// One entry.
    async fn entry(&self, id: &MeterId) -> Result<Option<RegistryEntry>, StoreError>;
    /// Removes an entry; `false` if there was none.
    async fn remove(&self, id: &MeterId) -> Result<bool, StoreError>;
    /// One page of entries.
    async fn list(&self, after: Option<&Cursor>, limit: usize) -> Result<RegistryPage, StoreError>;
}

/// An hourly event counter (seed 002's `Endpoint`, `EventHour`, `EventCount`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    /// What is counted (an mbed endpoint name).
    pub name: String,
    /// The UTC hour, truncated.
    pub hour: DateTime<Utc>,
}

impl CounterKey {
    /// The key of the hour containing `t`.
    pub fn at(name: impl Into<String>, t: DateTime<Utc>) -> Self {
        let hour = t
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(t);
        Self {
            name: name.into(),
            hour,
        }
    }

    /// The hour as seed 002 wrote it: `yyyy-MM-dd HH:00:00`.
    pub fn event_hour(&self) -> String {
        self.hour.format("%Y-%m-%d %H:00:00").to_string()
    }
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.event_hour())
    }
}

/// The outcome of adding to a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Added; the counter's new total.
    Added(u64),
    /// The dedupe key was seen before; nothing changed.
    Duplicate,
}

/// How long a dedupe key is remembered: longer than mbed Connector's 15 minutes of redelivery,
/// short enough that a device whose count restarts is counted again.
pub const DEDUPE_WINDOW_SECS: i64 = 3600;

/// Hourly counters with at-most-once adds per dedupe key (within [`DEDUPE_WINDOW_SECS`]).
#[async_trait]
pub trait Counters: Send + Sync {
    /// Adds `delta` to a counter, unless `dedupe` was already applied.
    async fn add(
        &self,
        key: &CounterKey,
        delta: u64,
        dedupe: Option<&str>,
    ) -> Result<AddOutcome, StoreError>;
    /// A counter's total (0 if never added to).
    async fn total(&self, key: &CounterKey) -> Result<u64, StoreError>;
}

/// One metric data point (CloudWatch's shape, which other backends can map).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDatum {
    /// The namespace (`MbedButtonPressHour` for seed 002).
    pub namespace: String,
    /// The metric name.
    pub name: String,
    /// Dimensions, possibly none.
    pub dimensions: Vec<(String, String)>,
    /// The instant it is for.
    pub time: DateTime<Utc>,
    /// The value.
    pub value: f64,
    /// The unit name (`Count`).
    pub unit: String,
}

/// Publishes metric data.
#[async_trait]
pub trait MetricPublisher: Send + Sync {
    /// The most data points one call accepts.
    fn max_batch(&self) -> usize;
    /// Publishes at most [`Self::max_batch`] points, reporting the ones not accepted.
    async fn publish(&self, data: &[MetricDatum]) -> Result<WriteReport, StoreError>;
}

/// Where records that did not land are kept, with their reasons, for people to read and replay
/// (a JSON-lines file next to a local store, objects under `quarantine/` on AWS).
#[async_trait]
pub trait Quarantine: Send + Sync {
    /// Keeps `rejections`; an error means they are not kept and the caller must say so.
    async fn keep(&self, rejections: &[crate::ingest::Rejection]) -> Result<(), StoreError>;
}

/// Where secrets come from (Secrets Manager or SSM on AWS). Values are never logged.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret named `id`, as text.
    async fn secret(&self, id: &str) -> Result<String, StoreError>;
}

/// Which part of an object to read, and which version of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetObject {
    /// Bytes from this offset (to the end, or to `range_end`).
    pub range_start: Option<u64>,
    /// The end of the range, exclusive.
    pub range_end: Option<u64>,
    /// Only if the object is still this version (its ETag): a resumed import must read the
    /// bytes it started on.
    pub if_version: Option<String>,
}

/// An object being read: a blocking reader over its body (read it on a blocking thread; a
/// large object streams, it is never whole in memory), its size and version.
#[allow(missing_debug_implementations)] // reason: the body is any reader
pub struct ObjectBody {
    /// The bytes.
    pub body: Box<dyn std::io::Read + Send>,
    /// The size of what the body holds, when known.
    pub size: Option<u64>,
    /// The object's version (an ETag).
    pub version: Option<String>,
    /// The object's `Content-Type`, when it has one (its charset names a text encoding).
    pub content_type: Option<String>,
}

impl ObjectBody {
    /// The charset of the content type (`text/csv; charset=iso-8859-1` -> `iso-8859-1`).
    pub fn charset(&self) -> Option<&str> {
        let ct = self.content_type.as_deref()?;
        ct.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| v.trim().trim_matches('"'))
        })
    }
}

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No such object.
    #[error("no object {bucket}/{key}")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The object is no longer the version asked for (it was replaced).
    #[error("{bucket}/{key} is no longer version {version}")]
    VersionChanged {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The version asked for.
        version: String,
    },
    /// The object is larger than the caller accepts.
    #[error("{bucket}/{key} is over {max} bytes")]
    TooLarge {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The limit.
        max: usize,
    },
    /// The store failed (retryable or not, as the [`StoreError`] says).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ObjectError {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

/// One page of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, in order.
    pub keys: Vec<String>,
    /// Where to continue, or `None` after the last page.
    pub next: Option<Cursor>,
}

/// Objects in buckets (S3 on AWS): what the import function reads and where it writes its
/// reports and resume markers.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Opens an object (or a range of it, or only a given version) for reading.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        what: &GetObject,
    ) -> Result<ObjectBody, ObjectError>;

    /// Reads a small object whole (a resume marker), refusing one over `max` bytes.
    async fn get_bytes(&self, bucket: &str, key: &str, max: usize) -> Result<Vec<u8>, ObjectError>;

    /// Writes an object whole.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectError>;

    /// One page of the keys under `prefix`.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&Cursor>,
    ) -> Result<KeyPage, ObjectError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_entry_names_its_register_size_in_digits() {
        let mut e: RegistryEntry =
            serde_json::from_value(serde_json::json!({"id": "m", "source": "csv"})).unwrap();
        assert_eq!(e.register_size(), None);
        e.params.insert("register_digits".into(), "5".into());
        assert_eq!(e.register_size(), Some(100_000.0));
        e.params.insert("register_digits".into(), "lots".into());
        assert_eq!(e.register_size(), None);
    }

    #[test]
    fn counter_keys_truncate_to_the_hour_in_seed_format() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T13:45:12.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let k = CounterKey::at("ep-1", t);
        assert_eq!(k.event_hour(), "2024-05-01 13:00:00");
    }

    #[test]
    fn reports_merge_with_offsets() {
        let mut a = WriteReport {
            written: 2,
            failures: vec![],
        };
        a.merge(
            WriteReport {
                written: 1,
                failures: vec![ItemFailure {
                    index: 1,
                    reason: "x".into(),
                    retryable: false,
                }],
            },
            10,
        );
        assert_eq!(a.written, 3);
        assert_eq!(a.failures[0].index, 11);
    }

    /// Writes every reading but those of value 13, which it refuses alone.
    fn refuse_thirteens(readings: &[Reading]) -> WriteReport {
        let mut report = WriteReport::default();
        for (index, r) in readings.iter().enumerate() {
            if r.value() == 13.0 {
                report.failures.push(ItemFailure {
                    index,
                    reason: "unlucky".into(),
                    retryable: false,
                });
            } else {
                report.written += 1;
            }
        }
        report
    }

    /// Batches of 3; a batch whose first reading has value 666 fails as a whole (for good, or
    /// retryably when `.1`), and a reading of value 13 is refused alone.
    struct Picky(std::sync::Mutex<Vec<usize>>, bool);

    #[async_trait]
    impl ReadingWriter for Picky {
        fn max_batch(&self) -> usize {
            3
        }
        async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
            self.0.lock().unwrap().push(readings.len());
            if readings[0].value() == 666.0 {
                let message = "the table is gone".to_owned();
                return Err(if self.1 {
                    StoreError::Unavailable {
                        backend: "test",
                        message,
                        source: None,
                    }
                } else {
                    StoreError::Refused {
                        backend: "test",
                        message,
                        source: None,
                    }
                });
            }
            Ok(refuse_thirteens(readings))
        }
    }

    fn readings(values: &[f64]) -> Vec<Reading> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| crate::testing::gauge(*v, i as i64))
            .collect()
    }

    #[tokio::test]
    async fn write_all_cuts_batches_and_reports_failures_at_the_callers_index() {
        let w = Picky(Default::default(), false);
        let rs = readings(&[1.0, 2.0, 3.0, 666.0, 5.0, 6.0, 7.0, 13.0]);
        let report = write_all(&w, &rs, 2).await.unwrap();
        let mut sizes = w.0.lock().unwrap().clone();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![2, 3, 3]);
        assert_eq!(report.written, 4);
        let failed: Vec<usize> = report.failures.iter().map(|f| f.index).collect();
        assert_eq!(failed, vec![3, 4, 5, 7]);
        assert!(report.failures[0].reason.contains("the table is gone"));
        assert_eq!(report.failures[3].reason, "unlucky");
    }

    /// Records the meters of each call (batches of 3) and refuses a reading of value 13.
    struct Grouping(std::sync::Mutex<Vec<Vec<String>>>);

    #[async_trait]
    impl ReadingWriter for Grouping {
        fn max_batch(&self) -> usize {
            3
        }
        async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
            self.0
                .lock()
                .unwrap()
                .push(readings.iter().map(|r| r.meter().to_string()).collect());
            Ok(refuse_thirteens(readings))
        }
    }

    #[tokio::test]
    async fn write_all_sends_each_series_together_and_reports_at_the_callers_index() {
        // Three meters in time order: a, b, c at t0, then at t1, then at t2.
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut rs = Vec::new();
        for step in 0..3 {
            for m in ["c", "a", "b"] {
                let value = if m == "b" && step == 1 { 13.0 } else { 1.0 };
                rs.push(crate::testing::reading(
                    m,
                    "v",
                    t0 + chrono::Duration::minutes(step),
                    value,
                    Kind::Gauge,
                    Unit::Celsius,
                ));
            }
        }
        let w = Grouping(Default::default());
        let report = write_all(&w, &rs, 1).await.unwrap();
        let calls = w.0.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![vec!["a"; 3], vec!["b"; 3], vec!["c"; 3]],
            "each call holds one meter's readings"
        );
        assert_eq!(report.written, 8);
        // b at t1 is the 5th reading the caller gave.
        assert_eq!(
            report.failures.iter().map(|f| f.index).collect::<Vec<_>>(),
            vec![5]
        );
    }

    #[tokio::test]
    async fn write_all_errs_only_when_every_batch_failed_for_good() {
        let rs = readings(&[666.0, 1.0, 1.0]);
        let err = write_all(&Picky(Default::default(), false), &rs, 4)
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        let report = write_all(&Picky(Default::default(), true), &rs, 4)
            .await
            .unwrap();
        assert_eq!(report.failures.len(), 3);
        assert!(report.failures.iter().all(|f| f.retryable));
    }
}
