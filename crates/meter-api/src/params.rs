//! Query parameters into typed values, each failure a clear 400 naming the parameter.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use meter_core::time::{
    parse_date, parse_instant, parse_zone, start_of_day, TimeFormat, TimeRange,
};
use meter_core::{MeasureName, MeterId};

use crate::{ApiError, ApiState};

/// The raw query parameters.
pub(crate) type RawQuery = Result<Query<BTreeMap<String, String>>, QueryRejection>;

/// Parsed query parameters.
#[derive(Debug)]
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    pub(crate) fn new(raw: RawQuery) -> Result<Self, ApiError> {
        raw.map(|Query(map)| Self(map)).map_err(|e| {
            ApiError::bad_request("bad_query", format!("the query string is malformed: {e}"))
        })
    }

    /// A parameter, if present and not blank.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub(crate) fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key).ok_or_else(|| {
            ApiError::bad_request(
                "missing_parameter",
                format!("the parameter '{key}' is required"),
            )
        })
    }

    /// The zone: the `tz` parameter, else the meter's zone in the registry, else the default.
    pub(crate) async fn zone(
        &self,
        state: &ApiState,
        meter: Option<&MeterId>,
    ) -> Result<Tz, ApiError> {
        if let Some(z) = self.get("tz") {
            return parse_zone(z).map_err(|e| ApiError::bad_request("unknown_zone", e.to_string()));
        }
        if let (Some(registry), Some(meter)) = (&state.registry, meter) {
            if let Some(zone) = registry.entry(meter).await?.and_then(|e| e.zone) {
                if let Ok(z) = parse_zone(&zone) {
                    return Ok(z);
                }
            }
        }
        Ok(state.default_zone)
    }

    /// An instant (RFC 3339, epoch seconds or milliseconds) or a date (its start in `zone`; with
    /// `end`, the start of the next day, so `to=2024-03-01` includes that day).
    pub(crate) fn instant(
        &self,
        key: &str,
        zone: Tz,
        end: bool,
    ) -> Result<DateTime<Utc>, ApiError> {
        let text = self.required(key)?;
        if let Ok(d) = parse_date(text) {
            let d = if end { d.succ_opt().unwrap_or(d) } else { d };
            return Ok(start_of_day(d, zone));
        }
        parse_instant(text, TimeFormat::Auto, zone)
            .map_err(|e| ApiError::bad_request("bad_parameter", format!("'{key}': {e}")))
    }

    pub(crate) fn date(&self, key: &str) -> Result<NaiveDate, ApiError> {
        parse_date(self.required(key)?)
            .map_err(|e| ApiError::bad_request("bad_parameter", format!("'{key}': {e}")))
    }

    pub(crate) fn measure(&self) -> Result<Option<MeasureName>, ApiError> {
        self.get("measure")
            .map(|m| {
                MeasureName::new(m)
                    .map_err(|e| ApiError::bad_request("bad_parameter", format!("'measure': {e}")))
            })
            .transpose()
    }

    pub(crate) fn number<T>(&self, key: &str, default: T, min: T, max: T) -> Result<T, ApiError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        match text.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(ApiError::bad_request(
                "bad_parameter",
                format!("'{key}' must be a whole number from {min} to {max}"),
            )),
        }
    }
}

pub(crate) fn meter_id(text: &str) -> Result<MeterId, ApiError> {
    MeterId::new(text).map_err(|e| ApiError::bad_request("bad_parameter", format!("meter: {e}")))
}

/// A range that is neither empty, reversed, nor longer than `max`.
pub(crate) fn range(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: Duration,
) -> Result<TimeRange, ApiError> {
    if from == to {
        return Err(ApiError::bad_request(
            "empty_range",
            format!(
                "the range is empty: from and to are both {}",
                from.to_rfc3339()
            ),
        ));
    }
    if from > to {
        return Err(ApiError::bad_request(
            "reversed_range",
            format!(
                "the range is reversed: from {} is after to {}",
                from.to_rfc3339(),
                to.to_rfc3339()
            ),
        ));
    }
    if to - from > max {
        return Err(ApiError::bad_request(
            "range_too_large",
            format!(
                "the range is longer than {} days; ask for less",
                max.num_days()
            ),
        ));
    }
    TimeRange::new(from, to).map_err(|e| ApiError::bad_request("bad_range", e.to_string()))
}
