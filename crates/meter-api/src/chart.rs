//! Seed 001's chart, drawn as SVG without a plotting dependency: a line of the readings over the
//! window, hour ticks in the caller's zone (`Thu 11PM`, as the seed's matplotlib axis), a title,
//! and the last value annotated (rounded to one decimal, as the seed's was).

use std::fmt::Write;

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;

/// What to draw.
#[derive(Debug)]
pub struct Chart<'a> {
    /// The title.
    pub title: &'a str,
    /// The unit symbol of the values.
    pub unit: &'a str,
    /// The zone of the time axis.
    pub zone: Tz,
    /// The window's start.
    pub from: DateTime<Utc>,
    /// The window's end.
    pub to: DateTime<Utc>,
    /// The readings, in time order.
    pub points: &'a [(DateTime<Utc>, f64)],
}

const W: f64 = 640.0;
const H: f64 = 480.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 56.0;

/// "Last 24 Hours Pool Temperature" for meter `pool`, measure `temperature`.
pub fn title(hours: i64, meter: &str, measure: &str) -> String {
    let words = |s: &str| -> String {
        s.split(['_', '-', ' ', '.'])
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let span = if hours % 24 == 0 && hours > 24 {
        format!("Last {} Days", hours / 24)
    } else {
        format!("Last {hours} Hours")
    };
    format!("{span} {} {}", words(meter), words(measure))
}

/// Escapes text for SVG/HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A step of 1, 2 or 5 times a power of ten giving about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The SVG document.
pub fn render(c: &Chart<'_>) -> String {
    let mut s = String::with_capacity(4096 + c.points.len() * 16);
    let title = escape(c.title);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" class="chart" role="img" aria-label="{title}" data-points="{n}""##,
        n = c.points.len()
    );
    if let Some((_, v)) = c.points.last() {
        let _ = write!(s, r#" data-last="{:.1}""#, v);
    }
    s.push('>');
    let _ = write!(
        s,
        r##"<title>{title}</title><rect width="{W}" height="{H}" fill="#fff"/><text x="{x}" y="28" text-anchor="middle" font-family="sans-serif" font-size="18" font-weight="bold">{title}</text>"##,
        x = W / 2.0
    );
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = write!(
        s,
        r##"<g stroke="#444" stroke-width="1"><line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/></g>"##
    );
    let span_ms = (c.to - c.from).num_milliseconds().max(1) as f64;
    let x_of = |t: DateTime<Utc>| x0 + (t - c.from).num_milliseconds() as f64 / span_ms * (x1 - x0);

    // Hour ticks on local hour boundaries, every 3 hours for a day, wider for longer windows.
    let hours = (span_ms / 3_600_000.0).ceil() as i64;
    let every = [1, 2, 3, 6, 12, 24, 48, 72, 168]
        .into_iter()
        .find(|e| hours / e <= 8)
        .unwrap_or(168);
    let mut t = c.from.with_timezone(&c.zone);
    t = t - Duration::minutes(i64::from(t.minute())) - Duration::seconds(i64::from(t.second()));
    let mut guard = 0;
    while t.with_timezone(&Utc) <= c.to && guard < 1000 {
        guard += 1;
        let tu = t.with_timezone(&Utc);
        if tu >= c.from && i64::from(t.hour()) % every.min(24) == 0 {
            let x = x_of(tu);
            let label = t.format("%a %l%p").to_string().replace("  ", " ");
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{yt}" stroke="#444"/><text x="{x:.1}" y="{yl}" text-anchor="middle" font-family="sans-serif" font-size="12">{}</text>"##,
                escape(label.trim()),
                yt = y1 + 5.0,
                yl = y1 + 20.0
            );
        }
        t += Duration::hours(1);
    }

    if c.points.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{x}" y="{y}" text-anchor="middle" font-family="sans-serif" font-size="16" fill="#888" class="empty">No readings in this window</text></svg>"##,
            x = (x0 + x1) / 2.0,
            y = (y0 + y1) / 2.0
        );
        return s;
    }
    let (mut lo, mut hi) = c
        .points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    if (hi - lo).abs() < f64::EPSILON {
        lo -= 1.0;
        hi += 1.0;
    }
    let step = nice_step(hi - lo, 5.0);
    lo = (lo / step).floor() * step;
    hi = (hi / step).ceil() * step;
    let y_of = |v: f64| y1 - (v - lo) / (hi - lo) * (y1 - y0);
    let mut tick = lo;
    while tick <= hi + step / 2.0 {
        let y = y_of(tick);
        let _ = write!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{xl}" y="{yt:.1}" text-anchor="end" font-family="sans-serif" font-size="12">{}</text>"##,
            number(tick),
            xl = x0 - 6.0,
            yt = y + 4.0
        );
        tick += step;
    }
    if c.unit != "1" {
        let _ = write!(
            s,
            r##"<text x="14" y="{y}" transform="rotate(-90 14 {y})" text-anchor="middle" font-family="sans-serif" font-size="12">{}</text>"##,
            escape(c.unit),
            y = (y0 + y1) / 2.0
        );
    }
    s.push_str(
        r##"<polyline class="series" fill="none" stroke="#1f77b4" stroke-width="2" points=""##,
    );
    for (t, v) in c.points {
        let _ = write!(s, "{:.1},{:.1} ", x_of(*t), y_of(*v));
    }
    s.push_str(r#""/>"#);
    let (lt, lv) = c.points[c.points.len() - 1];
    let (lx, ly) = (x_of(lt), y_of(lv));
    let _ = write!(
        s,
        r##"<circle cx="{lx:.1}" cy="{ly:.1}" r="4" fill="#d62728"/><text class="last" x="{tx:.1}" y="{ty:.1}" text-anchor="end" font-family="sans-serif" font-size="14" fill="#d62728">{lv:.1}</text></svg>"##,
        tx = lx - 8.0,
        ty = (ly - 10.0).max(y0 + 14.0)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_follow_the_seed() {
        assert_eq!(
            title(24, "pool", "temperature"),
            "Last 24 Hours Pool Temperature"
        );
        assert_eq!(
            title(48, "garden_shed", "air-temp"),
            "Last 2 Days Garden Shed Air Temp"
        );
    }

    #[test]
    fn the_chart_draws_every_point_and_annotates_the_last() {
        let to = DateTime::parse_from_rfc3339("2020-07-03T03:55:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let from = to - Duration::hours(24);
        let points: Vec<(DateTime<Utc>, f64)> = (0..288)
            .map(|i| {
                (
                    from + Duration::minutes(5 * i),
                    70.0 + (i % 10) as f64 * 0.37,
                )
            })
            .collect();
        let svg = render(&Chart {
            title: "Last 24 Hours Pool <Temperature>",
            unit: "degF",
            zone: Tz::US__Eastern,
            from,
            to,
            points: &points,
        });
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains(r#"data-points="288""#));
        assert!(svg.contains("Pool &lt;Temperature&gt;"));
        let last = points[287].1;
        assert!(svg.contains(&format!(">{last:.1}</text></svg>")));
        let polyline = svg.split(r#"class="series""#).nth(1).unwrap();
        let coords = polyline
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(coords.split_whitespace().count(), 288);
        // Hour ticks are local (US/Eastern) times in the seed's style.
        assert!(
            svg.contains(">Thu 3PM<") || svg.contains(">Thu 12AM<"),
            "{svg}"
        );
    }

    #[test]
    fn an_empty_window_says_so() {
        let to = Utc::now();
        let svg = render(&Chart {
            title: "t",
            unit: "1",
            zone: Tz::UTC,
            from: to - Duration::hours(24),
            to,
            points: &[],
        });
        assert!(svg.contains("No readings in this window"));
        assert!(svg.contains(r#"data-points="0""#));
    }
}
