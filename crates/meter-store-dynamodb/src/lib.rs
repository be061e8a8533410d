//! DynamoDB adapters of the meterflow ports, with the key layouts the template declares
//! (`meter_core::contract::cloud`):
//!
//! - [`DynamoReadings`]: the history store for accounts without Timestream. One table, keyed by
//!   `series` (string) and `ts` (number), holds five item types; each key serves one access
//!   pattern, and none is read whole by a request about one meter:
//!
//!   | partition (`series`) | sort (`ts`) | item | serves |
//!   |---|---|---|---|
//!   | `<meter>#<measure>` | epoch ms | a reading: `v`, `src` | a series' readings over a range (one Query); a repeated put is idempotent |
//!   | `<meter>@series` | the series' numeric id | the catalogue: `name`, `meter`, `measure`, `unit`, `kind`, `src`, `tags`, `zone`, `register` | a meter's series (one Query of its own partition) |
//!   | `@meters#00` .. `@meters#15` | the meter's numeric id | `meter` | the list of every meter, paged partition by partition; registrations spread over 16 partitions |
//!   | `<meter>#<measure>@hour` | UTC hour start, ms | an hourly aggregate: `c`, `s`, `mn`, `mx`, `ft`/`fv`, `lt`/`lv`, verdict counts `g`, `j`, `sp`, `rs`, `w`, `p` (provisional), `lvl` (counter level), `ver` | hourly rollups in any whole-hour zone, and the counter rules' state for a recompute |
//!   | `<meter>#<measure>@day` | local day start in the series' zone, ms | the same fields, for the day | daily rollups in the series' zone: a year is 366 items |
//!
//!   No reading key can equal another type's key: a measure name has no `@` and a reading key
//!   splits at its last `#` into a meter and a measure ([`is_readings_partition`]). The writer
//!   recomputes the hours a write touched from their readings (a counter from the level stored
//!   with the hour before, until an hour comes out as stored) and the days from their hours,
//!   and stores each with a condition on the version it read: a lost race or a request sent
//!   twice recomputes instead of counting twice. Tables written before this
//!   layout (one `#series` partition for every series) move with `meter store rebuild-rollups
//!   --store dynamodb:TABLE`, which also builds their aggregates.
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
    pick_series, AddOutcome, CounterKey, Counters, Cursor, ItemFailure, MeterInfo, MeterRegistry,
    Page, RangeQuery, RangeReader, ReadingReader, ReadingWriter, RegistryEntry, RegistryPage,
    RollupQuery, SeriesInfo, StoreError, WriteReport, DEDUPE_WINDOW_SECS,
};
use meter_core::rollup::RollupBuilder;
use meter_core::Rollup;
use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Tags, Unit};

mod keys;
mod rollups;
use chrono_tz::Tz;
pub use rollups::ReadCost;
use rollups::{Order, Settings, Table};

const BACKEND: &str = "DynamoDB";
/// Whether a partition key of the readings table holds readings (and not the catalogue, the
/// meter list or aggregates): for tools that scan the table.
pub fn is_readings_partition(pk: &str) -> bool {
    pk.rsplit_once('#')
        .is_some_and(|(meter, measure)| !meter.is_empty() && MeasureName::new(measure).is_ok())
}
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
    keys::readings(meter.as_str(), measure.as_str())
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

/// Per series written in a bulk write: its settings and the first and last time written.
type Spans = BTreeMap<String, (Settings, i64, i64)>;

/// The reading history store on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoReadings {
    client: Client,
    table: String,
    budget: Duration,
    /// Series this process has registered, so each costs one PutItem per process, not per batch.
    /// Their settings are what this process keeps their rollups with.
    known: std::sync::Arc<std::sync::Mutex<HashMap<String, Settings>>>,
    /// The zone series keep their days in when the registry names none.
    zone: Tz,
    /// The registry, for each meter's zone and register size.
    registry: Option<DynamoRegistry>,
    /// In a bulk write, the span of each series written since the last flush: its rollups
    /// are recomputed once, at [`ReadingWriter::flush`].
    deferred: Option<std::sync::Arc<std::sync::Mutex<Spans>>>,
    /// What the store has read, for the cost benchmark.
    cost: std::sync::Arc<ReadCost>,
}

impl DynamoReadings {
    /// A store over `table` (the template's readings table).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            budget: Duration::from_secs(20),
            known: Default::default(),
            zone: Tz::UTC,
            registry: None,
            deferred: None,
            cost: Default::default(),
        }
    }

    /// The zone whose days are stored for meters the registry gives none (UTC unless set).
    pub fn with_zone(mut self, zone: Tz) -> Self {
        self.zone = zone;
        self
    }

    /// A writer for a bulk write (a backfill in time order touches every series in every
    /// call): stored rollups are recomputed once per series at [`ReadingWriter::flush`]
    /// instead of after every call.
    pub fn deferring_rollups(mut self) -> Self {
        self.deferred = Some(Default::default());
        self
    }

    /// Reads each new series' zone and register size from the registry (one GetItem per meter
    /// and process).
    pub fn with_registry(mut self, registry: DynamoRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The zone and register size a meter's rollups are kept with: its registry entry's, else
    /// the store's zone.
    async fn wanted(&self, meter: &MeterId) -> Result<(Tz, Option<f64>), StoreError> {
        let entry = match &self.registry {
            Some(r) => r.entry(meter).await?,
            None => None,
        };
        let zone = entry
            .as_ref()
            .and_then(|e| e.zone.as_deref())
            .and_then(|z| z.parse::<Tz>().ok())
            .unwrap_or(self.zone);
        Ok((zone, entry.and_then(|e| e.register_size())))
    }

    /// What the store has read so far: items, and read units where DynamoDB reports them.
    pub fn read_cost(&self) -> &ReadCost {
        &self.cost
    }

    fn table(&self) -> Table<'_> {
        Table {
            client: &self.client,
            name: &self.table,
            cost: &self.cost,
        }
    }

    /// What a catalogue item says the series' rollups are kept with.
    fn settings(series: &HashMap<String, AttributeValue>) -> Result<Settings, StoreError> {
        Ok(Settings {
            series: get_s(series, "name")?.to_owned(),
            kind: get_s(series, "kind")?.parse().map_err(corrupt)?,
            register: series
                .contains_key("register")
                .then(|| get_n(series, "register"))
                .transpose()?,
            zone: match series.get("zone").and_then(|z| z.as_s().ok()) {
                Some(z) => z
                    .parse()
                    .map_err(|_| corrupt(format!("unknown zone {z}")))?,
                None => Tz::UTC,
            },
        })
    }

    /// Recomputes the stored rollups of `meter`'s series (every meter's when `None`) from
    /// their readings, moving a catalogue written before the per-meter layout first; answers
    /// how many series were rebuilt.
    pub async fn rebuild_rollups(&self, meter: Option<&MeterId>) -> Result<usize, StoreError> {
        let legacy = self
            .table()
            .query(
                keys::LEGACY_SERIES,
                (i64::MIN, i64::MAX),
                Order::Up,
                None,
                true,
            )
            .await?;
        let mut moved = Vec::new();
        for item in &legacy {
            if meter.is_some_and(|m| {
                Some(m.as_str())
                    != item
                        .get("meter")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
            }) {
                continue;
            }
            let mut entry = item.clone();
            entry.insert(
                names::READINGS_PK.to_owned(),
                s(keys::catalogue(get_s(item, "meter")?)),
            );
            entry
                .entry("zone".to_owned())
                .or_insert_with(|| s(self.zone.name()));
            moved.push(Self::meter_item(get_s(item, "meter")?));
            moved.push(entry);
        }
        let report = batch_put(&self.client, &self.table, moved, self.budget).await?;
        if let Some(f) = report.failures.first() {
            return Err(StoreError::Unavailable {
                backend: BACKEND,
                message: format!("the catalogue could not be moved: {}", f.reason),
                source: None,
            });
        }
        let mut rebuilt = 0;
        for mut series in self.series(meter).await? {
            // The registry's zone and register size, as they are now.
            let (zone, register) = self
                .wanted(&MeterId::new(get_s(&series, "meter")?).map_err(corrupt)?)
                .await?;
            series.insert("zone".to_owned(), s(zone.name()));
            match register {
                Some(size) => series.insert("register".to_owned(), n(size)),
                None => series.remove("register"),
            };
            let settings = Self::settings(&series)?;
            batch_put(&self.client, &self.table, vec![series], self.budget)
                .await?
                .failures
                .first()
                .map_or(Ok(()), |f| {
                    Err(StoreError::Unavailable {
                        backend: BACKEND,
                        message: format!("the catalogue could not be updated: {}", f.reason),
                        source: None,
                    })
                })?;
            rollups::rebuild(self.table(), &settings).await?;
            self.known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(settings.series.clone(), settings);
            rebuilt += 1;
        }
        Ok(rebuilt)
    }

    fn meter_item(meter: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                names::READINGS_PK.to_owned(),
                s(keys::meter_list(keys::shard_of(meter))),
            ),
            (names::READINGS_SK.to_owned(), n(keys::id(meter))),
            ("meter".to_owned(), s(meter)),
        ])
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

    fn series_item(r: &Reading, settings: &Settings) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (
                names::READINGS_PK.to_owned(),
                s(keys::catalogue(r.meter().as_str())),
            ),
            // The sort key is numeric like every item's: series are named in `name` and keyed
            // by a numeric id of it.
            (
                names::READINGS_SK.to_owned(),
                n(keys::id(&series_key(r.meter(), r.measure()))),
            ),
            ("zone".to_owned(), s(settings.zone.name())),
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
        if let Some(size) = settings.register {
            item.insert("register".to_owned(), n(size));
        }
        item
    }

    /// The catalogue items of one meter's series (one Query of its partition), or of every
    /// meter's (the meter list, page by page, then each meter's catalogue), ordered by name.
    async fn series(
        &self,
        only: Option<&MeterId>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let meters: Vec<String> = match only {
            Some(m) => vec![m.to_string()],
            None => {
                let mut all = Vec::new();
                for shard in 0..keys::METER_SHARDS {
                    for item in self
                        .table()
                        .query(
                            &keys::meter_list(shard),
                            (i64::MIN, i64::MAX),
                            Order::Up,
                            None,
                            false,
                        )
                        .await?
                    {
                        all.push(get_s(&item, "meter")?.to_owned());
                    }
                }
                all
            }
        };
        let mut out = Vec::new();
        for meter in meters {
            out.extend(
                self.table()
                    .query(
                        &keys::catalogue(&meter),
                        (i64::MIN, i64::MAX),
                        Order::Up,
                        None,
                        false,
                    )
                    .await?,
            );
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
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "Query of readings", e))?;
        self.cost.add(
            resp.items(),
            false,
            resp.consumed_capacity().and_then(|c| c.capacity_units()),
        );
        let readings = resp
            .items()
            .iter()
            .map(|i| Self::reading(series, i))
            .collect::<Result<Vec<_>, _>>()?;
        let more = resp.last_evaluated_key().is_some_and(|k| !k.is_empty());
        Ok((readings, more))
    }
}

#[async_trait]
impl ReadingWriter for DynamoReadings {
    fn max_batch(&self) -> usize {
        // Each call may cover many BatchWriteItem requests; 1,000 keeps a call's retries bounded.
        1000
    }

    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let mut fresh: BTreeMap<String, &Reading> = BTreeMap::new();
        {
            let known = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in readings {
                let key = series_key(r.meter(), r.measure());
                if !known.contains_key(&key) {
                    fresh.entry(key).or_insert(r);
                }
            }
        }
        let mut wanted: HashMap<&MeterId, (Tz, Option<f64>)> = HashMap::new();
        let mut new_series: BTreeMap<String, HashMap<String, AttributeValue>> = BTreeMap::new();
        let mut new_settings: HashMap<String, Settings> = HashMap::new();
        for (key, r) in fresh {
            let (zone, register) = match wanted.get(r.meter()) {
                Some(w) => *w,
                None => {
                    let w = self.wanted(r.meter()).await?;
                    wanted.insert(r.meter(), w);
                    w
                }
            };
            let settings = Settings {
                series: key.clone(),
                kind: r.kind(),
                register,
                zone,
            };
            new_series.insert(key.clone(), Self::series_item(r, &settings));
            new_settings.insert(key, settings);
        }
        // Registering a series is an idempotent put, done before its readings land, so a
        // listing never misses a series that has readings; many new series (a first import)
        // go 25 to a request through the same resend loop as the readings.
        // Each new series' meter joins the meter list (an idempotent put too).
        let mut meters: BTreeMap<String, HashMap<String, AttributeValue>> = BTreeMap::new();
        for item in new_series.values() {
            let meter = get_s(item, "meter")?;
            meters
                .entry(meter.to_owned())
                .or_insert_with(|| Self::meter_item(meter));
        }
        let owners: Vec<String> = new_series
            .values()
            .map(|item| get_s(item, "meter").map(str::to_owned))
            .collect::<Result<_, _>>()?;
        let (keys, mut items): (Vec<String>, Vec<_>) = new_series.into_iter().unzip();
        let listed = items.len();
        let (meter_names, meter_items): (Vec<String>, Vec<_>) = meters.into_iter().unzip();
        items.extend(meter_items);
        let mut registered = batch_put(&self.client, &self.table, items, self.budget).await?;
        // A meter left off the list fails its series with it, so a retry lists it.
        let unlisted: Vec<ItemFailure> = registered
            .failures
            .iter()
            .filter(|f| f.index >= listed)
            .cloned()
            .collect();
        registered.failures.retain(|f| f.index < listed);
        for f in unlisted {
            let meter = &meter_names[f.index - listed];
            for (i, owner) in owners.iter().enumerate() {
                if owner == meter && registered.failures.iter().all(|g| g.index != i) {
                    registered.failures.push(ItemFailure {
                        index: i,
                        reason: format!("meter {meter} could not be listed: {}", f.reason),
                        retryable: f.retryable,
                    });
                }
            }
        }
        let unregistered: HashMap<&str, &ItemFailure> = registered
            .failures
            .iter()
            .map(|f| (keys[f.index].as_str(), f))
            .collect();
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(
                new_settings
                    .into_iter()
                    .filter(|(k, _)| !unregistered.contains_key(k.as_str())),
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
        self.maintain(readings, &mut report).await;
        report.failures.sort_by_key(|f| f.index);
        Ok(report)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        let Some(deferred) = &self.deferred else {
            return Ok(());
        };
        let spans = std::mem::take(
            &mut *deferred
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let total = spans.len();
        let failed: Vec<(String, StoreError)> = futures_util::stream::iter(spans.into_values())
            .map(|(settings, first, last)| async move {
                let done = rollups::maintain_span(self.table(), &settings, (first, last)).await;
                (settings.series, done)
            })
            .buffer_unordered(8)
            .filter_map(|(series, done)| async move { done.err().map(|e| (series, e)) })
            .collect()
            .await;
        match failed.first() {
            None => Ok(()),
            Some((series, e)) => Err(StoreError::Unavailable {
                backend: BACKEND,
                message: format!(
                    "the readings are stored, but the rollups of {} of {total} series could \
                     not be updated (first: {series}: {e}); writing the same readings again \
                     updates them",
                    failed.len()
                ),
                source: None,
            }),
        }
    }
}

impl DynamoReadings {
    /// Recomputes the stored rollups of every series the write reached from what landed; a
    /// series whose rollups could not be brought up to date fails its readings (stored, and
    /// safe to write again), so the caller retries or reports them.
    async fn maintain(&self, readings: &[Reading], report: &mut WriteReport) {
        use futures_util::StreamExt;
        let failed: std::collections::HashSet<usize> =
            report.failures.iter().map(|f| f.index).collect();
        // Per series: its settings, the (time, value) written, and the readings' indices.
        type Touched = (Settings, Vec<(i64, f64)>, Vec<usize>);
        let mut touched: BTreeMap<String, Touched> = BTreeMap::new();
        {
            let known = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (i, r) in readings.iter().enumerate() {
                if failed.contains(&i) {
                    continue;
                }
                let key = series_key(r.meter(), r.measure());
                let Some(settings) = known.get(&key) else {
                    continue; // not registered: its readings failed already
                };
                let entry = touched
                    .entry(key)
                    .or_insert_with(|| (settings.clone(), Vec::new(), Vec::new()));
                entry.1.push((r.time().timestamp_millis(), r.value()));
                entry.2.push(i);
            }
        }
        if let Some(deferred) = &self.deferred {
            let mut spans = deferred
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (key, (settings, rows, _)) in touched {
                let (lo, hi) = rows.iter().fold((i64::MAX, i64::MIN), |(lo, hi), (ts, _)| {
                    (lo.min(*ts), hi.max(*ts))
                });
                let span = spans.entry(key).or_insert((settings, lo, hi));
                span.1 = span.1.min(lo);
                span.2 = span.2.max(hi);
            }
            return;
        }
        let results: Vec<_> = futures_util::stream::iter(touched.into_values())
            .map(|(settings, mut rows, indices)| async move {
                // The later of two readings of one instant is the one stored.
                rows.reverse();
                rows.sort_by_key(|(ts, _)| *ts);
                rows.dedup_by_key(|(ts, _)| *ts);
                let done = rollups::maintain(self.table(), &settings, &rows).await;
                (done, indices)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for (done, indices) in results {
            if let Err(e) = done {
                let retryable = e.is_retryable();
                report.written -= indices.len();
                report
                    .failures
                    .extend(indices.into_iter().map(|index| ItemFailure {
                        index,
                        reason: format!("stored, but its rollups could not be updated: {e}"),
                        retryable,
                    }));
            }
        }
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
        self.infos(None).await
    }

    async fn meter(&self, meter: &MeterId) -> Result<Option<MeterInfo>, StoreError> {
        Ok(self.infos(Some(meter)).await?.into_iter().next())
    }

    /// Answered from the stored daily and hourly rollups where they fit the request, and from
    /// readings for partial edges (see [`meter_core::aggregate::plan`]).
    async fn rollup(&self, q: &RollupQuery) -> Result<Rollup, StoreError> {
        // The catalogue says all a rollup needs: one Query of the meter's partition.
        let catalogue = self.series(Some(&q.meter)).await?;
        if catalogue.is_empty() {
            return Err(StoreError::InvalidQuery(format!(
                "no readings are stored for meter {}",
                q.meter
            )));
        }
        let item = pick_series(
            &q.meter,
            &catalogue,
            |i| get_s(i, "measure").unwrap_or(""),
            q.measure.as_ref(),
        )?;
        let measure = MeasureName::new(get_s(item, "measure")?).map_err(corrupt)?;
        let unit = Unit::parse(get_s(item, "unit")?).map_err(corrupt)?;
        let mut settings = Self::settings(item)?;
        // Asked with another register size than the rollups were kept with: the stored
        // levels still place the edges, the rules use the size asked for.
        settings.register = q.register;
        let kind = settings.kind;
        let mut builder = RollupBuilder::for_query(q, kind)?;
        rollups::fill(self.table(), &settings, q, &mut builder).await?;
        q.answer((measure, unit, kind), builder)
    }
}

impl DynamoReadings {
    /// The meters (all, or one) with their series: the catalogue, and each series' first and
    /// last reading.
    async fn infos(&self, only: Option<&MeterId>) -> Result<Vec<MeterInfo>, StoreError> {
        let mut out: Vec<MeterInfo> = Vec::new();
        for series in self.series(only).await? {
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
