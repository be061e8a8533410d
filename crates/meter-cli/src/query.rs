//! `meter query`: readings, latest values, meters and rollups out of the store.

use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use meter_core::ports::{
    registered_register, MeterRegistry, RangeQuery, ReadingReader, RollupQuery,
};
use meter_core::time::{
    parse_date, parse_instant, parse_zone, start_of_day, TimeFormat, TimeRange,
};
use meter_core::{contract, Granularity, Kind, MeasureName, MeterId, Reading, Rollup};
use meter_store_sqlite::SqliteStore;
use serde::Serialize;

use crate::cli::{OutFormat, QueryArgs, RollupArgs};
use crate::output::{number, print, print_json, Row};
use crate::stores::{open_cloud, StoreSpec};
use crate::Outcome;

/// A reading as printed.
#[derive(Debug, Serialize)]
struct ReadingRow {
    meter: String,
    measure: String,
    time: String,
    value: f64,
    unit: String,
    kind: String,
    source: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    tags: std::collections::BTreeMap<String, String>,
    /// What the counter rules made of a cumulative reading they set aside or restarted at
    /// (`glitch`, `jitter`, `spike`, `reset`, `wrap`); absent when it counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    counter: Option<&'static str>,
}

impl ReadingRow {
    fn new(r: &Reading, zone: Tz) -> Self {
        Self {
            meter: r.meter().to_string(),
            measure: r.measure().to_string(),
            time: r.time().with_timezone(&zone).to_rfc3339(),
            value: r.value(),
            unit: r.unit().to_string(),
            kind: r.kind().to_string(),
            source: r.source().to_string(),
            tags: r
                .tags()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            counter: None,
        }
    }
}

impl Row for ReadingRow {
    fn header() -> &'static [&'static str] {
        &[
            "meter", "measure", "time", "value", "unit", "kind", "source", "counter",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.meter.clone(),
            self.measure.clone(),
            self.time.clone(),
            number(self.value),
            self.unit.clone(),
            self.kind.clone(),
            self.source.clone(),
            self.counter.unwrap_or_default().to_owned(),
        ]
    }
}

/// Marks the cumulative readings among `rows` that the counter rules set aside or restarted
/// at, deciding each as a rollup does (with the readings around them).
async fn mark_counter_readings(
    store: &dyn ReadingReader,
    info: &meter_core::ports::MeterInfo,
    readings: &[Reading],
    rows: &mut [ReadingRow],
) -> anyhow::Result<()> {
    use meter_core::counter::{decide, CONTEXT_BEFORE, WINDOW};
    let pair = |r: &Reading| (r.time(), r.value());
    for series in info.series.iter().filter(|s| s.kind == Kind::Cumulative) {
        let idx: Vec<usize> = (0..readings.len())
            .filter(|&i| readings[i].measure() == &series.measure)
            .collect();
        let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
            continue;
        };
        let key = (&info.meter, &series.measure);
        let before = store
            .before(key, readings[first].time(), CONTEXT_BEFORE)
            .await?;
        let after_from = readings[last].time() + chrono::Duration::milliseconds(1);
        let after = store
            .range(&RangeQuery {
                meter: info.meter.clone(),
                measure: Some(series.measure.clone()),
                range: TimeRange::new(after_from, after_from + chrono::Duration::days(366))?,
                limit: WINDOW,
                after: None,
            })
            .await?
            .readings;
        let in_range: Vec<_> = idx.iter().map(|&i| pair(&readings[i])).collect();
        let decided = decide(
            &before.iter().map(pair).collect::<Vec<_>>(),
            &in_range,
            &after.iter().take(WINDOW).map(pair).collect::<Vec<_>>(),
        );
        for (&i, d) in idx.iter().zip(decided) {
            if d.verdict != meter_core::counter::Verdict::Counted {
                rows[i].counter = Some(d.verdict.as_str());
            }
        }
    }
    Ok(())
}

/// A meter's series as printed.
#[derive(Debug, Serialize)]
struct SeriesRow {
    meter: String,
    measure: String,
    unit: String,
    kind: String,
    count: Option<u64>,
    first: String,
    last: String,
}

impl Row for SeriesRow {
    fn header() -> &'static [&'static str] {
        &["meter", "measure", "unit", "kind", "count", "first", "last"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.meter.clone(),
            self.measure.clone(),
            self.unit.clone(),
            self.kind.clone(),
            self.count.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            self.first.clone(),
            self.last.clone(),
        ]
    }
}

/// A rollup bucket as printed.
#[derive(Debug, Serialize)]
struct BucketRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hour: Option<String>,
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    glitches: u32,
    #[serde(skip_serializing_if = "is_zero")]
    jitters: u32,
    #[serde(skip_serializing_if = "is_zero")]
    spikes: u32,
    #[serde(skip_serializing_if = "is_zero")]
    resets: u32,
    #[serde(skip_serializing_if = "is_zero")]
    wraps: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    provisional: bool,
    #[serde(skip)]
    notes: String,
    rule: &'static str,
    unit: String,
    meter: String,
    measure: String,
    zone: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Row for BucketRow {
    fn header() -> &'static [&'static str] {
        &[
            "period", "value", "min", "max", "count", "rule", "unit", "notes",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let opt = |v: Option<f64>| v.map_or(String::new(), number);
        vec![
            self.date
                .clone()
                .or_else(|| self.hour.clone())
                .unwrap_or_default(),
            self.value.map_or("-".to_owned(), number),
            opt(self.min),
            opt(self.max),
            self.count.to_string(),
            self.rule.to_owned(),
            self.unit.clone(),
            self.notes.clone(),
        ]
    }
}

fn bucket_rows(r: &Rollup) -> Vec<BucketRow> {
    r.buckets
        .iter()
        .map(|b| {
            let (date, hour) = match r.granularity {
                Granularity::Day => (Some(b.label.clone()), None),
                Granularity::Hour => (None, Some(b.label.clone())),
            };
            BucketRow {
                date,
                hour,
                value: b.value,
                min: b.min,
                max: b.max,
                count: b.count,
                glitches: b.glitches,
                jitters: b.jitters,
                spikes: b.spikes,
                resets: b.resets,
                wraps: b.wraps,
                provisional: b.provisional,
                notes: b.notes(),
                rule: r.rule.as_str(),
                unit: r.unit.to_string(),
                meter: r.meter.to_string(),
                measure: r.measure.to_string(),
                zone: r.zone.clone(),
                start: b.start,
                end: b.end,
            }
        })
        .collect()
}

/// The store a query reads: its readings, and the registry (of a local store) for zones.
struct Source {
    readings: Arc<dyn ReadingReader>,
    registry: Option<Arc<dyn MeterRegistry>>,
}

async fn open(spec: &StoreSpec) -> anyhow::Result<Source> {
    if let StoreSpec::Local(path) = spec {
        if !path.exists() {
            bail!(
                "there is no store at {}: import readings first (meter import PATH) or pass --store",
                path.display()
            );
        }
        let store = Arc::new(SqliteStore::open(path)?);
        return Ok(Source {
            readings: store.clone(),
            registry: Some(store),
        });
    }
    let cloud = open_cloud(spec)
        .await
        .context("a cloud store was expected")?;
    Ok(Source {
        readings: cloud.reader,
        registry: None,
    })
}

/// The zone of a query: the flag, else the meter's zone in the registry, else `METER_TZ`,
/// else UTC.
async fn zone_for(store: &Source, flag: Option<&str>, meter: &MeterId) -> anyhow::Result<Tz> {
    if let Some(z) = flag {
        return Ok(parse_zone(z)?);
    }
    let entry = match &store.registry {
        Some(r) => r.entry(meter).await?,
        None => None,
    };
    if let Some(z) = entry.and_then(|e| e.zone) {
        return parse_zone(&z).with_context(|| format!("the registry zone of meter {meter}"));
    }
    match std::env::var(contract::ENV_TZ) {
        Ok(z) if !z.trim().is_empty() => {
            parse_zone(&z).with_context(|| contract::ENV_TZ.to_owned())
        }
        _ => Ok(Tz::UTC),
    }
}

/// An instant, or a date meaning the start of that day (`end` moves it to the day after).
fn instant_or_date(text: &str, zone: Tz, end: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = parse_date(text) {
        let d = if end {
            d.succ_opt().context("date out of range")?
        } else {
            d
        };
        return Ok(start_of_day(d, zone));
    }
    Ok(parse_instant(text, TimeFormat::Auto, zone)?)
}

async fn rollup(
    store: &Source,
    args: RollupArgs,
    granularity: Granularity,
) -> anyhow::Result<Outcome> {
    let meter = MeterId::new(&args.meter)?;
    let zone = zone_for(store, args.tz.as_deref(), &meter).await?;
    let from = parse_date(&args.from).context("--from")?;
    let to = parse_date(&args.to).context("--to")?;
    let range = TimeRange::local_days(from, to, zone).context("--from must not be after --to")?;
    let measure = args.measure.as_deref().map(MeasureName::new).transpose()?;
    let register = registered_register(store.registry.as_deref(), &meter).await?;
    let query = RollupQuery::new(meter, measure, range, granularity, zone).with_register(register);
    let r = store.readings.rollup(&query).await?;
    print(&bucket_rows(&r), args.format)?;
    Ok(Outcome::Success)
}

pub(crate) async fn run(spec: &StoreSpec, args: QueryArgs) -> anyhow::Result<Outcome> {
    let store = open(spec).await?;
    match args {
        QueryArgs::Readings(a) => {
            let meter = MeterId::new(&a.meter)?;
            let zone = zone_for(&store, a.tz.as_deref(), &meter).await?;
            let range = TimeRange::new(
                instant_or_date(&a.from, zone, false).context("--from")?,
                instant_or_date(&a.to, zone, true).context("--to")?,
            )?;
            let Some(info) = store.readings.meter(&meter).await? else {
                bail!("no readings are stored for meter {meter}");
            };
            let mut q = RangeQuery {
                meter,
                measure: a.measure.as_deref().map(MeasureName::new).transpose()?,
                range,
                limit: a.limit.min(10_000),
                after: None,
            };
            let mut readings = Vec::new();
            let mut more = false;
            while readings.len() <= a.limit {
                let page = store.readings.range(&q).await?;
                readings.extend(page.readings);
                more = page.next.is_some();
                match page.next {
                    Some(c) => q.after = Some(c),
                    None => break,
                }
            }
            let cut = more || readings.len() > a.limit;
            readings.truncate(a.limit);
            let mut rows: Vec<ReadingRow> =
                readings.iter().map(|r| ReadingRow::new(r, zone)).collect();
            mark_counter_readings(&*store.readings, &info, &readings, &mut rows).await?;
            if a.format == OutFormat::Json {
                // An object rather than a bare array, so a program reading it can tell a cut
                // answer from a whole one without parsing stderr.
                print_json(&serde_json::json!({
                    "meter": q.meter.as_str(),
                    "from": range.from().with_timezone(&zone).to_rfc3339(),
                    "to": range.to().with_timezone(&zone).to_rfc3339(),
                    "limit": a.limit,
                    "truncated": cut,
                    "readings": rows,
                }))?;
            } else {
                print(&rows, a.format)?;
            }
            if cut {
                // Said on stderr so the printed rows stay what the format promises.
                eprintln!(
                    "meter: the range holds more than {} readings; these are the first (raise \
                     --limit or shorten the range)",
                    a.limit
                );
            }
            Ok(Outcome::Success)
        }
        QueryArgs::Latest(a) => {
            let meter = a.meter.as_deref().map(MeterId::new).transpose()?;
            let latest = store.readings.latest(meter.as_ref()).await?;
            if latest.is_empty() {
                if let Some(m) = meter {
                    bail!("no readings are stored for meter {m}");
                }
            }
            let rows: Vec<ReadingRow> =
                latest.iter().map(|r| ReadingRow::new(r, Tz::UTC)).collect();
            print(&rows, a.format)?;
            Ok(Outcome::Success)
        }
        QueryArgs::Meters(a) => {
            let rows: Vec<SeriesRow> = store
                .readings
                .meters()
                .await?
                .into_iter()
                .flat_map(|m| {
                    let meter = m.meter.to_string();
                    m.series.into_iter().map(move |s| SeriesRow {
                        meter: meter.clone(),
                        measure: s.measure.to_string(),
                        unit: s.unit.to_string(),
                        kind: s.kind.to_string(),
                        count: s.count,
                        first: s.first.to_rfc3339(),
                        last: s.last.to_rfc3339(),
                    })
                })
                .collect();
            print(&rows, a.format)?;
            Ok(Outcome::Success)
        }
        QueryArgs::Daily(a) => rollup(&store, a, Granularity::Day).await,
        QueryArgs::Hourly(a) => rollup(&store, a, Granularity::Hour).await,
    }
}
