//! Seed 002's metrics from the counters table's change stream: each change of an hourly
//! counter becomes a delta (new minus old; an insert counts from zero; a removal, such as a TTL
//! expiry, counts nothing), deltas are summed per endpoint and hour, and each sum is one metric
//! value (namespace `MbedButtonPressHour` by default, the metric named after the endpoint,
//! stamped at the hour, unit `Count`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::contract::cloud::COUNTERS_DEDUPE_PREFIX;
use crate::ports::MetricDatum;

/// One change of a counter item, from a stream record's keys and old and new images.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterChange {
    /// The endpoint (`Endpoint`).
    pub endpoint: String,
    /// The hour (`EventHour`, `YYYY-MM-DD HH:00:00`).
    pub event_hour: String,
    /// The count before (`None` for an insert).
    pub old: Option<f64>,
    /// The count after (`None` for a removal).
    pub new: Option<f64>,
}

impl CounterChange {
    /// What the change adds to its hour: nothing for dedupe items and removals.
    pub fn delta(&self) -> f64 {
        if self.endpoint.starts_with(COUNTERS_DEDUPE_PREFIX) {
            return 0.0;
        }
        match self.new {
            Some(new) => new - self.old.unwrap_or(0.0),
            None => 0.0,
        }
    }
}

/// One metric value and the changes it sums (their positions in the input).
#[derive(Debug, Clone, PartialEq)]
pub struct HourlySum {
    /// The value to publish.
    pub datum: MetricDatum,
    /// Positions of the changes it sums.
    pub sources: Vec<usize>,
}

/// Sums the changes per endpoint and hour into metric values in `namespace`. Changes that add
/// nothing produce no value; an hour that cannot be read is an error naming it.
pub fn hourly_sums(
    namespace: &str,
    changes: &[CounterChange],
) -> Result<Vec<HourlySum>, BadEventHour> {
    let mut sums: BTreeMap<(&str, &str), (f64, Vec<usize>)> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        let d = c.delta();
        if d == 0.0 {
            continue;
        }
        let e = sums
            .entry((c.endpoint.as_str(), c.event_hour.as_str()))
            .or_default();
        e.0 += d;
        e.1.push(i);
    }
    sums.into_iter()
        .map(|((endpoint, hour), (value, sources))| {
            Ok(HourlySum {
                datum: MetricDatum {
                    namespace: namespace.to_owned(),
                    name: endpoint.to_owned(),
                    dimensions: Vec::new(),
                    time: parse_hour(hour)?,
                    value,
                    unit: "Count".to_owned(),
                },
                sources,
            })
        })
        .collect()
}

/// A counter item's `EventHour` that is not `YYYY-MM-DD HH:MM:SS`. Permanent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("EventHour {hour:?} is not YYYY-MM-DD HH:MM:SS: {source}")]
pub struct BadEventHour {
    /// The text found.
    pub hour: String,
    /// The parser's error.
    pub source: chrono::ParseError,
}

fn parse_hour(h: &str) -> Result<DateTime<Utc>, BadEventHour> {
    NaiveDateTime::parse_from_str(h, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc())
        .map_err(|source| BadEventHour {
            hour: h.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(ep: &str, hour: &str, old: Option<f64>, new: Option<f64>) -> CounterChange {
        CounterChange {
            endpoint: ep.into(),
            event_hour: hour.into(),
            old,
            new,
        }
    }

    #[test]
    fn deltas_sum_per_endpoint_and_hour() {
        let h = "2024-05-01 13:00:00";
        let changes = vec![
            change("b1", h, None, Some(1.0)),
            change("b1", h, Some(1.0), Some(3.0)),
            change("b2", h, None, Some(1.0)),
            change("b1", "2024-05-01 14:00:00", None, Some(1.0)),
            // A TTL removal and a dedupe item count nothing.
            change("b2", h, Some(1.0), None),
            change("#dedupe#abc", h, None, Some(1.0)),
        ];
        let sums = hourly_sums("MbedButtonPressHour", &changes).unwrap();
        let got: Vec<(&str, String, f64, Vec<usize>)> = sums
            .iter()
            .map(|s| {
                (
                    s.datum.name.as_str(),
                    s.datum.time.to_rfc3339(),
                    s.datum.value,
                    s.sources.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("b1", "2024-05-01T13:00:00+00:00".into(), 3.0, vec![0, 1]),
                ("b1", "2024-05-01T14:00:00+00:00".into(), 1.0, vec![3]),
                ("b2", "2024-05-01T13:00:00+00:00".into(), 1.0, vec![2]),
            ]
        );
        assert!(sums
            .iter()
            .all(|s| s.datum.unit == "Count" && s.datum.namespace == "MbedButtonPressHour"));
    }

    #[test]
    fn an_unreadable_hour_is_named() {
        let err = hourly_sums("n", &[change("b", "yesterday", None, Some(1.0))]).unwrap_err();
        assert_eq!(err.hour, "yesterday");
        assert!(err.to_string().contains("yesterday"), "{err}");
    }
}
