//! Stored rollups on DynamoDB: an item per series and UTC hour and per series and local day,
//! kept by the writer after each write, and the rollup query that reads them.
//!
//! Every aggregate is recomputed from the readings it covers (never incremented), and written
//! with a version condition (a conditional PutItem): a write that lost a race with another writer, or whose request was
//! cut after DynamoDB did the work and was sent again, finds the version moved and recomputes.
//! A recompute reads the readings after its own landed, so whichever recompute is stored last
//! saw every reading written before it. Counters resume the counter rules from the level stored
//! with the hour before the write (see [`meter_core::aggregate::CounterHours`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::DateTime;
use chrono_tz::Tz;
use meter_aws::store_error;
use meter_core::aggregate::{
    day_of, hour_of, hours_of_values, merge_all, plan, Aggregate, CounterHours, Piece, HOUR_MS,
};
use meter_core::counter::{Verdict, WINDOW};
use meter_core::ports::{RollupQuery, StoreError};
use meter_core::rollup::RollupBuilder;
use meter_core::{Kind, TimeRange};

use crate::keys;
use crate::{corrupt, get_n, n, s, BACKEND};
use meter_core::contract::cloud as names;

/// How often a write recomputes its aggregates (after losing a race, or after a request that
/// failed past the SDK's own retries) before it reports.
const ATTEMPTS: usize = 10;
/// Up to this many touched hours are read by key rather than by a Query of their span.
const FEW_HOURS: usize = 2;
/// Readings or aggregates a walk reads per request.
const PAGE: i32 = 1000;

/// What a series' rollups are kept with (from its catalogue item).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// The readings' partition key.
    pub(crate) series: String,
    pub(crate) kind: Kind,
    pub(crate) register: Option<f64>,
    pub(crate) zone: Tz,
}

impl Settings {
    fn hours(&self) -> String {
        keys::hours(&self.series)
    }
    fn days(&self) -> String {
        keys::days(&self.series)
    }
}

/// Counts of what the store read, for the cost benchmark.
#[derive(Debug, Default)]
pub struct ReadCost {
    /// Items returned by Query and GetItem.
    pub items: std::sync::atomic::AtomicU64,
    /// Read capacity units consumed, as the service reported them (0 where it does not; the
    /// emulator's figures do not follow item sizes).
    pub units: std::sync::Mutex<f64>,
    /// Read request units as DynamoDB bills them, from the sizes of the items returned: each
    /// request's bytes rounded up to 4 KB, half a unit each for an eventually consistent read.
    pub billed_units: std::sync::Mutex<f64>,
}

impl ReadCost {
    /// Counts one request's answer.
    pub(crate) fn add(
        &self,
        items: &[HashMap<String, AttributeValue>],
        consistent: bool,
        reported: Option<f64>,
    ) {
        self.items
            .fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(u) = reported {
            *self.units.lock().unwrap_or_else(|e| e.into_inner()) += u;
        }
        let bytes: usize = items.iter().map(item_size).sum();
        let blocks = bytes.div_ceil(4096).max(1) as f64;
        *self.billed_units.lock().unwrap_or_else(|e| e.into_inner()) +=
            if consistent { blocks } else { blocks / 2.0 };
    }
}

/// An item's size as DynamoDB counts it: each attribute's name plus its value (strings and
/// binaries their length, numbers about one byte per two significant digits plus one).
pub(crate) fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    let number = |n: &str| {
        let digits = n
            .trim_start_matches('-')
            .trim_start_matches('0')
            .replace('.', "");
        digits.trim_end_matches('0').len().div_ceil(2) + 1
    };
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number(n)).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// The store's client and table, with its read counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table<'a> {
    pub(crate) client: &'a Client,
    pub(crate) name: &'a str,
    pub(crate) cost: &'a ReadCost,
}

/// Which way a query reads its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Up,
    Down,
}

impl Table<'_> {
    /// Items of partition `pk` with sort keys in `[from, to)`, in `order`, at most `limit`
    /// (all when `None`); strongly consistent when a writer needs its own writes.
    pub(crate) async fn query(
        &self,
        pk: &str,
        (from, to): (i64, i64),
        order: Order,
        limit: Option<usize>,
        consistent: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        // A span's `to` is exclusive; BETWEEN is inclusive, and keys are whole milliseconds.
        let last = to.saturating_sub(1);
        if from > last {
            return Ok(out);
        }
        loop {
            let want = limit.map(|l| (l - out.len()).min(PAGE as usize) as i32);
            let resp = self
                .client
                .query()
                .table_name(self.name)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :a AND :b")
                .expression_attribute_names("#pk", names::READINGS_PK)
                .expression_attribute_names("#sk", names::READINGS_SK)
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":a", n(from))
                .expression_attribute_values(":b", n(last))
                .scan_index_forward(order == Order::Up)
                .consistent_read(consistent)
                .set_limit(want)
                .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error(BACKEND, "Query", e))?;
            self.cost.add(
                resp.items(),
                consistent,
                resp.consumed_capacity().and_then(|c| c.capacity_units()),
            );
            out.extend(resp.items().iter().cloned());
            let full = limit.is_some_and(|l| out.len() >= l);
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() && !full => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Readings `(ms, value)` of a series in `[from, to)`.
    pub(crate) async fn readings(
        &self,
        series: &str,
        span: (i64, i64),
        order: Order,
        limit: Option<usize>,
        consistent: bool,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        self.query(series, span, order, limit, consistent)
            .await?
            .iter()
            .map(|i| Ok((get_n(i, names::READINGS_SK)? as i64, get_n(i, "v")?)))
            .collect()
    }

    /// Aggregates `(start, aggregate, version)` of a partition in `[from, to)`.
    async fn aggregates(
        &self,
        pk: &str,
        span: (i64, i64),
        order: Order,
        limit: Option<usize>,
        consistent: bool,
    ) -> Result<Vec<(i64, Aggregate, u64)>, StoreError> {
        self.query(pk, span, order, limit, consistent)
            .await?
            .iter()
            .map(aggregate_of)
            .collect()
    }

    /// The aggregate `(aggregate, version)` stored at `(pk, start)`, if any: one GetItem, for
    /// a key known in advance (the same read units as a Query of it, and a lookup of one key
    /// where the emulator's Query walks its whole table).
    async fn aggregate(
        &self,
        pk: &str,
        start: i64,
    ) -> Result<Option<(Aggregate, u64)>, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(self.name)
            .key(names::READINGS_PK, s(pk))
            .key(names::READINGS_SK, n(start))
            .consistent_read(true)
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "GetItem of an aggregate", e))?;
        self.cost.add(
            resp.item().map(std::slice::from_ref).unwrap_or_default(),
            true,
            resp.consumed_capacity().and_then(|c| c.capacity_units()),
        );
        resp.item()
            .map(|i| aggregate_of(i).map(|(_, a, v)| (a, v)))
            .transpose()
    }

    async fn delete(&self, pk: &str, start: i64) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(self.name)
            .key(names::READINGS_PK, s(pk))
            .key(names::READINGS_SK, n(start))
            .send()
            .await
            .map_err(|e| store_error(BACKEND, "DeleteItem of an aggregate", e))?;
        Ok(())
    }

    /// Stores aggregates `(partition, start, aggregate, version it was read at)`, each only
    /// if its version has not moved since (`None`: not stored yet); answers false when another write moved one first (the caller recomputes them all). A
    /// request cut after DynamoDB applied it and sent again finds its version moved: the
    /// recompute then finds the aggregate as it would write it, so nothing counts twice.
    /// (Conditional puts rather than TransactWriteItems: a transaction costs twice the write
    /// units, and the emulator copies the whole table for each one.)
    async fn put_all(
        &self,
        items: &[(String, i64, Aggregate, Option<u64>)],
    ) -> Result<bool, StoreError> {
        for item in items {
            if !self.put_one(item).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn put_one(
        &self,
        (pk, start, agg, expected): &(String, i64, Aggregate, Option<u64>),
    ) -> Result<bool, StoreError> {
        let version = expected.map_or(1, |v| v + 1);
        let req = self
            .client
            .put_item()
            .table_name(self.name)
            .set_item(Some(item_of(pk, *start, agg, version)));
        let req = match expected {
            Some(v) => req
                .condition_expression("ver = :v")
                .expression_attribute_values(":v", n(*v)),
            None => req
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", names::READINGS_PK),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(BACKEND, "PutItem of an aggregate", e)),
        }
    }
}

const VERDICT_ATTRS: [(&str, Verdict); 5] = [
    ("g", Verdict::Glitch),
    ("j", Verdict::Jitter),
    ("sp", Verdict::Spike),
    ("rs", Verdict::Reset),
    ("w", Verdict::Wrap),
];

fn item_of(pk: &str, start: i64, a: &Aggregate, version: u64) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (names::READINGS_PK.to_owned(), s(pk)),
        (names::READINGS_SK.to_owned(), n(start)),
        ("c".to_owned(), n(a.count)),
        ("s".to_owned(), n(a.sum)),
        ("mn".to_owned(), n(a.min)),
        ("mx".to_owned(), n(a.max)),
        ("ft".to_owned(), n(a.first.0)),
        ("fv".to_owned(), n(a.first.1)),
        ("lt".to_owned(), n(a.last.0)),
        ("lv".to_owned(), n(a.last.1)),
        ("ver".to_owned(), n(version)),
    ]);
    for (attr, verdict) in VERDICT_ATTRS {
        if a.verdicts(verdict) > 0 {
            item.insert(attr.to_owned(), n(a.verdicts(verdict)));
        }
    }
    if a.provisional {
        item.insert("p".to_owned(), AttributeValue::Bool(true));
    }
    if let Some(level) = a.level {
        item.insert("lvl".to_owned(), n(level));
    }
    item
}

fn aggregate_of(
    item: &HashMap<String, AttributeValue>,
) -> Result<(i64, Aggregate, u64), StoreError> {
    let count = get_n(item, "c")? as u64;
    let mut verdicts = [0u32; 6];
    let mut set_aside = 0;
    for (attr, verdict) in VERDICT_ATTRS {
        if item.contains_key(attr) {
            verdicts[verdict as usize] = get_n(item, attr)? as u32;
            set_aside += verdicts[verdict as usize];
        }
    }
    verdicts[Verdict::Counted as usize] = (count as u32).saturating_sub(set_aside);
    let agg = Aggregate {
        count,
        sum: get_n(item, "s")?,
        min: get_n(item, "mn")?,
        max: get_n(item, "mx")?,
        first: (get_n(item, "ft")? as i64, get_n(item, "fv")?),
        last: (get_n(item, "lt")? as i64, get_n(item, "lv")?),
        verdicts,
        provisional: item.get("p").and_then(|v| v.as_bool().ok()) == Some(&true),
        level: item
            .contains_key("lvl")
            .then(|| get_n(item, "lvl"))
            .transpose()?,
    };
    Ok((
        get_n(item, names::READINGS_SK)? as i64,
        agg,
        get_n(item, "ver")? as u64,
    ))
}

/// Brings a series' hours and days up to date after its readings `touched` (new or rewritten,
/// in time order) landed.
pub(crate) async fn maintain(
    t: Table<'_>,
    settings: &Settings,
    touched: &[(i64, f64)],
) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (touched.first(), touched.last()) else {
        return Ok(());
    };
    let hours: BTreeSet<i64> = touched.iter().map(|(ts, _)| hour_of(*ts)).collect();
    recompute(t, settings, (first.0, last.0), Some(&hours)).await
}

/// The same after a bulk write that touched the series anywhere from `first` to `last`: every
/// hour of that span with readings is recomputed.
pub(crate) async fn maintain_span(
    t: Table<'_>,
    settings: &Settings,
    (first, last): (i64, i64),
) -> Result<(), StoreError> {
    recompute(t, settings, (first, last), None).await
}

async fn recompute(
    t: Table<'_>,
    settings: &Settings,
    (first, last): (i64, i64),
    wanted: Option<&BTreeSet<i64>>,
) -> Result<(), StoreError> {
    retrying(settings, "could not be updated", || async {
        let hours = if settings.kind == Kind::Cumulative {
            counter_hours(t, settings, (first, last)).await?
        } else {
            value_hours(t, settings, (first, last), wanted).await?
        };
        match hours {
            Some(hours) => days(t, settings, &hours).await,
            None => Ok(false),
        }
    })
    .await
}

/// Runs `step` until it answers true (done), at most [`ATTEMPTS`] times: again when it
/// answers false (another writer moved an aggregate first) and when a request failed past the
/// SDK's own retries. Redoing a step whole is safe, every put being conditional on the version
/// it read; and the readings are stored already, so failing them for one lost request would
/// make the caller write them all again.
async fn retrying<F, Fut>(settings: &Settings, what: &str, mut step: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>>,
{
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        match step().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.is_retryable() => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable {
        backend: BACKEND,
        message: match last_error {
            Some(e) => format!(
                "the rollups of {} {what} in {ATTEMPTS} recomputes: {e}",
                settings.series
            ),
            None => format!(
                "the rollups of {} {what}: they kept changing under other writers \
                 ({ATTEMPTS} recomputes)",
                settings.series
            ),
        },
        source: None,
    })
}

/// Waits before recompute `attempt` (1 and up): exponential from 20 ms to about 1.3 s, with
/// jitter, so writers that collided do not collide again and a throttled table gets room.
async fn backoff(attempt: usize) {
    let ms = 10 * (1u64 << attempt.min(7)) + u64::from(rand_jitter());
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// A few milliseconds of jitter, so writers that collided do not collide again.
fn rand_jitter() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 20) as u8
}

/// Recomputes the hours of a gauge or interval series in `wanted` (every hour from `first` to
/// `last` with readings when `None`); answers the hours written, or `None` if another writer
/// moved one first.
async fn value_hours(
    t: Table<'_>,
    settings: &Settings,
    (first, last): (i64, i64),
    wanted: Option<&BTreeSet<i64>>,
) -> Result<Option<BTreeSet<i64>>, StoreError> {
    let span = (hour_of(first), hour_of(last).saturating_add(HOUR_MS));
    let stored: HashMap<i64, (Aggregate, u64)> = match wanted {
        // A poll's write touches an hour or two: each read by its key.
        Some(wanted) if wanted.len() <= FEW_HOURS => {
            let mut stored = HashMap::new();
            for &h in wanted {
                if let Some(found) = t.aggregate(&settings.hours(), h).await? {
                    stored.insert(h, found);
                }
            }
            stored
        }
        _ => t
            .aggregates(&settings.hours(), span, Order::Up, None, true)
            .await?
            .into_iter()
            .map(|(h, a, v)| (h, (a, v)))
            .collect(),
    };
    let mut readings = Vec::new();
    match wanted {
        // Only the touched hours: a span of late readings can cover hours nobody wrote to.
        Some(wanted) => {
            for run in wanted
                .iter()
                .collect::<Vec<_>>()
                .chunk_by(|a, b| **b == **a + HOUR_MS)
            {
                let from = *run[0];
                let to = *run[run.len() - 1] + HOUR_MS;
                readings.extend(
                    t.readings(&settings.series, (from, to), Order::Up, None, true)
                        .await?,
                );
            }
        }
        None => {
            readings = t
                .readings(&settings.series, span, Order::Up, None, true)
                .await?;
        }
    }
    let pk = settings.hours();
    let changed: Vec<_> = hours_of_values(&readings)
        .into_iter()
        .filter_map(|(h, agg)| {
            let before = stored.get(&h);
            (before.map(|(a, _)| a) != Some(&agg))
                .then(|| (pk.clone(), h, agg, before.map(|(_, v)| *v)))
        })
        .collect();
    if !t.put_all(&changed).await? {
        return Ok(None);
    }
    Ok(Some(changed.iter().map(|(_, h, _, _)| *h).collect()))
}

/// Recomputes a counter's hours around `(first, last)`, the times of the readings a write
/// touched; answers the hours written, or `None` if another writer moved one first.
async fn counter_hours(
    t: Table<'_>,
    settings: &Settings,
    (first, last): (i64, i64),
) -> Result<Option<BTreeSet<i64>>, StoreError> {
    let series = &settings.series;
    let earlier = t
        .readings(
            series,
            (i64::MIN, first),
            Order::Down,
            Some(CounterHours::START_BEFORE),
            true,
        )
        .await?;
    let start = match earlier.get(CounterHours::START_BEFORE - 1) {
        Some((ts, _)) => hour_of(*ts),
        None => i64::MIN,
    };
    let (level, before) = resume_state(t, settings, start, true).await?;
    let mut walk = CounterHours::resume(settings.register, level, &before, last);
    let mut stored: BTreeMap<i64, (Aggregate, u64)> = BTreeMap::new();
    // Stored hours are loaded ahead of the readings fed to the walk.
    let mut loaded_to = start;
    let mut from = start;
    let mut going = true;
    while going {
        let page = t
            .readings(
                series,
                (from, i64::MAX),
                Order::Up,
                Some(PAGE as usize),
                true,
            )
            .await?;
        let Some((page_last, _)) = page.last().copied() else {
            break;
        };
        let need = hour_of(page_last) + HOUR_MS;
        if need > loaded_to {
            for (h, a, v) in t
                .aggregates(&settings.hours(), (loaded_to, need), Order::Up, None, true)
                .await?
            {
                stored.insert(h, (a, v));
            }
            loaded_to = need;
        }
        let mut lookup = |h: i64| Ok::<_, StoreError>(stored.get(&h).map(|(a, _)| *a));
        for (ts, v) in &page {
            if !walk.push(*ts, *v, &mut lookup)? {
                going = false;
                break;
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
        from = page_last + 1;
    }
    let mut lookup = |h: i64| Ok::<_, StoreError>(stored.get(&h).map(|(a, _)| *a));
    let pk = settings.hours();
    let changed: Vec<_> = walk
        .finish(&mut lookup)?
        .into_iter()
        .map(|(h, agg)| (pk.clone(), h, agg, stored.get(&h).map(|(_, v)| *v)))
        .collect();
    if !t.put_all(&changed).await? {
        return Ok(None);
    }
    Ok(Some(changed.iter().map(|(_, h, _, _)| *h).collect()))
}

/// The counter rules' state at `start` (an hour): the level stored with the last hour before
/// it, and the raw values of the [`WINDOW`] readings before it.
async fn resume_state(
    t: Table<'_>,
    settings: &Settings,
    start: i64,
    consistent: bool,
) -> Result<(Option<f64>, Vec<f64>), StoreError> {
    if start == i64::MIN {
        return Ok((None, Vec::new()));
    }
    let level = t
        .aggregates(
            &settings.hours(),
            (i64::MIN, start),
            Order::Down,
            Some(1),
            consistent,
        )
        .await?
        .first()
        .and_then(|(_, a, _)| a.level);
    let mut before: Vec<f64> = t
        .readings(
            &settings.series,
            (i64::MIN, start),
            Order::Down,
            Some(WINDOW),
            consistent,
        )
        .await?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    before.reverse();
    Ok((level, before))
}

/// Merges the days holding `hours` again from their hours; answers false if another writer
/// moved one first.
async fn days(
    t: Table<'_>,
    settings: &Settings,
    hours: &BTreeSet<i64>,
) -> Result<bool, StoreError> {
    let days: BTreeSet<(i64, i64)> = hours
        .iter()
        .filter_map(|h| day_of(*h, settings.zone))
        .collect();
    let pk = settings.days();
    let mut changed = Vec::new();
    for day in days {
        let stored = t.aggregate(&pk, day.0).await?;
        let parts = t
            .aggregates(&settings.hours(), day, Order::Up, None, true)
            .await?;
        let Some(agg) = merge_all(parts.iter().map(|(_, a, _)| a)) else {
            continue;
        };
        if stored.as_ref().map(|(a, _)| a) != Some(&agg) {
            changed.push((pk.clone(), day.0, agg, stored.map(|(_, v)| v)));
        }
    }
    t.put_all(&changed).await
}

/// Drops nothing and recomputes every hour and day of a series from its readings (for a table
/// written before stored rollups, or after a zone or rules change).
pub(crate) async fn rebuild(t: Table<'_>, settings: &Settings) -> Result<(), StoreError> {
    let Some((first, _)) = t
        .readings(
            &settings.series,
            (i64::MIN, i64::MAX),
            Order::Up,
            Some(1),
            true,
        )
        .await?
        .first()
        .copied()
    else {
        return Ok(());
    };
    retrying(settings, "could not be rebuilt", || async {
        let hours = if settings.kind == Kind::Cumulative {
            counter_hours(t, settings, (first, i64::MAX)).await?
        } else {
            value_hours(t, settings, (first, i64::MAX - HOUR_MS), None).await?
        };
        let Some(mut hours) = hours else {
            return Ok(false);
        };
        // Days of another zone go; then every day with an hour is merged again.
        for (start, _, _) in t
            .aggregates(
                &settings.days(),
                (i64::MIN, i64::MAX),
                Order::Up,
                None,
                true,
            )
            .await?
        {
            if day_of(start, settings.zone).map(|d| d.0) != Some(start) {
                t.delete(&settings.days(), start).await?;
            }
        }
        for (h, _, _) in t
            .aggregates(
                &settings.hours(),
                (i64::MIN, i64::MAX),
                Order::Up,
                None,
                true,
            )
            .await?
        {
            hours.insert(h);
        }
        days(t, settings, &hours).await
    })
    .await
}

/// Feeds `builder` the pieces of `q`'s range: stored days and hours where they fit, readings
/// for the rest (a counter's edge resumes from the level stored with the hour before it).
pub(crate) async fn fill(
    t: Table<'_>,
    settings: &Settings,
    q: &RollupQuery,
    builder: &mut RollupBuilder,
) -> Result<(), StoreError> {
    for piece in plan(q.range, q.granularity, q.zone, Some(settings.zone))? {
        match piece {
            Piece::Raw(range) => {
                let mut part =
                    RollupBuilder::for_query(&RollupQuery { range, ..q.clone() }, settings.kind)?;
                raw(t, settings, range, &mut part).await?;
                builder.absorb(part);
            }
            Piece::Hours(range) | Piece::Days(range) => {
                let pk = match piece {
                    Piece::Days(_) => settings.days(),
                    _ => settings.hours(),
                };
                let span = (
                    range.from().timestamp_millis(),
                    range.to().timestamp_millis(),
                );
                for (start, a, _) in t.aggregates(&pk, span, Order::Up, None, false).await? {
                    let at = DateTime::from_timestamp_millis(start)
                        .ok_or_else(|| corrupt("aggregate time out of range"))?;
                    builder.add(at, &a);
                }
            }
        }
    }
    Ok(())
}

async fn raw(
    t: Table<'_>,
    settings: &Settings,
    range: TimeRange,
    builder: &mut RollupBuilder,
) -> Result<(), StoreError> {
    let (from, to) = (
        range.from().timestamp_millis(),
        range.to().timestamp_millis(),
    );
    let time = |ms: i64| {
        DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("reading time out of range"))
    };
    if settings.kind != Kind::Cumulative {
        for (ts, v) in t
            .readings(&settings.series, (from, to), Order::Up, None, false)
            .await?
        {
            builder.push(time(ts)?, v)?;
        }
        return Ok(());
    }
    let start = hour_of(from);
    let (level, before) = resume_state(t, settings, start, false).await?;
    builder.resume(level, &before);
    for (ts, v) in t
        .readings(&settings.series, (start, to), Order::Up, None, false)
        .await?
    {
        if ts < from {
            builder.baseline(time(ts)?, v);
        } else {
            builder.push(time(ts)?, v)?;
        }
    }
    // A counter's last readings are decided with the few after the range.
    for (ts, v) in t
        .readings(
            &settings.series,
            (to, i64::MAX),
            Order::Up,
            Some(WINDOW),
            false,
        )
        .await?
    {
        builder.push(time(ts)?, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item: HashMap<String, AttributeValue> = [
            ("pk".to_owned(), AttributeValue::S("M1#volume".into())),
            ("t".to_owned(), AttributeValue::N("1714557600000".into())),
            ("v".to_owned(), AttributeValue::N("-0012.50".into())),
            ("ok".to_owned(), AttributeValue::Bool(true)),
        ]
        .into_iter()
        .collect();
        // Names plus values; numbers lose leading and trailing zeros (17145576: 4 + 1 bytes,
        // 125: 2 + 1).
        assert_eq!(item_size(&item), (2 + 9) + (1 + 5) + (1 + 3) + (2 + 1));
        let cost = ReadCost::default();
        cost.add(&[], false, None);
        cost.add(&vec![item; 400], true, Some(1.0));
        // An empty answer costs the minimum half unit; 400 items of 24 bytes are 3 blocks.
        assert_eq!(*cost.billed_units.lock().unwrap(), 0.5 + 3.0);
        assert_eq!(*cost.units.lock().unwrap(), 1.0);
        assert_eq!(cost.items.load(std::sync::atomic::Ordering::Relaxed), 400);
    }
}
