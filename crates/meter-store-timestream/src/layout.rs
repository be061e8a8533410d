//! How readings become Timestream records, and what a request of them costs.
//!
//! Every record carries the dimensions `meter` (the meter id), `unit`, `kind` and `source`, plus
//! one dimension per tag. Seed 000's rows had `service=water`, `location` and
//! `water_temperature`; the SST source puts those in tags, and `counter_id` beside them, so two
//! cold counters of one house no longer collide.
//!
//! Seed 000's measure `volume` keeps its exact form, a single-measure `BIGINT` of litres, so the
//! seed's queries (`measure_value::bigint` where `measure_name = 'volume'`) and dashboards keep
//! working unchanged. Every other measure is a multi-measure record (`MeasureName` = the measure,
//! one `DOUBLE` value named `value`), the layout Timestream recommends and the only one that can
//! gain columns later.
//!
//! Whatever every record of a request shares (the time, dimensions, the value type) moves into
//! `CommonAttributes`, where it is sent and metered once.

use std::collections::BTreeMap;

use aws_sdk_timestreamwrite::types::{Dimension, MeasureValue, MeasureValueType, Record, TimeUnit};
use meter_core::{Reading, Unit};

/// The dimension holding the meter id.
pub const DIM_METER: &str = "meter";
/// The dimension holding the unit symbol.
pub const DIM_UNIT: &str = "unit";
/// The dimension holding the kind.
pub const DIM_KIND: &str = "kind";
/// The dimension holding the source name.
pub const DIM_SOURCE: &str = "source";
/// The value column of multi-measure records.
pub const VALUE_COLUMN: &str = "value";
/// Seed 000's measure, written as single-measure `BIGINT` litres.
pub const SEED_MEASURE: &str = "volume";
/// Column names Timestream reserves or the layout uses, which a tag cannot take as they are.
const RESERVED: [&str; 8] = [
    DIM_METER,
    DIM_UNIT,
    DIM_KIND,
    DIM_SOURCE,
    VALUE_COLUMN,
    "time",
    "measure_name",
    "rn",
];
/// The prefix a tag gets when its key is reserved (and is stripped again when read back).
pub const TAG_PREFIX: &str = "tag_";

/// The dimension a tag key is stored under.
pub fn tag_dimension(key: &str) -> String {
    if RESERVED.contains(&key) || key.starts_with("measure_value") || key.starts_with("ts_") {
        format!("{TAG_PREFIX}{key}")
    } else {
        key.to_owned()
    }
}

/// The tag key a dimension came from, or `None` for the layout's own dimensions.
pub fn tag_key(dimension: &str) -> Option<&str> {
    if [DIM_METER, DIM_UNIT, DIM_KIND, DIM_SOURCE].contains(&dimension) {
        return None;
    }
    Some(match dimension.strip_prefix(TAG_PREFIX) {
        Some(k) if tag_dimension(k) == dimension => k,
        _ => dimension,
    })
}

/// One record before common attributes are factored out.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRecord {
    /// Index of the reading in the caller's batch.
    pub index: usize,
    /// Dimensions, by name.
    pub dimensions: BTreeMap<String, String>,
    /// The record's measure name.
    pub measure: String,
    /// The value as Timestream text.
    pub value: String,
    /// `Bigint` (seed layout) or `Multi`.
    pub value_type: MeasureValueType,
    /// Epoch milliseconds as text.
    pub time: String,
    /// A version to write with (only set when retrying an upsert).
    pub version: Option<i64>,
}

/// Why a reading has no record in this layout. Permanent: the same reading fails the same way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// Seed 000's measure is a BIGINT column of whole litres.
    #[error(
        "measure {SEED_MEASURE} is seed 000's BIGINT column of whole litres, but this reading is \
         {value} {unit}; convert it to whole litres or name the measure otherwise"
    )]
    NotWholeLitres {
        /// The reading's value.
        value: f64,
        /// The reading's unit symbol.
        unit: String,
    },
}

/// Plans the record of one reading, or says why it cannot be written.
pub fn plan(index: usize, r: &Reading) -> Result<PlannedRecord, PlanError> {
    let mut dimensions = BTreeMap::new();
    dimensions.insert(DIM_METER.to_owned(), r.meter().to_string());
    dimensions.insert(DIM_UNIT.to_owned(), r.unit().symbol().to_owned());
    dimensions.insert(DIM_KIND.to_owned(), r.kind().as_str().to_owned());
    dimensions.insert(DIM_SOURCE.to_owned(), r.source().to_string());
    for (k, v) in r.tags().iter() {
        dimensions.insert(tag_dimension(k), v.to_owned());
    }
    let measure = r.measure().as_str();
    let (value, value_type) = if measure == SEED_MEASURE {
        if r.unit() != &Unit::Litre || r.value().fract() != 0.0 || r.value() >= 9.0e15 {
            return Err(PlanError::NotWholeLitres {
                value: r.value(),
                unit: r.unit().to_string(),
            });
        }
        (format!("{}", r.value() as i64), MeasureValueType::Bigint)
    } else {
        (format!("{}", r.value()), MeasureValueType::Multi)
    };
    Ok(PlannedRecord {
        index,
        dimensions,
        measure: measure.to_owned(),
        value,
        value_type,
        time: r.time().timestamp_millis().to_string(),
        version: None,
    })
}

/// One WriteRecords request: the common attributes and the records, as the SDK takes them.
#[derive(Debug, Clone)]
pub struct Request {
    /// Shared by every record.
    pub common: Record,
    /// The records, in the order of `indices`.
    pub records: Vec<Record>,
    /// The caller's index of each record.
    pub indices: Vec<usize>,
    /// The bytes Timestream meters for this request (see [`metered_bytes`]).
    pub metered_bytes: usize,
}

fn measure_type_text(t: &MeasureValueType) -> usize {
    // Values are metered at 8 bytes for BIGINT and DOUBLE.
    match t {
        MeasureValueType::Boolean => 1,
        _ => 8,
    }
}

/// Builds one request from planned records that share a value type.
pub fn request(planned: &[PlannedRecord]) -> Request {
    let first = &planned[0];
    let same_time = planned.iter().all(|p| p.time == first.time);
    let same_type = planned.iter().all(|p| p.value_type == first.value_type);
    let same_version = planned.iter().all(|p| p.version == first.version);
    let common_dims: BTreeMap<&String, &String> = first
        .dimensions
        .iter()
        .filter(|(k, v)| planned.iter().all(|p| p.dimensions.get(*k) == Some(*v)))
        .collect();

    let dim = |k: &str, v: &str| {
        Dimension::builder()
            .name(k)
            .value(v)
            .build()
            .expect("name and value are set")
    };
    let mut common = Record::builder().time_unit(TimeUnit::Milliseconds);
    let mut metered = 0usize;
    for (k, v) in &common_dims {
        common = common.dimensions(dim(k, v));
        metered += k.len() + v.len();
    }
    if same_time {
        common = common.time(&first.time);
        metered += 8;
    }
    if same_type {
        common = common.measure_value_type(first.value_type.clone());
    }
    if same_version {
        if let Some(v) = first.version {
            common = common.version(v);
        }
    }
    let mut records = Vec::with_capacity(planned.len());
    for p in planned {
        let mut rec = Record::builder().measure_name(&p.measure);
        metered += p.measure.len() + measure_type_text(&p.value_type);
        for (k, v) in &p.dimensions {
            if !common_dims.contains_key(k) {
                rec = rec.dimensions(dim(k, v));
                metered += k.len() + v.len();
            }
        }
        if !same_time {
            rec = rec.time(&p.time);
            metered += 8;
        }
        if !same_type {
            rec = rec.measure_value_type(p.value_type.clone());
        }
        if !same_version {
            rec = rec.set_version(p.version);
        }
        rec = if p.value_type == MeasureValueType::Multi {
            metered += VALUE_COLUMN.len();
            rec.measure_values(
                MeasureValue::builder()
                    .name(VALUE_COLUMN)
                    .value(&p.value)
                    .r#type(MeasureValueType::Double)
                    .build()
                    .expect("name, value and type are set"),
            )
        } else {
            rec.measure_value(&p.value)
        };
        records.push(rec.build());
    }
    Request {
        common: common.build(),
        records,
        indices: planned.iter().map(|p| p.index).collect(),
        metered_bytes: metered,
    }
}

/// Timestream meters writes in 1 KiB units per request: what a request of `bytes` costs.
pub fn write_units(metered_bytes: usize) -> u64 {
    metered_bytes.div_ceil(1024).max(1) as u64
}

/// The bytes metered for one record written the seed 000 way: one single-measure record per
/// reading and per request, with the seed's own dimensions (for the cost comparison).
pub fn seed_record_bytes(r: &Reading) -> usize {
    let dims: usize = ["service", "location", "water_temperature"]
        .iter()
        .filter_map(|k| r.tags().get(k).map(|v| k.len() + v.len()))
        .sum();
    8 + dims + r.measure().as_str().len() + 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use meter_core::{Kind, Tags};

    fn reading(meter: &str, measure: &str, value: f64, unit: Unit, secs: i64) -> Reading {
        let time = Utc.timestamp_opt(secs, 0).unwrap();
        meter_core::testing::reading(meter, measure, time, value, Kind::Cumulative, unit).with_tags(
            Tags::new([
                ("service", "water"),
                ("location", "flat"),
                ("water_temperature", "cold"),
                ("time", "x"),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn seed_volume_is_a_bigint_of_whole_litres_and_other_measures_are_multi() {
        let p = plan(
            0,
            &reading("c1", "volume", 1234.0, Unit::Litre, 1_700_000_000),
        )
        .unwrap();
        assert_eq!(p.value_type, MeasureValueType::Bigint);
        assert_eq!(p.value, "1234");
        assert_eq!(p.time, "1700000000000");
        assert_eq!(p.dimensions["water_temperature"], "cold");
        assert_eq!(p.dimensions["meter"], "c1");
        assert_eq!(p.dimensions["tag_time"], "x");

        let err = plan(0, &reading("c1", "volume", 1.5, Unit::Litre, 0)).unwrap_err();
        assert!(err.to_string().contains("whole litres"), "{err}");
        let err = plan(0, &reading("c1", "volume", 1.0, Unit::CubicMetre, 0)).unwrap_err();
        assert!(
            matches!(&err, PlanError::NotWholeLitres { unit, .. } if unit == "m3" || unit == "m³"),
            "{err}"
        );

        let p = plan(0, &reading("c1", "energy", 1.5, Unit::KilowattHour, 0)).unwrap();
        assert_eq!(p.value_type, MeasureValueType::Multi);
        assert_eq!(p.value, "1.5");
    }

    #[test]
    fn reserved_tag_keys_round_trip_through_their_prefix() {
        assert_eq!(tag_dimension("time"), "tag_time");
        assert_eq!(tag_key("tag_time"), Some("time"));
        assert_eq!(tag_dimension("location"), "location");
        assert_eq!(tag_key("location"), Some("location"));
        assert_eq!(tag_key("tag_other"), Some("tag_other"));
        assert_eq!(tag_key("meter"), None);
    }

    #[test]
    fn shared_time_and_dimensions_move_to_common_attributes() {
        let planned: Vec<PlannedRecord> = (0..3)
            .map(|i| {
                plan(
                    i,
                    &reading(&format!("c{i}"), "volume", 10.0, Unit::Litre, 1_700_000_000),
                )
                .unwrap()
            })
            .collect();
        let req = request(&planned);
        assert_eq!(req.common.time(), Some("1700000000000"));
        assert_eq!(
            req.common.measure_value_type(),
            Some(&MeasureValueType::Bigint)
        );
        let common: Vec<&str> = req.common.dimensions().iter().map(|d| d.name()).collect();
        assert!(common.contains(&"service") && common.contains(&"location"));
        assert!(!common.contains(&"meter"));
        for (i, rec) in req.records.iter().enumerate() {
            assert_eq!(rec.time(), None);
            let dims: Vec<(&str, &str)> = rec
                .dimensions()
                .iter()
                .map(|d| (d.name(), d.value()))
                .collect();
            assert_eq!(dims, vec![("meter", format!("c{i}").as_str())]);
            assert_eq!(rec.measure_value(), Some("10"));
        }
        // Shared: 8 (time) + the common dimensions once; per record: meter, measure, value.
        let shared: usize = 8 + req
            .common
            .dimensions()
            .iter()
            .map(|d| d.name().len() + d.value().len())
            .sum::<usize>();
        assert_eq!(req.metered_bytes, shared + 3 * ("meter".len() + 2 + 6 + 8));
        assert_eq!(write_units(req.metered_bytes), 1);
        assert_eq!(req.indices, vec![0, 1, 2]);
    }

    #[test]
    fn differing_times_and_types_stay_on_each_record() {
        let planned = vec![
            plan(0, &reading("c1", "volume", 10.0, Unit::Litre, 1)).unwrap(),
            plan(1, &reading("c1", "energy", 1.5, Unit::KilowattHour, 2)).unwrap(),
        ];
        let req = request(&planned);
        assert_eq!(req.common.time(), None);
        assert_eq!(req.common.measure_value_type(), None);
        assert_eq!(req.records[0].time(), Some("1000"));
        assert_eq!(
            req.records[1].measure_value_type(),
            Some(&MeasureValueType::Multi)
        );
        assert_eq!(req.records[1].measure_values()[0].name(), "value");
        assert_eq!(req.records[1].measure_values()[0].value(), "1.5");
    }
}
