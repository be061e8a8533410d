//! DynamoDB adapters of the meterflow ports, with the key layouts the template declares
//! (`meter_core::contract::cloud`):
//!
//! - [`DynamoReadings`]: the history store for accounts without Timestream. Items are keyed by
//!   `series = "<meter>#<measure>"` and `ts` (epoch ms), so "meter, time range" is one Query and a
//!   repeated put is idempotent. A `#series` partition lists each series with its unit and kind.
//! - [`DynamoForecasts`]: seed 003's future points (`identifier`, `time` in epoch seconds, `value`
//!   as a string) with the `expiry` TTL attribute.
//! - [`DynamoRegistry`]: the meter registry (`id`), paged with Scan.
//! - [`DynamoCounters`]: seed 002's hourly counters (`Endpoint`, `EventHour`, `ADD EventCount`),
//!   with at-most-once adds through a dedupe item written in the same transaction.
//!
//! Writes use BatchWriteItem at its limit of 25 requests; UnprocessedItems are retried with
//! exponential backoff and jitter until a deadline, then reported item by item.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use meter_aws::{merge_chunk, send_batch, store_error, Answer, RetryPolicy};
use meter_core::batch::DYNAMODB_MAX_BATCH_WRITE;
use meter_core::contract::cloud as names;
use meter_core::ports::{
    AddOutcome, CounterKey, Counters, Cursor, ItemFailure, MeterInfo, MeterRegistry, Page,
    RangeQuery, RangeReader, ReadingReader, ReadingWriter, RegistryEntry, RegistryPage, SeriesInfo,
    StoreError, WriteReport, DEDUPE_WINDOW_SECS,
};
use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Tags, Unit};

const BACKEND: &str = "DynamoDB";
/// The partition that lists the series of the readings table.
pub const SERIES_PARTITION: &str = "#series";
/// Dedupe items of the counters table live under this endpoint prefix (and expire by TTL);
/// the stream-metrics function skips them.
pub const DEDUPE_PREFIX: &str = names::COUNTERS_DEDUPE_PREFIX;
/// Seed 002's count attribute.
pub const EVENT_COUNT: &str = names::COUNTERS_COUNT;
/// How long seed 003 kept future points.
pub const FORECAST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}
fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Result<&'a str, StoreError> {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("item without {k}")))
}
fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> Result<f64, StoreError> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt(format!("item without number {k}")))
}

/// Writes put requests in batches of 25 through [`send_batch`], resending unprocessed items
/// until `budget` runs out; the report lists the items (by index into `items`) that were not
/// written, with the reason.
async fn batch_put(
    client: &Client,
    table: &str,
    items: Vec<HashMap<String, AttributeValue>>,
    budget: Duration,
) -> Result<WriteReport, StoreError> {
    let mut report = WriteReport::default();
    let indexed: Vec<(usize, HashMap<String, AttributeValue>)> =
        items.into_iter().enumerate().collect();
    for chunk in indexed.chunks(DYNAMODB_MAX_BATCH_WRITE) {
        let part = send_batch(RetryPolicy::new(budget), chunk.to_vec(), |pending| {
            batch_write_once(client, table, pending)
        })
        .await;
        merge_chunk(&mut report, chunk.iter().map(|(i, _)| *i), part)?;
    }
    Ok(report)
}

/// One `BatchWriteItem` call; its unprocessed items are the answer's resends.
async fn batch_write_once(
    client: &Client,
    table: &str,
    pending: Vec<(usize, HashMap<String, AttributeValue>)>,
) -> Result<Answer<HashMap<String, AttributeValue>>, StoreError> {
    let requests: Vec<WriteRequest> = pending
        .iter()
        .map(|(_, item)| {
            let put = PutRequest::builder()
                .set_item(Some(item.clone()))
                .build()
                .map_err(|e| corrupt(e.to_string()))?;
            Ok(WriteRequest::builder().put_request(put).build())
        })
        .collect::<Result<_, StoreError>>()?;
    let out = client
        .batch_write_item()
        .request_items(table, requests)
        .send()
        .await
        .map_err(|e| store_error(BACKEND, &format!("BatchWriteItem on {table}"), e))?;
    let unprocessed: Vec<&HashMap<String, AttributeValue>> = out
        .unprocessed_items()
        .and_then(|m| m.get(table))
        .map(|reqs| {
            reqs.iter()
                .filter_map(|r| r.put_request().map(|p| p.item()))
                .collect()
        })
        .unwrap_or_default();
    let total = pending.len();
    let resend: Vec<_> = pending
        .into_iter()
        .filter(|(_, item)| unprocessed.contains(&item))
        .collect();
    Ok(Answer {
        written: total - resend.len(),
        resend,
        resend_reason: format!("DynamoDB left items of table {table} unprocessed"),
        refused: Vec::new(),
    })
}

fn series_key(meter: &MeterId, measure: &MeasureName) -> String {
    format!("{meter}#{measure}")
}

fn tags_attr(tags: &Tags) -> AttributeValue {
    AttributeValue::M(tags.iter().map(|(k, v)| (k.to_owned(), s(v))).collect())
}

fn tags_of(item: &HashMap<String, AttributeValue>) -> Result<Tags, StoreError> {
    let map: BTreeMap<String, String> = item
        .get("tags")
        .and_then(|v| v.as_m().ok())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
                .collect()
        })
        .unwrap_or_default();
    Tags::try_from(map).map_err(corrupt)
}

/// The reading history store on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoReadings {
    client: Client,
    table: String,
    budget: Duration,
    /// Series this process has registered, so each costs one PutItem per process, not per batch.
    known: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl DynamoReadings {
    /// A store over `table` (the template's readings table).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            budget: Duration::from_secs(20),
            known: Default::default(),
        }
    }

    /// How long unprocessed items are retried before they are reported.
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    fn item(r: &Reading) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                names::READINGS_PK.to_owned(),
                s(series_key(r.meter(), r.measure())),
            ),
            (
                names::READINGS_SK.to_owned(),
                n(r.time().timestamp_millis()),
            ),
            ("v".to_owned(), n(r.value())),
            ("src".to_owned(), s(r.source().as_str())),
        ])
    }

    fn series_item(r: &Reading) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (names::READINGS_PK.to_owned(), s(SERIES_PARTITION)),
            // The series partition's sort key is numeric like every item's: a stable hash would
            // collide; so series are keyed by position-free text in `name` and a numeric id.
            (
                names::READINGS_SK.to_owned(),
                n(series_id(r.meter(), r.measure())),
            ),
            ("name".to_owned(), s(series_key(r.meter(), r.measure()))),
            ("meter".to_owned(), s(r.meter().as_str())),
            ("measure".to_owned(), s(r.measure().as_str())),
            ("unit".to_owned(), s(r.unit().symbol())),
            ("kind".to_owned(), s(r.kind().as_str())),
            ("src".to_owned(), s(r.source().as_str())),
        ]);
        if !r.tags().is_empty() {
            item.insert("tags".to_owned(), tags_attr(r.tags()));
        }
        item
    }

    async fn series(
        &self,
        only: Option<&MeterId>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", names::READINGS_PK)
                .expression_attribute_values(":pk", s(SERIES_PARTITION))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error(BACKEND, "Query of the series", e))?;
            out.extend(
                resp.items()
                    .iter()
                    .filter(|i| {
                        only.is_none_or(|m| {
                            i.get("meter").and_then(|v| v.as_s().ok()) == Some(&m.to_string())
                        })
                    })
                    .cloned(),
            );
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| {
            get_s(a, "name")
                .unwrap_or("")
                .cmp(get_s(b, "name").unwrap_or(""))
        });
        Ok(out)
    }

    fn reading(
        series: &HashMap<String, AttributeValue>,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Reading, StoreError> {
        let ts = get_n(item, names::READINGS_SK)? as i64;
        Reading::new(
            MeterId::new(get_s(series, "meter")?).map_err(corrupt)?,
            MeasureName::new(get_s(series, "measure")?).map_err(corrupt)?,
            get_n(item, "v")?,
            Unit::parse(get_s(series, "unit")?).map_err(corrupt)?,
            get_s(series, "kind")?.parse::<Kind>().map_err(corrupt)?,
            DateTime::from_timestamp_millis(ts).ok_or_else(|| corrupt("time out of range"))?,
            SourceName::new(get_s(item, "src").unwrap_or(get_s(series, "src")?))
                .map_err(corrupt)?,
        )
        .map(|r| r.with_tags(tags_of(series).unwrap_or_default()))
        .map_err(corrupt)
    }

    async fn query_series(
        &self,
        series: &HashMap<String, AttributeValue>,
        from_ms: i64,
        to_ms: i64,
        forward: bool,
        limit: i32,
    ) -> Result<(Vec<Reading>, bool), StoreError> {
        let resp = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :a AND :b")
            .expression_attribute_names("#pk", names::READINGS_PK)
            .expression_attribute_names("#sk", names::READINGS_SK)
            .expression_attribute_values(":pk", s(get_s(series, "name")?))
            .expression_attribute_values(":a", n(from_ms))
            .expression_attribute_values(":b", n(to_ms))
            .scan_index_forward(forward)
            .limit(limit)
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "Query of readings", e))?;
        let readings = resp
            .items()
            .iter()
            .map(|i| Self::reading(series, i))
            .collect::<Result<Vec<_>, _>>()?;
        let more = resp.last_evaluated_key().is_some_and(|k| !k.is_empty());
        Ok((readings, more))
    }
}

/// A numeric id for a series name (FNV-1a, 52 bits so it is exact as a DynamoDB number).
fn series_id(meter: &MeterId, measure: &MeasureName) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in series_key(meter, measure).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h & ((1 << 52) - 1)
}

#[async_trait]
impl ReadingWriter for DynamoReadings {
    fn max_batch(&self) -> usize {
        // Each call may cover many BatchWriteItem requests; 1,000 keeps a call's retries bounded.
        1000
    }

    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let mut new_series: BTreeMap<String, HashMap<String, AttributeValue>> = BTreeMap::new();
        {
            let known = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in readings {
                let key = series_key(r.meter(), r.measure());
                if !known.contains(&key) {
                    new_series
                        .entry(key)
                        .or_insert_with(|| Self::series_item(r));
                }
            }
        }
        // Registering a series is an idempotent put, done before its readings land, so a
        // listing never misses a series that has readings; many new series (a first import)
        // go 25 to a request through the same resend loop as the readings.
        let (keys, items): (Vec<String>, Vec<_>) = new_series.into_iter().unzip();
        let registered = batch_put(&self.client, &self.table, items, self.budget).await?;
        let unregistered: HashMap<&str, &ItemFailure> = registered
            .failures
            .iter()
            .map(|f| (keys[f.index].as_str(), f))
            .collect();
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(
                keys.iter()
                    .filter(|k| !unregistered.contains_key(k.as_str()))
                    .cloned(),
            );
        // BatchWriteItem refuses a request holding one key twice; of two readings of one
        // instant in a call, the later is the one an upsert keeps, so the earlier is written
        // by it.
        let mut last_of: HashMap<(&MeterId, &MeasureName, i64), usize> = HashMap::new();
        for (i, r) in readings.iter().enumerate() {
            last_of.insert((r.meter(), r.measure(), r.time().timestamp_millis()), i);
        }
        // Readings of a series that could not be registered are reported, not written; the
        // others land.
        let mut refused = Vec::new();
        let mut kept = Vec::with_capacity(readings.len());
        let mut superseded = Vec::new();
        for (i, r) in readings.iter().enumerate() {
            let key = series_key(r.meter(), r.measure());
            match unregistered.get(key.as_str()) {
                Some(f) => refused.push(ItemFailure {
                    index: i,
                    reason: format!("series {key} could not be registered: {}", f.reason),
                    retryable: f.retryable,
                }),
                None => match last_of[&(r.meter(), r.measure(), r.time().timestamp_millis())] {
                    last if last != i => superseded.push((i, last)),
                    _ => kept.push(i),
                },
            }
        }
        let mut report = batch_put(
            &self.client,
            &self.table,
            kept.iter().map(|&i| Self::item(&readings[i])).collect(),
            self.budget,
        )
        .await?;
        for f in &mut report.failures {
            f.index = kept[f.index];
        }
        // A superseded reading shares the fate of the one written in its place.
        let failed: HashMap<usize, ItemFailure> = report
            .failures
            .iter()
            .map(|f| (f.index, f.clone()))
            .collect();
        for (i, last) in superseded {
            match failed.get(&last) {
                Some(f) => refused.push(ItemFailure {
                    index: i,
                    ..f.clone()
                }),
                None => report.written += 1,
            }
        }
        report.failures.extend(refused);
        report.failures.sort_by_key(|f| f.index);
        Ok(report)
    }
}

#[async_trait]
impl RangeReader for DynamoReadings {
    async fn range(&self, q: &RangeQuery) -> Result<Page, StoreError> {
        let after = q.after.as_ref().map(Cursor::reading_position).transpose()?;
        let limit = q.limit.clamp(1, 10_000);
        let mut out = Vec::new();
        let mut more = false;
        for series in self.series(Some(&q.meter)).await? {
            let measure = get_s(&series, "measure")?.to_owned();
            if q.measure.as_ref().is_some_and(|m| m.as_str() != measure) {
                continue;
            }
            let mut from = q.range.from().timestamp_millis();
            if let Some((m, t)) = &after {
                if measure.as_str() < m.as_str() {
                    continue;
                }
                if measure == m.as_str() {
                    from = from.max(t + 1);
                }
            }
            let to = q.range.to().timestamp_millis() - 1;
            if from > to {
                continue;
            }
            let want = (limit + 1 - out.len()) as i32;
            let (rs, series_more) = self.query_series(&series, from, to, true, want).await?;
            out.extend(rs);
            if out.len() > limit || (series_more && out.len() >= limit) {
                more = series_more;
                break;
            }
        }
        Ok(Page::of(out, limit, more))
    }
}

#[async_trait]
impl ReadingReader for DynamoReadings {
    async fn latest(&self, meter: Option<&MeterId>) -> Result<Vec<Reading>, StoreError> {
        let mut out = Vec::new();
        for series in self.series(meter).await? {
            let (rs, _) = self
                .query_series(&series, 0, i64::MAX / 2, false, 1)
                .await?;
            out.extend(rs);
        }
        Ok(out)
    }

    async fn before(
        &self,
        (meter, measure): (&MeterId, &MeasureName),
        t: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let wanted = series_key(meter, measure);
        for series in self.series(Some(meter)).await? {
            if get_s(&series, "name")? == wanted {
                let limit = i32::try_from(n).unwrap_or(i32::MAX);
                let to = t.timestamp_millis() - 1;
                let (mut rs, _) = self.query_series(&series, 0, to, false, limit).await?;
                rs.reverse();
                return Ok(rs);
            }
        }
        Ok(Vec::new())
    }

    async fn meters(&self) -> Result<Vec<MeterInfo>, StoreError> {
        let mut out: Vec<MeterInfo> = Vec::new();
        for series in self.series(None).await? {
            let (first, _) = self.query_series(&series, 0, i64::MAX / 2, true, 1).await?;
            let (last, _) = self
                .query_series(&series, 0, i64::MAX / 2, false, 1)
                .await?;
            let (Some(first), Some(last)) = (first.into_iter().next(), last.into_iter().next())
            else {
                continue;
            };
            let info = SeriesInfo {
                measure: first.measure().clone(),
                unit: first.unit().clone(),
                kind: first.kind(),
                // Counting a DynamoDB partition means reading it: not known.
                count: None,
                first: first.time(),
                last: last.time(),
            };
            match out.last_mut() {
                Some(m) if &m.meter == first.meter() => m.series.push(info),
                _ => out.push(MeterInfo {
                    meter: first.meter().clone(),
                    series: vec![info],
                }),
            }
        }
        Ok(out)
    }
}

/// Seed 003's forecast store: future points with a TTL.
#[derive(Debug, Clone)]
pub struct DynamoForecasts {
    client: Client,
    table: String,
    ttl: Duration,
    budget: Duration,
}

impl DynamoForecasts {
    /// A store over `table` (the template's forecasts table); points expire a week after they
    /// are written, as seed 003's did.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            ttl: FORECAST_TTL,
            budget: Duration::from_secs(20),
        }
    }

    fn item(&self, r: &Reading, now: DateTime<Utc>) -> HashMap<String, AttributeValue> {
        let v = r.value();
        let value = if v.fract() == 0.0 && v.abs() < 9.0e15 {
            format!("{}", v as i64)
        } else {
            v.to_string()
        };
        let mut item = HashMap::from([
            (names::FORECASTS_PK.to_owned(), s(r.meter().as_str())),
            (names::FORECASTS_SK.to_owned(), n(r.time().timestamp())),
            ("value".to_owned(), s(value)),
            ("metadata".to_owned(), s("Future")),
            ("measure".to_owned(), s(r.measure().as_str())),
            ("unit".to_owned(), s(r.unit().symbol())),
            ("kind".to_owned(), s(r.kind().as_str())),
            ("src".to_owned(), s(r.source().as_str())),
            (
                names::FORECASTS_TTL.to_owned(),
                n(now.timestamp() + self.ttl.as_secs() as i64),
            ),
        ]);
        if !r.tags().is_empty() {
            item.insert("tags".to_owned(), tags_attr(r.tags()));
        }
        item
    }

    fn reading(item: &HashMap<String, AttributeValue>) -> Result<Reading, StoreError> {
        Reading::new(
            MeterId::new(get_s(item, names::FORECASTS_PK)?).map_err(corrupt)?,
            MeasureName::new(get_s(item, "measure").unwrap_or("value")).map_err(corrupt)?,
            get_s(item, "value")?.parse::<f64>().map_err(corrupt)?,
            Unit::parse(get_s(item, "unit").unwrap_or("1")).map_err(corrupt)?,
            get_s(item, "kind")
                .unwrap_or("gauge")
                .parse::<Kind>()
                .map_err(corrupt)?,
            DateTime::from_timestamp(get_n(item, names::FORECASTS_SK)? as i64, 0)
                .ok_or_else(|| corrupt("time out of range"))?,
            SourceName::new(get_s(item, "src").unwrap_or("http-json")).map_err(corrupt)?,
        )
        .map(|r| r.with_tags(tags_of(item).unwrap_or_default()))
        .map_err(corrupt)
    }
}

#[async_trait]
impl ReadingWriter for DynamoForecasts {
    fn max_batch(&self) -> usize {
        1000
    }

    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let now = Utc::now();
        batch_put(
            &self.client,
            &self.table,
            readings.iter().map(|r| self.item(r, now)).collect(),
            self.budget,
        )
        .await
    }
}

#[async_trait]
impl RangeReader for DynamoForecasts {
    async fn range(&self, q: &RangeQuery) -> Result<Page, StoreError> {
        let mut start = q
            .after
            .as_ref()
            .map(|c| {
                c.0.parse::<i64>()
                    .map(|t| {
                        HashMap::from([
                            (names::FORECASTS_PK.to_owned(), s(q.meter.as_str())),
                            (names::FORECASTS_SK.to_owned(), n(t)),
                        ])
                    })
                    .map_err(|_| {
                        StoreError::InvalidQuery("the cursor was not made by this store".into())
                    })
            })
            .transpose()?;
        let from =
            q.range.from().timestamp() + i64::from(q.range.from().timestamp_subsec_nanos() > 0);
        let to = q.range.to().timestamp() - i64::from(q.range.to().timestamp_subsec_nanos() == 0);
        let limit = q.limit.clamp(1, 10_000);
        let mut out = Vec::new();
        let mut next = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :a AND :b")
                .expression_attribute_names("#pk", names::FORECASTS_PK)
                .expression_attribute_names("#sk", names::FORECASTS_SK)
                .expression_attribute_values(":pk", s(q.meter.as_str()))
                .expression_attribute_values(":a", n(from))
                .expression_attribute_values(":b", n(to))
                .limit((limit - out.len()) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(BACKEND, "Query of forecasts", e))?;
            for item in resp.items() {
                let r = Self::reading(item)?;
                if q.measure.as_ref().is_none_or(|m| m == r.measure()) {
                    out.push(r);
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() && out.len() < limit => start = Some(k.clone()),
                Some(k) if !k.is_empty() => {
                    next = out.last().map(|r| Cursor(r.time().timestamp().to_string()));
                    break;
                }
                _ => break,
            }
        }
        Ok(Page {
            readings: out,
            next,
        })
    }
}

/// The meter registry on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoRegistry {
    client: Client,
    table: String,
}

impl DynamoRegistry {
    /// A registry over `table` (the template's registry table).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn entry(item: &HashMap<String, AttributeValue>) -> Result<RegistryEntry, StoreError> {
        let params = item
            .get("params")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RegistryEntry {
            id: MeterId::new(get_s(item, names::REGISTRY_PK)?).map_err(corrupt)?,
            source: SourceName::new(get_s(item, "source")?).map_err(corrupt)?,
            params,
            zone: item.get("zone").and_then(|v| v.as_s().ok()).cloned(),
            enabled: item
                .get("enabled")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(true),
        })
    }
}

impl DynamoRegistry {
    fn item(e: &RegistryEntry) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (names::REGISTRY_PK.to_owned(), s(e.id.as_str())),
            ("source".to_owned(), s(e.source.as_str())),
            ("enabled".to_owned(), AttributeValue::Bool(e.enabled)),
            (
                "params".to_owned(),
                AttributeValue::M(e.params.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
            ),
        ]);
        if let Some(z) = &e.zone {
            item.insert("zone".to_owned(), s(z));
        }
        item
    }

    /// Adds or replaces many entries, 25 to a BatchWriteItem (a bulk registration).
    pub async fn put_many(&self, entries: &[RegistryEntry]) -> Result<WriteReport, StoreError> {
        let items = entries.iter().map(Self::item).collect();
        batch_put(&self.client, &self.table, items, Duration::from_secs(20)).await
    }
}

#[async_trait]
impl MeterRegistry for DynamoRegistry {
    async fn put(&self, e: &RegistryEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(e)))
            .send()
            .await
            .map_err(|err| store_error(BACKEND, "PutItem of a registry entry", err))?;
        Ok(())
    }

    async fn entry(&self, id: &MeterId) -> Result<Option<RegistryEntry>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(names::REGISTRY_PK, s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "GetItem of a registry entry", e))?;
        out.item().map(Self::entry).transpose()
    }

    async fn remove(&self, id: &MeterId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(names::REGISTRY_PK, s(id.as_str()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "DeleteItem of a registry entry", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn list(&self, after: Option<&Cursor>, limit: usize) -> Result<RegistryPage, StoreError> {
        let start = after.map(|c| HashMap::from([(names::REGISTRY_PK.to_owned(), s(&c.0))]));
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "Scan of the registry", e))?;
        let entries = out
            .items()
            .iter()
            .map(Self::entry)
            .collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get(names::REGISTRY_PK))
            .and_then(|v| v.as_s().ok())
            .map(|id| Cursor(id.clone()));
        Ok(RegistryPage { entries, next })
    }
}

/// Seed 002's hourly counters on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoCounters {
    client: Client,
    table: String,
}

impl DynamoCounters {
    /// Counters in `table` (the template's counters table).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(key: &CounterKey) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (names::COUNTERS_PK.to_owned(), s(&key.name)),
            (names::COUNTERS_SK.to_owned(), s(key.event_hour())),
        ])
    }
}

#[async_trait]
impl Counters for DynamoCounters {
    async fn add(
        &self,
        key: &CounterKey,
        delta: u64,
        dedupe: Option<&str>,
    ) -> Result<AddOutcome, StoreError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .update_expression("ADD #c :d")
            .expression_attribute_names("#c", EVENT_COUNT)
            .expression_attribute_values(":d", n(delta))
            .build()
            .map_err(|e| corrupt(e.to_string()))?;
        let Some(d) = dedupe else {
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(key)))
                .update_expression("ADD #c :d")
                .expression_attribute_names("#c", EVENT_COUNT)
                .expression_attribute_values(":d", n(delta))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(|e| store_error(BACKEND, "UpdateItem of a counter", e))?;
            let total = out
                .attributes()
                .map(|a| get_n(a, EVENT_COUNT))
                .transpose()?
                .unwrap_or(0.0);
            return Ok(AddOutcome::Added(total as u64));
        };
        // The dedupe item and the count change together or not at all: a replay finds the item
        // (unexpired) and the whole transaction is cancelled.
        let now = Utc::now().timestamp();
        let marker = Put::builder()
            .table_name(&self.table)
            .item(names::COUNTERS_PK, s(format!("{DEDUPE_PREFIX}{d}")))
            .item(names::COUNTERS_SK, s("-"))
            .item(names::COUNTERS_TTL, n(now + DEDUPE_WINDOW_SECS))
            .condition_expression("attribute_not_exists(#pk) OR #ttl < :now")
            .expression_attribute_names("#pk", names::COUNTERS_PK)
            .expression_attribute_names("#ttl", names::COUNTERS_TTL)
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(|e| corrupt(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(AddOutcome::Added(self.total(key).await?)),
            Err(e) => {
                let cancelled_by_condition = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                        _ => None,
                    })
                    .is_some_and(|c| c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed")));
                if cancelled_by_condition {
                    Ok(AddOutcome::Duplicate)
                } else {
                    Err(store_error(BACKEND, "TransactWriteItems of a counter", e))
                }
            }
        }
    }

    async fn total(&self, key: &CounterKey) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "GetItem of a counter", e))?;
        Ok(out
            .item()
            .map(|i| get_n(i, EVENT_COUNT))
            .transpose()?
            .unwrap_or(0.0) as u64)
    }
}

/// The tables of a stack, each with the key schema, stream and TTL the template declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// The meter registry.
    Registry,
    /// The reading history.
    Readings,
    /// Seed 003's future points.
    Forecasts,
    /// Seed 002's hourly counters, with the stream the metrics function reads.
    Counters,
}

impl TableKind {
    /// Every table, in the order [`create_tables`] returns them.
    pub const ALL: [TableKind; 4] = [
        TableKind::Registry,
        TableKind::Readings,
        TableKind::Forecasts,
        TableKind::Counters,
    ];

    /// The table's keys, TTL and stream, as the template declares them.
    pub fn schema(self) -> names::TableSchema {
        match self {
            TableKind::Registry => names::REGISTRY_TABLE,
            TableKind::Readings => names::READINGS_TABLE,
            TableKind::Forecasts => names::FORECASTS_TABLE,
            TableKind::Counters => names::COUNTERS_TABLE,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            TableKind::Registry => "registry",
            TableKind::Readings => "readings",
            TableKind::Forecasts => "forecasts",
            TableKind::Counters => "counters",
        }
    }
}

/// Creates one table with the definitions the template uses (key schema, on-demand billing,
/// the counters' stream, the TTL attribute) unless it exists; returns whether it was created.
pub async fn create_table(
    client: &Client,
    kind: TableKind,
    name: &str,
) -> Result<bool, StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification, StreamViewType, TimeToLiveSpecification,
    };
    let schema = kind.schema();
    let attr_type = |t: names::KeyType| match t {
        names::KeyType::String => ScalarAttributeType::S,
        names::KeyType::Number => ScalarAttributeType::N,
    };
    match client.describe_table().table_name(name).send().await {
        Ok(_) => return Ok(false),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => return Err(store_error(BACKEND, &format!("DescribeTable {name}"), e)),
    }
    let build = |e: aws_sdk_dynamodb::error::BuildError| corrupt(e.to_string());
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    let keys = std::iter::once((schema.partition, KeyType::Hash))
        .chain(schema.sort.map(|sort| (sort, KeyType::Range)));
    for ((attr, ty), key) in keys {
        req = req
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(attr_type(ty))
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(key)
                    .build()
                    .map_err(build)?,
            );
    }
    if schema.stream {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(build)?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        // Created meanwhile by someone else: as good.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(store_error(BACKEND, &format!("CreateTable {name}"), e)),
    }
    if let Some(attr) = schema.ttl {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attr)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| store_error(BACKEND, &format!("UpdateTimeToLive {name}"), e))?;
    }
    Ok(true)
}

/// Creates the four tables of a stack, named `<prefix><kind>` (for the emulator tests and the
/// end-to-end run). Tables that exist are left alone.
pub async fn create_tables(client: &Client, prefix: &str) -> Result<[String; 4], StoreError> {
    let mut out: [String; 4] = Default::default();
    for (slot, kind) in out.iter_mut().zip(TableKind::ALL) {
        *slot = format!("{prefix}{}", kind.suffix());
        create_table(client, kind, slot).await?;
    }
    Ok(out)
}
