//! The page that replaces seed 001's S3 website: every meter with its last-24-hours chart and
//! latest values, drawn on the server (inline SVG, no scripts), readable on a phone.

use axum::extract::State;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::fmt::Write;

use crate::chart::escape;
use crate::params::{Params, RawQuery};
use crate::v1::{chart_measure, chart_svg};
use crate::{ApiError, ApiState, TOKEN_COOKIE};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem;color:#222}\
h1{font-size:1.4rem}main{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,460px),1fr));gap:1rem}\
section{border:1px solid #ddd;border-radius:6px;padding:.8rem}\
h2{font-size:1.1rem;margin:.2rem 0}table{border-collapse:collapse;font-size:.85rem;margin-bottom:.4rem}\
td,th{padding:.2rem .6rem;text-align:left;border-bottom:1px solid #eee}svg.chart{max-width:100%;height:auto}";

/// `GET /ui`: every meter, its latest values and its chart.
pub(crate) async fn index(
    State(state): State<ApiState>,
    q: RawQuery,
) -> Result<Html<String>, ApiError> {
    let p = Params::new(q)?;
    let meters = state.readings.meters().await?;
    let latest = state.readings.latest(None).await?;
    let now = state.now();
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>meterflow</title><style>{STYLE}</style></head><body><h1>meterflow: {} meters</h1>",
        meters.len()
    );
    if meters.is_empty() {
        html.push_str("<p>No readings yet. Import files with <code>meter import</code> or drop them in the drop folder.</p>");
    }
    html.push_str("<main>");
    for info in &meters {
        let zone = p.zone(&state, Some(&info.meter)).await?;
        let id = escape(info.meter.as_str());
        let _ = write!(html, "<section class=\"meter\" data-meter=\"{id}\"><h2>{id}</h2><table><tr><th>measure</th><th>latest</th><th>at</th><th>kind</th></tr>");
        for r in latest.iter().filter(|r| r.meter() == &info.meter) {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                escape(r.measure().as_str()),
                r.value(),
                escape(if r.unit() == &meter_core::Unit::Dimensionless {
                    ""
                } else {
                    r.unit().symbol()
                }),
                r.time().with_timezone(&zone).format("%Y-%m-%d %H:%M %Z"),
                r.kind()
            );
        }
        html.push_str("</table>");
        let measure = chart_measure(info, None)?;
        html.push_str(&chart_svg(&state, info, &measure, zone, 24, now).await?);
        html.push_str("</section>");
    }
    html.push_str("</main></body></html>");
    Ok(Html(html))
}

/// `GET /ui/login`: a form for the API token, for browsers that cannot send a bearer header.
pub(crate) async fn login_form() -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>meterflow: sign in</title><style>{STYLE}</style></head><body><h1>meterflow</h1><form method=\"post\" action=\"/ui/login\"><label>API token <input type=\"password\" name=\"token\" autocomplete=\"current-password\"></label> <button>Sign in</button></form></body></html>"
    ))
}

#[derive(Deserialize)]
pub(crate) struct Login {
    token: String,
}

/// `POST /ui/login`: sets the token cookie when the token is right.
pub(crate) async fn login(State(state): State<ApiState>, Form(login): Form<Login>) -> Response {
    let ok = !state.auth.enabled
        || state
            .auth
            .api_token
            .as_ref()
            .is_some_and(|t| t.matches(login.token.trim().as_bytes()));
    if !ok {
        return ApiError::unauthorized("the token is not right").into_response();
    }
    let cookie = format!(
        "{TOKEN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        login.token.trim()
    );
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, "/ui".to_owned()), (SET_COOKIE, cookie)],
    )
        .into_response()
}
