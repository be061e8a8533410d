//! The seed systems' own routes, answering what their clients expect.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use meter_core::ports::{RangeQuery, RangeReader};
use meter_core::time::TimeRange;
use meter_core::{Granularity, MeterId, Reading};
use serde_json::{json, Value};

use crate::params::{Params, RawQuery};
use crate::{ApiError, ApiState, SEED003_TOKEN_HEADER};

/// The longest window seed 003's route serves (its own check used now +/- 4 days).
const MAX_SERIES_DAYS: i64 = 366;
/// The most rows of each kind one answer holds.
const MAX_SERIES_ROWS: usize = 100_000;

/// A seed 004 error: the seed's `{"error": ...}`, plus our stable code.
fn seed004_error(code: &'static str, message: String) -> ApiError {
    ApiError::bad_request(code, message)
}

/// Seed 004: `GET /?meterId=<id>&date=dd-MM-yyyy` answers `{"meterId", "date", "sum"}`, the day's
/// total. The checks run in the seed's order (date, then meter, then the date's format), with its
/// messages minus the "mater" typo. An unknown meter or a day without readings sums to 0, as the
/// seed's did.
pub(crate) async fn daily_sum(
    State(state): State<ApiState>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::new(q)?;
    let Some(date_text) = p.get("date") else {
        return Err(seed004_error(
            "missing_parameter",
            "Date parameter is required. Pass date as a query parameter with key date".into(),
        ));
    };
    let Some(meter_text) = p.get("meterId") else {
        return Err(seed004_error(
            "missing_parameter",
            "MeterId parameter is required. Pass meter id as a query parameter with key meterId"
                .into(),
        ));
    };
    let date = NaiveDate::parse_from_str(date_text, "%d-%m-%Y")
        .ok()
        .filter(|_| date_text.len() == 10)
        .ok_or_else(|| {
            seed004_error(
                "bad_parameter",
                format!("Invalid date {date_text}. Use format dd-MM-yyyy"),
            )
        })?;
    // The seed answered indented JSON with the keys in this order; so do we.
    let body = |sum: f64| {
        let v = json!({"meterId": meter_text, "date": date_text, "sum": sum_number(sum)});
        (
            [(CONTENT_TYPE, "application/json")],
            serde_json::to_string_pretty(&v).unwrap_or_default(),
        )
            .into_response()
    };
    let Ok(meter) = MeterId::new(meter_text) else {
        return Ok(body(0.0));
    };
    let Some(info) = state.readings.meter(&meter).await? else {
        return Ok(body(0.0));
    };
    let zone = p.zone(&state, Some(&meter)).await?;
    let measure = p.measure()?;
    let series = info.pick(measure.as_ref())?;
    let range = TimeRange::local_days(date, date, zone)
        .map_err(|e| ApiError::bad_request("bad_parameter", e.to_string()))?;
    let rollup = state
        .readings
        .rollup(&meter_core::ports::RollupQuery {
            meter,
            measure: Some(series.measure.clone()),
            range,
            granularity: Granularity::Day,
            zone,
            register: None,
        })
        .await?;
    Ok(body(
        rollup.buckets.first().and_then(|b| b.value).unwrap_or(0.0),
    ))
}

/// The seed's sum was an integer; keep whole sums whole in the JSON.
fn sum_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// Every reading of a meter in a range (all measures), oldest first, at most `MAX_SERIES_ROWS`.
async fn all_in(
    store: &dyn RangeReader,
    meter: &MeterId,
    range: TimeRange,
) -> Result<Vec<Reading>, ApiError> {
    let mut q = RangeQuery {
        meter: meter.clone(),
        measure: None,
        range,
        limit: 10_000,
        after: None,
    };
    let mut out = Vec::new();
    loop {
        let page = store.range(&q).await?;
        out.extend(page.readings);
        if out.len() > MAX_SERIES_ROWS {
            return Err(ApiError::bad_request(
                "range_too_large",
                format!("more than {MAX_SERIES_ROWS} rows; ask for a shorter window"),
            ));
        }
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    out.sort_by_key(Reading::time);
    Ok(out)
}

fn row(identifier: &str, r: &Reading) -> Value {
    // The seed stored values as text and answered them as strings.
    let v = r.value();
    let cpu = if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    };
    json!({"identifier": identifier, "cpu": cpu, "time": r.time().timestamp_millis()})
}

fn millis(p: &Params, key: &str) -> Result<DateTime<Utc>, ApiError> {
    let text = p.required(key)?;
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_parameter",
                format!("'{key}' must be epoch milliseconds, not {text:?}"),
            )
        })
}

/// Seed 003: `GET /timeSeries-data?startDate=<ms>&endDate=<ms>&identifier=<id>` with
/// `x-security-token`, answering `{"historicalRows": [...], "futureRows": [...]}`. History (up to
/// now) comes from the reading store newest first; future rows from the forecast store in time
/// order; each row is `{"identifier", "cpu": <value as a string>, "time": <epoch ms>}`.
pub(crate) async fn time_series(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    if state.auth.enabled {
        let secret = state
            .auth
            .seed003_token
            .as_ref()
            .or(state.auth.api_token.as_ref());
        let given = headers.get(SEED003_TOKEN_HEADER).map(|v| v.as_bytes());
        if !matches!((secret, given), (Some(s), Some(g)) if s.matches(g)) {
            return Err(ApiError::unauthorized(format!(
                "send the token in the '{SEED003_TOKEN_HEADER}' header"
            )));
        }
    }
    let p = Params::new(q)?;
    let missing: Vec<&str> = ["startDate", "endDate", "identifier"]
        .into_iter()
        .filter(|k| p.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(
            "missing_parameter",
            format!("Some query string params missing: {}", missing.join(", ")),
        ));
    }
    let identifier = p.required("identifier")?;
    let meter = MeterId::new(identifier)
        .map_err(|e| ApiError::bad_request("bad_parameter", format!("'identifier': {e}")))?;
    let (start, end) = (millis(&p, "startDate")?, millis(&p, "endDate")?);
    // The seed's bounds were inclusive (BETWEEN); our ranges are half-open.
    let end_excl = end
        .checked_add_signed(Duration::milliseconds(1))
        .ok_or_else(|| {
            ApiError::bad_request("bad_parameter", "'endDate' is past the last supported time")
        })?;
    crate::params::range(start, end_excl, Duration::days(MAX_SERIES_DAYS))?;
    let now = state.now();
    let mut historical = Vec::new();
    if start < now {
        if let Ok(r) = TimeRange::new(start, end_excl.min(now)) {
            historical = all_in(state.readings.as_ref(), &meter, r).await?;
            historical.reverse();
        }
    }
    let mut future = Vec::new();
    if end_excl > now {
        if let Ok(r) = TimeRange::new(start.max(now), end_excl) {
            future = all_in(state.forecasts.as_ref(), &meter, r).await?;
        }
    }
    Ok(Json(json!({
        "historicalRows": historical.iter().map(|r| row(identifier, r)).collect::<Vec<_>>(),
        "futureRows": future.iter().map(|r| row(identifier, r)).collect::<Vec<_>>(),
    })))
}
