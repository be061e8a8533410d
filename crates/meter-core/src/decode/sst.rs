//! SST Cloud counter lists (seed 000): the bare JSON array that `GET /houses/{id}/counters/`
//! answers, each element `{"id", "name", "line", "for_hot_water", "value", "step", "device", ...}`.
//!
//! Each counter becomes a cumulative `volume` reading in litres of meter `sst-<id>`, stamped with
//! the poll time (counters carry none; seed 000 stamped whole seconds), and tagged as seed 000's
//! Timestream rows were (`service=water`, `water_temperature=hot|cold`) plus `counter_id`,
//! `line` and `device`, so two cold meters of one house no longer collide. `value` is already
//! litres: it is not multiplied by `step`.

use std::io::BufRead;

use chrono::{DurationRound, TimeDelta};
use serde_json::Value;

use super::{read_bounded_json, DecodeOptions, Decoded, Rejection};
use crate::reading::{Kind, MeterId, Reading, Unit};

/// The measure of water counters (seed 000's measure name).
pub const MEASURE: &str = "volume";
/// The default source name.
pub const DEFAULT_SOURCE: &str = "sst-cloud";

/// The meter id of an SST Cloud counter.
pub fn meter_id(counter_id: i64) -> Option<MeterId> {
    MeterId::new(&format!("sst-{counter_id}")).ok()
}

/// Decodes a counter list. The whole response is read (at most
/// [`MAX_JSON_BYTES`](super::MAX_JSON_BYTES)); element `i` is reported as line `i + 1`.
#[derive(Debug)]
pub struct SstCountersDecoder {
    items: std::vec::IntoIter<Decoded>,
    yielded: u64,
}

impl SstCountersDecoder {
    /// Reads and validates the list.
    pub fn new<R: BufRead>(reader: R, options: DecodeOptions) -> Self {
        let items = match read_bounded_json(reader) {
            Err(reason) => vec![fatal(&options, reason)],
            Ok(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, c)| counter(c, i, &options))
                .collect(),
            Ok(Value::Object(o)) if o.contains_key("detail") => {
                let detail = o.get("detail").map(Value::to_string).unwrap_or_default();
                vec![fatal(
                    &options,
                    format!("the service answered an error: {detail}"),
                )]
            }
            Ok(_) => vec![fatal(&options, "expected a JSON array of counters".into())],
        };
        Self {
            items: items.into_iter(),
            yielded: 0,
        }
    }
}

fn fatal(options: &DecodeOptions, reason: String) -> Decoded {
    Err(Rejection::unreadable(&options.file, 1, reason, ""))
}

fn counter(c: &Value, i: usize, options: &DecodeOptions) -> Decoded {
    let line = i as u64 + 1;
    let raw = c.to_string();
    let reject = |field: Option<&str>, reason: String| {
        Err(Rejection::decode(&options.file, line, field, reason, &raw))
    };
    let Some(obj) = c.as_object() else {
        return reject(None, "a counter must be a JSON object".into());
    };
    let int = |key: &str| obj.get(key).and_then(Value::as_i64);
    let Some(id) = int("id") else {
        return reject(
            Some("id"),
            "the counter id is missing or not an integer".into(),
        );
    };
    let value = match obj.get("value") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= 0 => v,
            Some(v) => return reject(Some("value"), format!("the reading {v} is negative")),
            None => {
                return reject(
                    Some("value"),
                    format!("the reading {n} is not a whole number of litres"),
                )
            }
        },
        None | Some(Value::Null) => return reject(Some("value"), "the reading is missing".into()),
        Some(other) => {
            return reject(
                Some("value"),
                format!("the reading {other} is not a number"),
            )
        }
    };
    let hot = match obj.get("for_hot_water") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return reject(
                Some("for_hot_water"),
                format!("{other} is not true or false"),
            )
        }
    };
    let Some(meter) = meter_id(id) else {
        return reject(Some("id"), format!("{id} cannot name a meter"));
    };
    let mut tags = options.tags.clone();
    let mut add = |k: &str, v: &str| -> Result<(), Rejection> {
        tags = tags
            .with(k, v)
            .map_err(|e| Rejection::decode(&options.file, line, Some(k), e, &raw))?;
        Ok(())
    };
    let extra = [("line", int("line")), ("device", int("device"))];
    let result = add("service", "water")
        .and_then(|()| add("water_temperature", if hot { "hot" } else { "cold" }))
        .and_then(|()| add("counter_id", &id.to_string()))
        .and_then(|()| {
            extra
                .iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .try_for_each(|(k, v)| add(k, &v.to_string()))
        });
    result?;
    let time = options
        .received_at
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap_or(options.received_at);
    Reading::new(
        meter,
        options.measure_or(MEASURE),
        value as f64,
        options.unit.clone().unwrap_or(Unit::Litre),
        options.kind.unwrap_or(Kind::Cumulative),
        time,
        options.source_or(DEFAULT_SOURCE),
    )
    .map(|r| r.with_tags(tags))
    .map_err(|e| Rejection::decode(&options.file, line, Some("value"), e, &raw))
}

impl super::Decoder for SstCountersDecoder {
    fn line(&self) -> u64 {
        self.yielded
    }
}

impl Iterator for SstCountersDecoder {
    type Item = Decoded;
    fn next(&mut self) -> Option<Decoded> {
        let item = self.items.next()?;
        self.yielded += 1;
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Tags;

    fn decode(body: &str) -> Vec<Decoded> {
        let mut o = DecodeOptions::new("houses/9086/counters/");
        o.tags = Tags::new([("location", "flat")]).unwrap();
        SstCountersDecoder::new(body.as_bytes(), o).collect()
    }

    #[test]
    fn counters_become_litre_readings_with_seed_tags() {
        let body = r#"[
          {"id": 39871, "name": "Cold", "line": 4, "for_hot_water": false, "max_value": 0,
           "step": 10, "value": 123457, "prev_value": 123457, "prev_step": 10, "device": 29485},
          {"id": 39870, "name": "Hot", "line": 3, "for_hot_water": true, "value": 98765, "device": 29485}
        ]"#;
        let items = decode(body);
        let cold = items[0].as_ref().unwrap();
        assert_eq!(cold.meter().as_str(), "sst-39871");
        assert_eq!(cold.value(), 123_457.0);
        assert_eq!(cold.unit(), &Unit::Litre);
        assert_eq!(cold.kind(), Kind::Cumulative);
        assert_eq!(cold.measure().as_str(), "volume");
        assert_eq!(cold.tags().get("water_temperature"), Some("cold"));
        assert_eq!(cold.tags().get("service"), Some("water"));
        assert_eq!(cold.tags().get("location"), Some("flat"));
        assert_eq!(cold.tags().get("line"), Some("4"));
        assert_eq!(cold.time().timestamp_subsec_nanos(), 0);
        let hot = items[1].as_ref().unwrap();
        assert_eq!(hot.tags().get("water_temperature"), Some("hot"));
    }

    #[test]
    fn malformed_counters_name_element_and_field() {
        let body = r#"[
          {"id": 1, "value": 10},
          {"value": 10},
          {"id": 3, "value": -1},
          {"id": 4, "value": 1.5},
          {"id": 5},
          {"id": 6, "value": "12"},
          {"id": 7, "value": 1, "for_hot_water": "yes"},
          7
        ]"#;
        let items = decode(body);
        let bad: Vec<(u64, Option<String>, String)> = items
            .iter()
            .filter_map(|i| i.as_ref().err())
            .map(|e| (e.line, e.field.clone(), e.reason.clone()))
            .collect();
        let expect: [(u64, Option<&str>, &str); 7] = [
            (2, Some("id"), "id is missing"),
            (3, Some("value"), "negative"),
            (4, Some("value"), "not a whole number"),
            (5, Some("value"), "missing"),
            (6, Some("value"), "not a number"),
            (7, Some("for_hot_water"), "not true or false"),
            (8, None, "must be a JSON object"),
        ];
        assert_eq!(bad.len(), expect.len(), "{bad:?}");
        for (got, want) in bad.iter().zip(expect) {
            assert_eq!((got.0, got.1.as_deref()), (want.0, want.1));
            assert!(got.2.contains(want.2), "{got:?}");
        }
    }

    #[test]
    fn error_bodies_and_html_are_fatal() {
        for body in [r#"{"detail": "Invalid token."}"#, "<html>502</html>", "{}"] {
            let items = decode(body);
            assert_eq!(items.len(), 1);
            assert!(items[0].as_ref().unwrap_err().is_fatal(), "{body}");
        }
    }
}
