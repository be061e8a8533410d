//! Our own routes, under `/v1`.

use axum::extract::{Path, State};
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use meter_core::ports::{registered_register, Cursor, MeterInfo, RangeQuery, RollupQuery};
use meter_core::time::TimeRange;
use meter_core::{Bucket, Granularity, Kind, MeasureName, MeterId, Reading, Rollup};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

use crate::chart;
use crate::params::{meter_id, range, Params, RawQuery};
use crate::{ApiError, ApiState};

/// The longest range of raw readings one request may ask for.
const MAX_READINGS_RANGE_DAYS: i64 = 366;
/// Page sizes of the readings route.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;
/// The longest rollups: ten years of days, three months of hours.
const MAX_DAILY_DAYS: i64 = 3660;
const MAX_HOURLY_DAYS: i64 = 93;
/// The chart's window, in hours.
const DEFAULT_CHART_HOURS: i64 = 24;
const MAX_CHART_HOURS: i64 = 24 * 31;
/// The most points drawn in one chart (a month of 5-minute readings, with room).
const MAX_CHART_POINTS: usize = 10_000;

fn reading_json(r: &Reading, zone: Tz) -> Value {
    let mut v = json!({
        "measure": r.measure().as_str(),
        "time": r.time().with_timezone(&zone).to_rfc3339(),
        "value": r.value(),
        "unit": r.unit().symbol(),
        "kind": r.kind().as_str(),
        "source": r.source().as_str(),
    });
    if !r.tags().is_empty() {
        v["tags"] = json!(r
            .tags()
            .iter()
            .collect::<std::collections::BTreeMap<_, _>>());
    }
    v
}

fn meter_json(m: &MeterInfo) -> Value {
    json!({
        "meter": m.meter.as_str(),
        "series": m.series.iter().map(|s| json!({
            "measure": s.measure.as_str(),
            "unit": s.unit.symbol(),
            "kind": s.kind.as_str(),
            "count": s.count,
            "first": s.first.to_rfc3339(),
            "last": s.last.to_rfc3339(),
        })).collect::<Vec<_>>(),
    })
}

/// `GET /v1/meters`
pub(crate) async fn meters(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let meters = state.readings.meters().await?;
    Ok(Json(
        json!({"meters": meters.iter().map(meter_json).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/latest[?meter=]`
pub(crate) async fn latest(
    State(state): State<ApiState>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::new(q)?;
    let meter = p.get("meter").map(meter_id).transpose()?;
    let latest = state.readings.latest(meter.as_ref()).await?;
    if latest.is_empty() {
        if let Some(m) = &meter {
            return Err(ApiError::unknown_meter(m.as_str()));
        }
    }
    let zone = p.zone(&state, meter.as_ref()).await?;
    let rows: Vec<Value> = latest
        .iter()
        .map(|r| {
            let mut v = reading_json(r, zone);
            v["meter"] = json!(r.meter().as_str());
            v
        })
        .collect();
    Ok(Json(json!({"latest": rows})))
}

pub(crate) async fn known_meter(state: &ApiState, meter: &MeterId) -> Result<MeterInfo, ApiError> {
    state
        .readings
        .meter(meter)
        .await?
        .ok_or_else(|| ApiError::unknown_meter(meter.as_str()))
}

/// `GET /v1/meters/{meter}/readings?from&to[&measure&limit&cursor&tz&format=json|csv]`
pub(crate) async fn readings(
    State(state): State<ApiState>,
    Path(meter): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::new(q)?;
    let meter = meter_id(&meter)?;
    let zone = p.zone(&state, Some(&meter)).await?;
    let range = range(
        p.instant("from", zone, false)?,
        p.instant("to", zone, true)?,
        Duration::days(MAX_READINGS_RANGE_DAYS),
    )?;
    let csv = match p.get("format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!("'format' must be json or csv, not {other:?}"),
            ))
        }
    };
    let info = known_meter(&state, &meter).await?;
    let measure = p.measure()?;
    if let Some(m) = &measure {
        info.pick(Some(m))?;
    }
    let query = RangeQuery {
        meter: meter.clone(),
        measure,
        range,
        limit: p.number("limit", DEFAULT_PAGE, 1, MAX_PAGE)?,
        after: p.get("cursor").map(|c| Cursor(c.to_owned())),
    };
    let page = state.readings.range(&query).await?;
    let next = page.next.map(|c| c.0);
    if csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record([
            "meter", "measure", "time", "value", "unit", "kind", "source",
        ]);
        for r in &page.readings {
            let _ = w.write_record([
                r.meter().as_str(),
                r.measure().as_str(),
                &r.time().with_timezone(&zone).to_rfc3339(),
                &r.value().to_string(),
                r.unit().symbol(),
                r.kind().as_str(),
                r.source().as_str(),
            ]);
        }
        let body = w.into_inner().unwrap_or_default();
        let mut response = ([(CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
        if let Some(n) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
            response.headers_mut().insert("x-next-cursor", n);
        }
        return Ok(response);
    }
    Ok(Json(json!({
        "meter": meter.as_str(),
        "from": range.from().to_rfc3339(),
        "to": range.to().to_rfc3339(),
        "readings": page.readings.iter().map(|r| reading_json(r, zone)).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
    .into_response())
}

/// A rollup's JSON, serialized straight from the rollup: a year of days is 366 buckets, and
/// building a `Value` tree of them first cost more than the store's read.
struct RollupJson<'a>(&'a Rollup);

struct BucketJson<'a>(&'a Bucket, &'static str);

impl Serialize for RollupJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let key = match r.granularity {
            Granularity::Day => "date",
            Granularity::Hour => "hour",
        };
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("meter", r.meter.as_str())?;
        m.serialize_entry("measure", r.measure.as_str())?;
        m.serialize_entry("unit", r.unit.symbol())?;
        m.serialize_entry("kind", r.kind.as_str())?;
        m.serialize_entry("rule", r.rule.as_str())?;
        m.serialize_entry("zone", &r.zone)?;
        m.serialize_entry("granularity", &r.granularity)?;
        let buckets: Vec<BucketJson<'_>> = r.buckets.iter().map(|b| BucketJson(b, key)).collect();
        m.serialize_entry("buckets", &buckets)?;
        m.end()
    }
}

impl Serialize for BucketJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (b, key) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(key, &b.label)?;
        m.serialize_entry("start", &b.start.to_rfc3339())?;
        m.serialize_entry("end", &b.end.to_rfc3339())?;
        m.serialize_entry("value", &b.value)?;
        m.serialize_entry("count", &b.count)?;
        if b.min.is_some() {
            m.serialize_entry("min", &b.min)?;
            m.serialize_entry("max", &b.max)?;
        }
        for (name, n) in [
            ("glitches", b.glitches),
            ("jitters", b.jitters),
            ("spikes", b.spikes),
            ("resets", b.resets),
            ("wraps", b.wraps),
        ] {
            if n > 0 {
                m.serialize_entry(name, &n)?;
            }
        }
        if b.provisional {
            m.serialize_entry("provisional", &true)?;
        }
        m.end()
    }
}

async fn rollup(
    state: ApiState,
    meter: String,
    q: RawQuery,
    granularity: Granularity,
) -> Result<Response, ApiError> {
    let p = Params::new(q)?;
    let meter = meter_id(&meter)?;
    let zone = p.zone(&state, Some(&meter)).await?;
    let (first, last) = (p.date("from")?, p.date("to")?);
    if first > last {
        return Err(ApiError::bad_request(
            "reversed_range",
            format!("the range is reversed: from {first} is after to {last}"),
        ));
    }
    let max_days = match granularity {
        Granularity::Day => MAX_DAILY_DAYS,
        Granularity::Hour => MAX_HOURLY_DAYS,
    };
    if (last - first).num_days() >= max_days {
        return Err(ApiError::bad_request(
            "range_too_large",
            format!("at most {max_days} days at this granularity"),
        ));
    }
    let range = TimeRange::local_days(first, last, zone)
        .map_err(|e| ApiError::bad_request("bad_range", e.to_string()))?;
    let info = known_meter(&state, &meter).await?;
    let measure = p.measure()?;
    info.pick(measure.as_ref())?;
    // A registered register size decides wraps instead of the inference.
    let register = registered_register(state.registry.as_deref(), &meter).await?;
    let r = state
        .readings
        .rollup(&RollupQuery::new(meter, measure, range, granularity, zone).with_register(register))
        .await?;
    Ok(Json(RollupJson(&r)).into_response())
}

/// `GET /v1/meters/{meter}/daily?from=yyyy-MM-dd&to=yyyy-MM-dd[&tz&measure]`
pub(crate) async fn daily(
    State(state): State<ApiState>,
    Path(meter): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    rollup(state, meter, q, Granularity::Day).await
}

/// `GET /v1/meters/{meter}/hourly?from=yyyy-MM-dd&to=yyyy-MM-dd[&tz&measure]`
pub(crate) async fn hourly(
    State(state): State<ApiState>,
    Path(meter): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    rollup(state, meter, q, Granularity::Hour).await
}

/// The measure a chart shows: the one asked for, else the meter's only one, else its first
/// gauge (a temperature says most on a chart), else its first.
pub(crate) fn chart_measure(
    info: &MeterInfo,
    asked: Option<&MeasureName>,
) -> Result<MeasureName, ApiError> {
    if asked.is_some() || info.series.len() == 1 {
        return Ok(info.pick(asked)?.measure.clone());
    }
    let s = info
        .series
        .iter()
        .find(|s| s.kind == Kind::Gauge)
        .unwrap_or(&info.series[0]);
    Ok(s.measure.clone())
}

/// The SVG chart of one series over the `hours` before `now` (or before its latest reading).
pub(crate) async fn chart_svg(
    state: &ApiState,
    info: &MeterInfo,
    measure: &MeasureName,
    zone: Tz,
    hours: i64,
    now: DateTime<Utc>,
) -> Result<String, ApiError> {
    let series = info.pick(Some(measure))?;
    // The window ends at the latest reading when that is earlier than now, so a sensor that
    // went quiet (or an imported history) still shows its last day rather than an empty chart.
    let now = now.min(series.last);
    let window = TimeRange::new(
        now - Duration::hours(hours),
        now + Duration::milliseconds(1),
    )
    .map_err(|e| ApiError::bad_request("bad_range", e.to_string()))?;
    let mut query = RangeQuery {
        meter: info.meter.clone(),
        measure: Some(measure.clone()),
        range: window,
        limit: MAX_CHART_POINTS,
        after: None,
    };
    let mut points = Vec::new();
    loop {
        let page = state.readings.range(&query).await?;
        points.extend(page.readings.iter().map(|r| (r.time(), r.value())));
        match page.next {
            Some(c) if points.len() < MAX_CHART_POINTS => query.after = Some(c),
            _ => break,
        }
    }
    Ok(chart::render(&chart::Chart {
        title: &chart::title(hours, info.meter.as_str(), measure.as_str()),
        unit: series.unit.symbol(),
        zone,
        from: window.from(),
        to: now,
        points: &points,
    }))
}

/// `GET /v1/meters/{meter}/chart.svg[?hours&measure&tz]`: seed 001's last-24-hours chart.
pub(crate) async fn chart(
    State(state): State<ApiState>,
    Path(meter): Path<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::new(q)?;
    let meter = meter_id(&meter)?;
    let zone = p.zone(&state, Some(&meter)).await?;
    let hours = p.number("hours", DEFAULT_CHART_HOURS, 1, MAX_CHART_HOURS)?;
    let info = known_meter(&state, &meter).await?;
    let measure = chart_measure(&info, p.measure()?.as_ref())?;
    let svg = chart_svg(&state, &info, &measure, zone, hours, state.now()).await?;
    Ok(([(CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// `GET /v1/openapi.json`
pub(crate) async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
