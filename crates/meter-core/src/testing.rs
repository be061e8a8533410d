//! In-memory implementations of every port, for the tests of any crate (feature `test-util`).
//! They follow the ports' contracts exactly (idempotent writes, ordering, pagination), so a
//! handler tested against them behaves the same against a real backend.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ports::{
    AddOutcome, CounterKey, Counters, Cursor, GetObject, ItemFailure, KeyPage, MeterInfo,
    MeterRegistry, MetricDatum, MetricPublisher, ObjectBody, ObjectError, ObjectStore, Page,
    RangeQuery, RangeReader, ReadingReader, ReadingWriter, RegistryEntry, RegistryPage, SeriesInfo,
    StoreError, WriteReport,
};
use crate::reading::{Kind, MeasureName, MeterId, Reading, SourceName, Unit};

pub mod rollup_cases;

type SeriesKey = (MeterId, MeasureName);

/// A reading from source `test`, for tests that build many.
pub fn reading(
    meter: &str,
    measure: &str,
    time: DateTime<Utc>,
    value: f64,
    kind: Kind,
    unit: Unit,
) -> Reading {
    Reading::new(
        MeterId::new(meter).expect("a valid id"),
        MeasureName::new(measure).expect("a valid measure"),
        value,
        unit,
        kind,
        time,
        SourceName::new("test").expect("a valid source"),
    )
    .expect("a valid reading")
}

/// A gauge reading of meter `m`, measure `x`: `value` (a count) at `epoch_seconds`, for tests
/// that need readings and not their details.
pub fn gauge(value: f64, epoch_seconds: i64) -> Reading {
    let time = DateTime::from_timestamp(epoch_seconds, 0).expect("a time in range");
    reading("m", "x", time, value, Kind::Gauge, Unit::Count)
}

#[derive(Debug, Default)]
struct State {
    readings: BTreeMap<SeriesKey, BTreeMap<DateTime<Utc>, Reading>>,
    registry: BTreeMap<MeterId, RegistryEntry>,
    counters: BTreeMap<CounterKey, u64>,
    dedupe: HashSet<String>,
    metrics: Vec<MetricDatum>,
    write_calls: usize,
}

/// Every port in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Readings whose meter id is listed here are refused (to exercise partial failures).
    pub refuse_meters: BTreeSet<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every stored reading, in (meter, measure, time) order.
    pub fn all(&self) -> Vec<Reading> {
        self.lock()
            .readings
            .values()
            .flat_map(|s| s.values().cloned())
            .collect()
    }

    /// Every metric datum published.
    pub fn metrics(&self) -> Vec<MetricDatum> {
        self.lock().metrics.clone()
    }

    /// How many write calls were made.
    pub fn write_calls(&self) -> usize {
        self.lock().write_calls
    }
}

#[async_trait]
impl ReadingWriter for MemoryStore {
    fn max_batch(&self) -> usize {
        1000
    }

    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let mut st = self.lock();
        st.write_calls += 1;
        let mut report = WriteReport::default();
        for (index, r) in readings.iter().enumerate() {
            if self.refuse_meters.contains(r.meter().as_str()) {
                report.failures.push(ItemFailure {
                    index,
                    reason: format!("meter {} is refused by this test store", r.meter()),
                    retryable: false,
                });
                continue;
            }
            let series = st
                .readings
                .entry((r.meter().clone(), r.measure().clone()))
                .or_default();
            if let Some(existing) = series.values().next() {
                if existing.unit() != r.unit() || existing.kind() != r.kind() {
                    report.failures.push(ItemFailure {
                        index,
                        reason: format!(
                            "series {}/{} holds {} {}; the reading is {} {}",
                            r.meter(),
                            r.measure(),
                            existing.kind(),
                            existing.unit(),
                            r.kind(),
                            r.unit()
                        ),
                        retryable: false,
                    });
                    continue;
                }
            }
            series.insert(r.time(), r.clone());
            report.written += 1;
        }
        Ok(report)
    }
}

#[async_trait]
impl RangeReader for MemoryStore {
    async fn range(&self, q: &RangeQuery) -> Result<Page, StoreError> {
        let st = self.lock();
        let after = q.after.as_ref().map(Cursor::reading_position).transpose()?;
        let out: Vec<Reading> = st
            .readings
            .iter()
            .filter(|((meter, measure), _)| {
                meter == &q.meter && q.measure.as_ref().is_none_or(|m| m == measure)
            })
            .flat_map(|(_, s)| {
                s.range(q.range.from()..q.range.to())
                    .map(|(_, r)| r.clone())
            })
            .filter(|r| {
                after.as_ref().is_none_or(|(m, t)| {
                    (r.measure().as_str(), r.time().timestamp_millis()) > (m.as_str(), *t)
                })
            })
            .take(q.limit + 1)
            .collect();
        Ok(Page::of(out, q.limit, false))
    }
}

#[async_trait]
impl ReadingReader for MemoryStore {
    async fn latest(&self, meter: Option<&MeterId>) -> Result<Vec<Reading>, StoreError> {
        let st = self.lock();
        Ok(st
            .readings
            .iter()
            .filter(|((m, _), _)| meter.is_none_or(|want| want == m))
            .filter_map(|(_, s)| s.values().next_back().cloned())
            .collect())
    }

    async fn before(
        &self,
        (meter, measure): (&MeterId, &MeasureName),
        t: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let st = self.lock();
        let Some(series) = st.readings.get(&(meter.clone(), measure.clone())) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Reading> = series
            .range(..t)
            .rev()
            .take(n)
            .map(|(_, r)| r.clone())
            .collect();
        out.reverse();
        Ok(out)
    }

    async fn meters(&self) -> Result<Vec<MeterInfo>, StoreError> {
        let st = self.lock();
        let mut out: Vec<MeterInfo> = Vec::new();
        for ((meter, measure), s) in &st.readings {
            let (Some(first), Some(last)) = (s.values().next(), s.values().next_back()) else {
                continue;
            };
            let info = SeriesInfo {
                measure: measure.clone(),
                unit: first.unit().clone(),
                kind: first.kind(),
                count: Some(s.len() as u64),
                first: first.time(),
                last: last.time(),
            };
            match out.last_mut() {
                Some(m) if &m.meter == meter => m.series.push(info),
                _ => out.push(MeterInfo {
                    meter: meter.clone(),
                    series: vec![info],
                }),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl MeterRegistry for MemoryStore {
    async fn put(&self, entry: &RegistryEntry) -> Result<(), StoreError> {
        self.lock().registry.insert(entry.id.clone(), entry.clone());
        Ok(())
    }

    async fn entry(&self, id: &MeterId) -> Result<Option<RegistryEntry>, StoreError> {
        Ok(self.lock().registry.get(id).cloned())
    }

    async fn remove(&self, id: &MeterId) -> Result<bool, StoreError> {
        Ok(self.lock().registry.remove(id).is_some())
    }

    async fn list(&self, after: Option<&Cursor>, limit: usize) -> Result<RegistryPage, StoreError> {
        let st = self.lock();
        let mut entries: Vec<RegistryEntry> = st
            .registry
            .values()
            .filter(|e| after.is_none_or(|c| e.id.as_str() > c.0.as_str()))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| Cursor(e.id.to_string()))
        } else {
            None
        };
        Ok(RegistryPage { entries, next })
    }
}

#[async_trait]
impl Counters for MemoryStore {
    async fn add(
        &self,
        key: &CounterKey,
        delta: u64,
        dedupe: Option<&str>,
    ) -> Result<AddOutcome, StoreError> {
        let mut st = self.lock();
        if let Some(d) = dedupe {
            if !st.dedupe.insert(d.to_owned()) {
                return Ok(AddOutcome::Duplicate);
            }
        }
        let total = st.counters.entry(key.clone()).or_default();
        *total += delta;
        Ok(AddOutcome::Added(*total))
    }

    async fn total(&self, key: &CounterKey) -> Result<u64, StoreError> {
        Ok(self.lock().counters.get(key).copied().unwrap_or(0))
    }
}

#[async_trait]
impl MetricPublisher for MemoryStore {
    fn max_batch(&self) -> usize {
        crate::batch::CLOUDWATCH_MAX_METRICS
    }

    async fn publish(&self, data: &[MetricDatum]) -> Result<WriteReport, StoreError> {
        self.lock().metrics.extend_from_slice(data);
        Ok(WriteReport {
            written: data.len(),
            failures: Vec::new(),
        })
    }
}

/// An object's bytes, version and content type, by bucket and key.
type Objects = BTreeMap<(String, String), (Vec<u8>, String, String)>;

/// Objects in memory, versioned like S3: each put makes a new version (its ETag).
#[derive(Debug, Default)]
pub struct MemoryObjects {
    /// The objects, and how many puts made versions so far.
    state: Mutex<(Objects, u64)>,
}

impl MemoryObjects {
    /// No objects.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Objects, u64)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bytes of an object, if it exists.
    pub fn bytes(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.find(bucket, key).ok().map(|(bytes, _, _)| bytes)
    }

    /// Every key of a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .0
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }

    fn find(&self, bucket: &str, key: &str) -> Result<(Vec<u8>, String, String), ObjectError> {
        self.lock()
            .0
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
            .ok_or_else(|| ObjectError::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            })
    }
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        what: &GetObject,
    ) -> Result<ObjectBody, ObjectError> {
        let (bytes, version, content_type) = self.find(bucket, key)?;
        if let Some(want) = &what.if_version {
            if want != &version {
                return Err(ObjectError::VersionChanged {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    version: want.clone(),
                });
            }
        }
        let len = bytes.len() as u64;
        let start = what.range_start.unwrap_or(0).min(len) as usize;
        let end = what.range_end.unwrap_or(len).clamp(start as u64, len) as usize;
        let part = bytes[start..end].to_vec();
        Ok(ObjectBody {
            size: Some(part.len() as u64),
            body: Box::new(std::io::Cursor::new(part)),
            version: Some(version),
            content_type: Some(content_type),
        })
    }

    async fn get_bytes(&self, bucket: &str, key: &str, max: usize) -> Result<Vec<u8>, ObjectError> {
        let (bytes, _, _) = self.find(bucket, key)?;
        if bytes.len() > max {
            return Err(ObjectError::TooLarge {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                max,
            });
        }
        Ok(bytes)
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectError> {
        let mut state = self.lock();
        state.1 += 1;
        let version = format!("\"v{}\"", state.1);
        state.0.insert(
            (bucket.to_owned(), key.to_owned()),
            (body, version, content_type.to_owned()),
        );
        Ok(())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&Cursor>,
    ) -> Result<KeyPage, ObjectError> {
        const PAGE: usize = 1000;
        let mut keys: Vec<String> = self
            .keys(bucket)
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .filter(|k| after.is_none_or(|a| k.as_str() > a.0.as_str()))
            .take(PAGE + 1)
            .collect();
        let next = (keys.len() > PAGE).then(|| {
            keys.truncate(PAGE);
            Cursor(keys[PAGE - 1].clone())
        });
        Ok(KeyPage { keys, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::RollupQuery;
    use crate::reading::{Kind, SourceName, Unit};
    use crate::rollup::{Granularity, RollupRule};
    use crate::time::{parse_date, TimeRange};
    use chrono_tz::Tz;

    fn r(meter: &str, secs: i64, v: f64) -> Reading {
        Reading::new(
            MeterId::new(meter).unwrap(),
            MeasureName::new("volume").unwrap(),
            v,
            Unit::Litre,
            Kind::Cumulative,
            DateTime::from_timestamp(secs, 0).unwrap(),
            SourceName::new("t").unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn writes_are_idempotent_and_pages_cover_the_range() {
        let s = MemoryStore::new();
        let batch: Vec<Reading> = (0..10)
            .map(|i| r("m", 86_400 + i * 3600, i as f64))
            .collect();
        s.write(&batch).await.unwrap();
        s.write(&batch).await.unwrap();
        assert_eq!(s.all().len(), 10);
        let range = TimeRange::new(
            DateTime::from_timestamp(0, 0).unwrap(),
            DateTime::from_timestamp(200_000, 0).unwrap(),
        )
        .unwrap();
        let mut q = RangeQuery {
            meter: MeterId::new("m").unwrap(),
            measure: None,
            range,
            limit: 4,
            after: None,
        };
        let mut seen = 0;
        loop {
            let p = s.range(&q).await.unwrap();
            seen += p.readings.len();
            match p.next {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, 10);
    }

    #[tokio::test]
    async fn default_rollup_uses_the_baseline_before_the_range() {
        let s = MemoryStore::new();
        // 2024-05-01T00:00Z = 1714521600.
        let day = 1_714_521_600;
        s.write(&[
            r("m", day - 600, 100.0),
            r("m", day + 3600, 130.0),
            r("m", day + 7200, 150.0),
        ])
        .await
        .unwrap();
        let d = parse_date("2024-05-01").unwrap();
        let q = RollupQuery {
            meter: MeterId::new("m").unwrap(),
            measure: None,
            range: TimeRange::local_days(d, d, Tz::UTC).unwrap(),
            granularity: Granularity::Day,
            zone: Tz::UTC,
            register: None,
        };
        let roll = s.rollup(&q).await.unwrap();
        assert_eq!(roll.rule, RollupRule::LastMinusFirst);
        assert_eq!(roll.buckets[0].value, Some(50.0));
    }

    #[tokio::test]
    async fn a_unit_conflict_fails_only_that_item() {
        let s = MemoryStore::new();
        s.write(&[r("m", 0, 1.0)]).await.unwrap();
        let other = Reading::new(
            MeterId::new("m").unwrap(),
            MeasureName::new("volume").unwrap(),
            1.0,
            Unit::CubicMetre,
            Kind::Cumulative,
            DateTime::from_timestamp(10, 0).unwrap(),
            SourceName::new("t").unwrap(),
        )
        .unwrap();
        let rep = s.write(&[r("m", 5, 2.0), other]).await.unwrap();
        assert_eq!(rep.written, 1);
        assert_eq!(rep.failures[0].index, 1);
    }
}
