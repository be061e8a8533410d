//! MQTT messages: what a meter reader publishes, turned into readings. One message is one unit
//! of the ingest pipeline, named by its topic.
//!
//! A message is read as the first of these that fits:
//! 1. **Mapped JSON**: the topic matches a rule of the [`Mapping`] (`--mqtt-map FILE`), which
//!    says where the time, value and meter are in a JSON document of any shape.
//! 2. **A bare number** (`21.5`) on `.../{meter}/{measure}`: the topic's last two levels name
//!    the meter and the measure; the reading is stamped with the time it was received (so a
//!    redelivered bare number can store a second reading a little later: publish a time with
//!    the value where that matters).
//! 3. **JSON** `{"time": ..., "value": ...[, "unit": ..., "kind": ...]}`, or an array of such
//!    objects, on the same topics. `time` is RFC 3339, local time in the decoder's zone, or
//!    epoch seconds or milliseconds; without `time` the reading is stamped at receipt.
//! 4. **InfluxDB line protocol** on any topic, read as [`super::line_protocol`] reads it (the
//!    meter from a tag, the measure from measurement and field).
//!
//! Unit and kind: those configured by the mapping rule, else those the message gives (`unit`
//! and `kind` fields, or tags in line protocol), else those of the series already stored
//! ([`DecodeOptions::known`]), else a gauge with no unit. A message whose unit conflicts with
//! its stored series is refused by the store, and quarantined with the reason.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;

use super::line_protocol::LineProtocolDecoder;
use super::{DecodeOptions, Decoded, Rejection};
use crate::ingest::Decoder;
use crate::reading::{Kind, MeasureName, MeterId, Reading, Unit};
use crate::time::{parse_instant, TimeFormat};

/// The default source name of MQTT readings.
pub const DEFAULT_SOURCE: &str = "mqtt";
/// The topic filter subscribed to unless told otherwise.
pub const DEFAULT_TOPIC_FILTER: &str = "meters/#";
/// The largest message payload read (the client refuses larger packets).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The most readings one message may carry (a JSON array, or lines of line protocol).
pub const MAX_READINGS_PER_MESSAGE: usize = 100_000;

/// Why a mapping file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("mapping rule {rule} (topic {topic:?}): {message}")]
pub struct MappingError {
    /// The 1-based rule number in the file.
    pub rule: usize,
    /// The rule's topic filter.
    pub topic: String,
    /// What is wrong.
    pub message: String,
}

/// One rule of a mapping file (a `[[map]]` table), as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRuleSpec {
    /// The MQTT topic filter the rule applies to (`+` and `#` wildcards).
    pub topic: String,
    /// A JSON pointer to an array of points; without it the document is one point.
    #[serde(default)]
    pub items: Option<String>,
    /// The field (or JSON pointer) of the time; without it readings are stamped at receipt.
    #[serde(default)]
    pub time: Option<String>,
    /// The field (or JSON pointer) of the value.
    #[serde(default = "default_value_field")]
    pub value: String,
    /// The field (or JSON pointer) of the meter id; without it, the topic level `meter_level`.
    #[serde(default)]
    pub meter: Option<String>,
    /// The topic level naming the meter: 1 is the first, -1 the last (default -2).
    #[serde(default)]
    pub meter_level: Option<i32>,
    /// The measure's name; without it, the topic level `measure_level`.
    #[serde(default)]
    pub measure: Option<String>,
    /// The topic level naming the measure: 1 is the first, -1 the last (default -1).
    #[serde(default)]
    pub measure_level: Option<i32>,
    /// The unit of every reading of the rule.
    #[serde(default)]
    pub unit: Option<String>,
    /// The kind of every reading of the rule.
    #[serde(default)]
    pub kind: Option<String>,
    /// How the time is written: `auto`, `rfc3339`, `local`, `epoch-s`, `epoch-ms`.
    #[serde(default)]
    pub time_format: Option<String>,
    /// The zone of local times (default: the server's).
    #[serde(default)]
    pub zone: Option<String>,
}

fn default_value_field() -> String {
    "value".to_owned()
}

/// A mapping file: `[[map]]` rules, the first whose topic filter matches a message applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// The rules, in the order they are tried.
    #[serde(default)]
    pub map: Vec<MapRuleSpec>,
}

/// Where a rule finds the meter.
#[derive(Debug, Clone)]
enum MeterFrom {
    Field(String),
    Level(i32),
}

/// Where a rule finds the measure.
#[derive(Debug, Clone)]
enum MeasureFrom {
    Fixed(MeasureName),
    Level(i32),
}

/// A checked mapping rule.
#[derive(Debug, Clone)]
struct MapRule {
    filter: String,
    items: Option<String>,
    time: Option<String>,
    value: String,
    meter: MeterFrom,
    measure: MeasureFrom,
    unit: Option<Unit>,
    kind: Option<Kind>,
    time_format: TimeFormat,
    zone: Option<Tz>,
}

/// The checked rules of a mapping file.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    rules: Vec<MapRule>,
}

impl Mapping {
    /// Checks every rule; the first fault is the error, naming its rule.
    pub fn new(spec: MappingSpec) -> Result<Self, MappingError> {
        let mut rules = Vec::with_capacity(spec.map.len());
        for (i, r) in spec.map.into_iter().enumerate() {
            let fail = |message: String| MappingError {
                rule: i + 1,
                topic: r.topic.clone(),
                message,
            };
            check_filter(&r.topic).map_err(|m| fail(m.to_owned()))?;
            for (name, level) in [
                ("meter_level", r.meter_level),
                ("measure_level", r.measure_level),
            ] {
                if level == Some(0) {
                    return Err(fail(format!(
                        "{name} counts from 1 (the first level) or from -1 (the last); 0 is neither"
                    )));
                }
            }
            if r.meter.is_some() && r.meter_level.is_some() {
                return Err(fail("give meter or meter_level, not both".into()));
            }
            if r.measure.is_some() && r.measure_level.is_some() {
                return Err(fail("give measure or measure_level, not both".into()));
            }
            let measure = match (&r.measure, r.measure_level) {
                (Some(m), _) => MeasureFrom::Fixed(
                    MeasureName::new(m).map_err(|e| fail(format!("measure: {e}")))?,
                ),
                (None, level) => MeasureFrom::Level(level.unwrap_or(-1)),
            };
            let meter = match (&r.meter, r.meter_level) {
                (Some(f), _) => MeterFrom::Field(f.clone()),
                (None, level) => MeterFrom::Level(level.unwrap_or(-2)),
            };
            let unit = r
                .unit
                .as_deref()
                .map(Unit::parse)
                .transpose()
                .map_err(|e| fail(format!("unit: {e}")))?;
            let kind = r
                .kind
                .as_deref()
                .map(Kind::from_str)
                .transpose()
                .map_err(|e| fail(format!("kind: {e}")))?;
            let time_format = r
                .time_format
                .as_deref()
                .map(TimeFormat::from_str)
                .transpose()
                .map_err(|e| fail(format!("time_format: {e}")))?
                .unwrap_or_default();
            let zone = r
                .zone
                .as_deref()
                .map(crate::time::parse_zone)
                .transpose()
                .map_err(|e| fail(format!("zone: {e}")))?;
            for (name, ptr) in [("items", &r.items), ("time", &r.time)] {
                if let Some(p) = ptr {
                    if p.is_empty() {
                        return Err(fail(format!("{name} is empty")));
                    }
                }
            }
            if r.value.is_empty() {
                return Err(fail("value is empty".into()));
            }
            rules.push(MapRule {
                filter: r.topic.clone(),
                items: r.items.clone(),
                time: r.time.clone(),
                value: r.value.clone(),
                meter,
                measure,
                unit,
                kind,
                time_format,
                zone,
            });
        }
        Ok(Self { rules })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn rule_for(&self, topic: &str) -> Option<&MapRule> {
        self.rules.iter().find(|r| topic_matches(&r.filter, topic))
    }
}

/// Whether `filter` is a valid MQTT topic filter; the reason when not.
pub fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("a topic filter cannot be empty");
    }
    if filter.len() > 65_535 || filter.contains('\0') {
        return Err("a topic filter is at most 65,535 bytes and holds no NUL");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("'#' must be a whole level, and the last one");
        }
        if level.contains('+') && *level != "+" {
            return Err("'+' must be a whole level");
        }
    }
    Ok(())
}

/// Whether `topic` matches the MQTT topic filter `filter` (`+` one level, `#` the rest, and
/// wildcards at the first level never match a `$` topic such as `$SYS/...`).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The topic level `level` (1-based from the start, negative from the end).
fn level(topic: &str, level: i32) -> Option<&str> {
    let levels: Vec<&str> = topic.split('/').collect();
    let i = if level > 0 {
        usize::try_from(level - 1).ok()?
    } else {
        levels.len().checked_sub(level.unsigned_abs() as usize)?
    };
    levels.get(i).copied().filter(|l| !l.is_empty())
}

/// A field by name, or by JSON pointer when it starts with `/` (the mapping rules of MQTT
/// messages and of the HTTP JSON source both address points this way).
pub fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.starts_with('/') {
        v.pointer(path)
    } else {
        v.get(path)
    }
}

/// The decoder of one message: its readings and rejections, each with its element number
/// (1 for a single point; the array element, or the line of line protocol).
pub struct MessageDecoder {
    items: VecDeque<(u64, Decoded)>,
    line: u64,
}

impl fmt::Debug for MessageDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageDecoder")
            .field("left", &self.items.len())
            .finish()
    }
}

impl Iterator for MessageDecoder {
    type Item = Decoded;
    fn next(&mut self) -> Option<Decoded> {
        let (line, item) = self.items.pop_front()?;
        self.line = line;
        Some(item)
    }
}

impl Decoder for MessageDecoder {
    fn line(&self) -> u64 {
        self.line
    }
}

/// How the series of one reading is described before unit and kind are settled.
struct Described<'a> {
    meter: MeterId,
    measure: MeasureName,
    value: f64,
    time: DateTime<Utc>,
    unit: Option<Unit>,
    kind: Option<Kind>,
    options: &'a DecodeOptions,
}

impl Described<'_> {
    fn reading(self) -> Result<Reading, String> {
        let o = self.options;
        let (unit, kind) = (o.unit.clone().or(self.unit), o.kind.or(self.kind));
        let known = if unit.is_none() || kind.is_none() {
            o.known
                .as_ref()
                .and_then(|k| k.series(&self.meter, &self.measure))
        } else {
            None
        };
        let unit = unit
            .or_else(|| known.as_ref().map(|k| k.0.clone()))
            .unwrap_or(Unit::Dimensionless);
        let kind = kind.or(known.map(|k| k.1)).unwrap_or(Kind::Gauge);
        Reading::new(
            self.meter,
            self.measure,
            self.value,
            unit,
            kind,
            self.time,
            o.source_or(DEFAULT_SOURCE),
        )
        .map(|r| r.with_tags(o.tags.clone()))
        .map_err(|e| e.to_string())
    }
}

/// Decodes one message published on `topic`. `options.received_at` stamps readings that carry
/// no time; `options.zone` reads local times; `options.file` is ignored (rejections name the
/// topic).
pub fn decode_message(
    topic: &str,
    payload: &[u8],
    options: &DecodeOptions,
    mapping: Option<&Mapping>,
) -> MessageDecoder {
    let file: Arc<str> = Arc::from(topic);
    let mut items = VecDeque::new();
    let raw_text = String::from_utf8_lossy(&payload[..payload.len().min(super::MAX_RAW)]);
    let reject = |line: u64, field: Option<&str>, reason: &dyn fmt::Display| {
        Rejection::decode(&file, line, field, reason, &raw_text)
    };
    let done = |items: VecDeque<(u64, Decoded)>| MessageDecoder { items, line: 0 };
    if payload.len() > MAX_PAYLOAD_BYTES {
        items.push_back((
            1,
            Err(reject(
                1,
                None,
                &format_args!(
                    "the message is {} bytes; at most {MAX_PAYLOAD_BYTES} are read",
                    payload.len()
                ),
            )),
        ));
        return done(items);
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        items.push_back((1, Err(reject(1, None, &"the message is not UTF-8 text"))));
        return done(items);
    };
    let body = text.trim();

    if let Some(rule) = mapping.and_then(|m| m.rule_for(topic)) {
        match serde_json::from_str::<Value>(body) {
            Ok(doc) if doc.is_object() || doc.is_array() => {
                mapped(topic, &doc, rule, options, &reject, &mut items)
            }
            Ok(_) => items.push_back((
                1,
                Err(reject(
                    1,
                    None,
                    &format_args!(
                        "the topic matches mapping rule {:?}, but the message is not a JSON \
                         object or array",
                        rule.filter
                    ),
                )),
            )),
            Err(e) => items.push_back((
                1,
                Err(reject(
                    1,
                    None,
                    &format_args!(
                        "the topic matches mapping rule {:?}, but the message is not JSON: {e}",
                        rule.filter
                    ),
                )),
            )),
        }
        return done(items);
    }

    let from_topic = || -> Result<(MeterId, MeasureName), Rejection> {
        let (Some(meter), Some(measure)) = (level(topic, -2), level(topic, -1)) else {
            return Err(reject(
                1,
                Some("topic"),
                &format_args!(
                    "the topic {topic:?} does not name a meter and a measure: publish on \
                     meters/{{meter}}/{{measure}}, send line protocol, or map the topic in \
                     --mqtt-map"
                ),
            ));
        };
        let meter = MeterId::new(meter)
            .map_err(|e| reject(1, Some("topic"), &format_args!("the meter level: {e}")))?;
        let measure = MeasureName::new(measure)
            .map_err(|e| reject(1, Some("topic"), &format_args!("the measure level: {e}")))?;
        Ok((meter, measure))
    };

    if body.is_empty() {
        items.push_back((1, Err(reject(1, None, &"the message is empty"))));
    } else if let Ok(value) = body.parse::<f64>() {
        let item = from_topic().and_then(|(meter, measure)| {
            Described {
                meter,
                measure,
                value,
                time: options.received_at,
                unit: None,
                kind: None,
                options,
            }
            .reading()
            .map_err(|e| reject(1, None, &e))
        });
        items.push_back((1, item));
    } else if body.starts_with('{') || body.starts_with('[') {
        match serde_json::from_str::<Value>(body) {
            Ok(doc) => match from_topic() {
                Ok((meter, measure)) => {
                    plain_json(&doc, &meter, &measure, options, &reject, &mut items)
                }
                Err(r) => items.push_back((1, Err(r))),
            },
            Err(e) => items.push_back((
                1,
                Err(reject(
                    1,
                    None,
                    &format_args!("the message is not valid JSON: {e}"),
                )),
            )),
        }
    } else if !body.contains('=') {
        items.push_back((
            1,
            Err(reject(
                1,
                None,
                &"the message is neither a number, JSON, nor line protocol (measurement field=value)",
            )),
        ));
    } else {
        let mut lp_options = options.clone();
        lp_options.file = file.clone();
        let mut decoder = LineProtocolDecoder::new(body.as_bytes(), lp_options);
        while let Some(item) = decoder.next() {
            if items.len() >= MAX_READINGS_PER_MESSAGE {
                items.push_back((
                    decoder.line(),
                    Err(reject(
                        decoder.line(),
                        None,
                        &format_args!(
                            "the message holds more than {MAX_READINGS_PER_MESSAGE} readings; \
                             the rest is not read"
                        ),
                    )),
                ));
                break;
            }
            items.push_back((decoder.line(), item));
        }
        if items.is_empty() {
            items.push_back((1, Err(reject(1, None, &"the message holds no reading"))));
        }
    }
    done(items)
}

/// The time of a JSON point, or the receipt time when it has none.
fn json_time(
    v: Option<&Value>,
    format: TimeFormat,
    zone: Tz,
    received: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    match v {
        None | Some(Value::Null) => Ok(received),
        Some(Value::Number(n)) => {
            parse_instant(&n.to_string(), format, zone).map_err(|e| e.to_string())
        }
        Some(Value::String(s)) => parse_instant(s, format, zone).map_err(|e| e.to_string()),
        Some(other) => Err(format!("the time is neither text nor a number: {other}")),
    }
}

fn json_value(v: Option<&Value>) -> Result<f64, String> {
    match v {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("the value {s:?} is not a number")),
        None => Err("the value is missing".into()),
        Some(other) => Err(format!("the value {other} is not a number")),
    }
}

fn json_text<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{key} must be text, not {other}")),
    }
}

type Reject<'a> = dyn Fn(u64, Option<&str>, &dyn fmt::Display) -> Rejection + 'a;

/// `{"time", "value"[, "unit", "kind"]}`, or an array of them.
fn plain_json(
    doc: &Value,
    meter: &MeterId,
    measure: &MeasureName,
    options: &DecodeOptions,
    reject: &Reject<'_>,
    items: &mut VecDeque<(u64, Decoded)>,
) {
    let points: Vec<&Value> = match doc {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    if points.is_empty() {
        items.push_back((1, Err(reject(1, None, &"the message is an empty array"))));
    }
    for (i, p) in points
        .into_iter()
        .enumerate()
        .take(MAX_READINGS_PER_MESSAGE)
    {
        let line = i as u64 + 1;
        let item = (|| {
            if !p.is_object() {
                return Err(reject(
                    line,
                    None,
                    &"expected an object with \"value\" (and \"time\", \"unit\", \"kind\")",
                ));
            }
            let time = json_time(
                p.get("time"),
                TimeFormat::Auto,
                options.zone,
                options.received_at,
            )
            .map_err(|e| reject(line, Some("time"), &e))?;
            let value = json_value(p.get("value")).map_err(|e| reject(line, Some("value"), &e))?;
            let unit = json_text(p, "unit")
                .and_then(|u| u.map(Unit::parse).transpose().map_err(|e| e.to_string()))
                .map_err(|e| reject(line, Some("unit"), &e))?;
            let kind = json_text(p, "kind")
                .and_then(|k| k.map(Kind::from_str).transpose().map_err(|e| e.to_string()))
                .map_err(|e| reject(line, Some("kind"), &e))?;
            Described {
                meter: meter.clone(),
                measure: measure.clone(),
                value,
                time,
                unit,
                kind,
                options,
            }
            .reading()
            .map_err(|e| reject(line, Some("value"), &e))
        })();
        items.push_back((line, item));
    }
}

/// A JSON document read through a mapping rule.
fn mapped(
    topic: &str,
    doc: &Value,
    rule: &MapRule,
    options: &DecodeOptions,
    reject: &Reject<'_>,
    items: &mut VecDeque<(u64, Decoded)>,
) {
    let points: Vec<&Value> = match &rule.items {
        Some(ptr) => match field(doc, ptr).and_then(Value::as_array) {
            Some(a) => a.iter().collect(),
            None => {
                items.push_back((
                    1,
                    Err(reject(
                        1,
                        Some(ptr),
                        &format_args!("no array of points at {ptr:?} (the rule's items)"),
                    )),
                ));
                return;
            }
        },
        None => vec![doc],
    };
    let measure = match &rule.measure {
        MeasureFrom::Fixed(m) => Ok(m.clone()),
        MeasureFrom::Level(l) => level(topic, *l)
            .ok_or_else(|| format!("the topic has no level {l} to name the measure"))
            .and_then(|m| MeasureName::new(m).map_err(|e| format!("the measure level: {e}"))),
    };
    let measure = match measure {
        Ok(m) => m,
        Err(e) => {
            items.push_back((1, Err(reject(1, Some("topic"), &e))));
            return;
        }
    };
    let zone = rule.zone.unwrap_or(options.zone);
    for (i, p) in points
        .into_iter()
        .enumerate()
        .take(MAX_READINGS_PER_MESSAGE)
    {
        let line = i as u64 + 1;
        let item = (|| {
            let meter = match &rule.meter {
                MeterFrom::Field(f) => match field(p, f) {
                    Some(Value::String(s)) => MeterId::new(s),
                    Some(Value::Number(n)) => MeterId::new(&n.to_string()),
                    _ => {
                        return Err(reject(
                            line,
                            Some(f),
                            &format_args!("no meter id at {f:?} (the rule's meter)"),
                        ))
                    }
                }
                .map_err(|e| reject(line, Some(f), &e))?,
                MeterFrom::Level(l) => level(topic, *l)
                    .ok_or_else(|| {
                        reject(
                            line,
                            Some("topic"),
                            &format_args!("the topic has no level {l} to name the meter"),
                        )
                    })
                    .and_then(|m| MeterId::new(m).map_err(|e| reject(line, Some("topic"), &e)))?,
            };
            let time = match &rule.time {
                Some(t) => match field(p, t) {
                    None | Some(Value::Null) => {
                        return Err(reject(
                            line,
                            Some(t),
                            &format_args!("no time at {t:?} (the rule's time)"),
                        ))
                    }
                    v => json_time(v, rule.time_format, zone, options.received_at)
                        .map_err(|e| reject(line, Some(t), &e))?,
                },
                None => options.received_at,
            };
            let value = json_value(field(p, &rule.value))
                .map_err(|e| reject(line, Some(&rule.value), &e))?;
            Described {
                meter,
                measure: measure.clone(),
                value,
                time,
                unit: rule.unit.clone(),
                kind: rule.kind,
                options,
            }
            .reading()
            .map_err(|e| reject(line, Some(&rule.value), &e))
        })();
        items.push_back((line, item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{KnownSeries, SeriesLookup};

    fn options() -> DecodeOptions {
        let mut o = DecodeOptions::new("");
        o.received_at = DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        o
    }

    fn all(topic: &str, payload: &str, mapping: Option<&Mapping>) -> Vec<Decoded> {
        decode_message(topic, payload.as_bytes(), &options(), mapping).collect()
    }

    fn one(topic: &str, payload: &str) -> Reading {
        let mut v = all(topic, payload, None);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0).unwrap()
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(topic_matches("meters/#", "meters/M1/temp"));
        assert!(topic_matches("meters/#", "meters"));
        assert!(topic_matches("meters/+/temp", "meters/M1/temp"));
        assert!(!topic_matches("meters/+/temp", "meters/M1/x/temp"));
        assert!(!topic_matches("meters/+", "meters/M1/temp"));
        assert!(topic_matches("#", "a/b"));
        assert!(!topic_matches("#", "$SYS/broker/uptime"));
        assert!(!topic_matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(topic_matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(check_filter("a/#/b").is_err());
        assert!(check_filter("a/b+").is_err());
        assert!(check_filter("").is_err());
        assert!(check_filter("a/+/#").is_ok());
    }

    #[test]
    fn a_bare_number_is_stamped_at_receipt_with_meter_and_measure_from_the_topic() {
        let r = one("meters/M1/temperature", " 21.5\n");
        assert_eq!(r.meter().as_str(), "M1");
        assert_eq!(r.measure().as_str(), "temperature");
        assert_eq!(r.value(), 21.5);
        assert_eq!(r.time(), options().received_at);
        assert_eq!(r.kind(), Kind::Gauge);
        assert_eq!(r.source().as_str(), DEFAULT_SOURCE);
    }

    #[test]
    fn json_points_carry_time_unit_and_kind() {
        let r = one(
            "meters/W7/volume",
            r#"{"time":"2024-06-01T10:00:00Z","value":123.5,"unit":"m3","kind":"cumulative"}"#,
        );
        assert_eq!(r.time().to_rfc3339(), "2024-06-01T10:00:00+00:00");
        assert_eq!(r.kind(), Kind::Cumulative);
        assert_eq!(r.unit().symbol(), "m3");
        let epoch = one("meters/W7/volume", r#"{"time":1717236000,"value":"7"}"#);
        assert_eq!(epoch.time().timestamp(), 1_717_236_000);
        assert_eq!(epoch.value(), 7.0);
        let v = all(
            "meters/W7/volume",
            r#"[{"time":1717236000000,"value":1},{"time":"soon","value":2},{"value":true}]"#,
            None,
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].as_ref().unwrap().time().timestamp(), 1_717_236_000);
        let bad_time = v[1].as_ref().unwrap_err();
        assert_eq!(
            (bad_time.line, bad_time.field.as_deref()),
            (2, Some("time"))
        );
        let bad_value = v[2].as_ref().unwrap_err();
        assert_eq!(
            (bad_value.line, bad_value.field.as_deref()),
            (3, Some("value"))
        );
        assert_eq!(&*bad_value.file, "meters/W7/volume");
    }

    #[test]
    fn bad_messages_say_why_and_keep_the_payload() {
        for (topic, payload, needle) in [
            ("meters/M1/t", "", "empty"),
            ("meters/M1/t", "{not json", "not valid JSON"),
            ("single", "21.5", "does not name a meter"),
            ("meters/M1/9lives", "21.5", "measure level"),
            ("meters/M1/t", r#"{"value": 1, "kind": "sideways"}"#, "kind"),
            ("meters/M1/t", "on", "neither"),
        ] {
            let v = all(topic, payload, None);
            let r = v[0].as_ref().expect_err(payload);
            assert!(r.reason.contains(needle), "{payload:?}: {}", r.reason);
            assert_eq!(r.raw, payload);
        }
        let v: Vec<_> = decode_message("meters/M1/t", b"\xff\xfe", &options(), None).collect();
        assert!(v[0].as_ref().unwrap_err().reason.contains("UTF-8"));
    }

    #[test]
    fn line_protocol_works_on_any_topic() {
        let v = all(
            "telegraf/host1",
            "water,meter=M1 volume=12.5 1717236000000000000\nwater,meter=M1 flow=\"x\" 1717236000000000000",
            None,
        );
        let r = v[0].as_ref().unwrap();
        assert_eq!(
            (r.meter().as_str(), r.measure().as_str()),
            ("M1", "water.volume")
        );
        let bad = v[1].as_ref().unwrap_err();
        assert_eq!((bad.line, &*bad.file), (2, "telegraf/host1"));
    }

    struct Stored;
    impl SeriesLookup for Stored {
        fn series(&self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)> {
            (meter.as_str() == "W1" && measure.as_str() == "volume")
                .then(|| (Unit::parse("L").unwrap(), Kind::Cumulative))
        }
    }

    #[test]
    fn unit_and_kind_come_from_the_stored_series_when_the_message_is_silent() {
        let mut o = options();
        o.known = Some(KnownSeries(Arc::new(Stored)));
        let r: Vec<_> = decode_message("meters/W1/volume", b"42", &o, None).collect();
        let r = r[0].as_ref().unwrap();
        assert_eq!((r.unit().symbol(), r.kind()), ("L", Kind::Cumulative));
        // The message's own word wins (the store then refuses a conflict, with the reason).
        let r: Vec<_> =
            decode_message("meters/W1/volume", br#"{"value":1,"unit":"m3"}"#, &o, None).collect();
        assert_eq!(r[0].as_ref().unwrap().unit().symbol(), "m3");
    }

    fn mapping(toml_like: Vec<MapRuleSpec>) -> Mapping {
        Mapping::new(MappingSpec { map: toml_like }).unwrap()
    }

    fn rule(topic: &str) -> MapRuleSpec {
        MapRuleSpec {
            topic: topic.into(),
            items: None,
            time: None,
            value: "value".into(),
            meter: None,
            meter_level: None,
            measure: None,
            measure_level: None,
            unit: None,
            kind: None,
            time_format: None,
            zone: None,
        }
    }

    #[test]
    fn mapped_json_of_any_shape() {
        let m = mapping(vec![MapRuleSpec {
            items: Some("/data/points".into()),
            time: Some("/ts".into()),
            value: "/reading/total".into(),
            meter: Some("dev".into()),
            measure: Some("energy".into()),
            unit: Some("kWh".into()),
            kind: Some("cumulative".into()),
            time_format: Some("epoch-s".into()),
            ..rule("shelly/+/emeter")
        }]);
        let v = all(
            "shelly/x/emeter",
            r#"{"data":{"points":[{"dev":"S1","ts":1717236000,"reading":{"total":5}},{"dev":"S1","reading":{"total":6}}]}}"#,
            Some(&m),
        );
        let r = v[0].as_ref().unwrap();
        assert_eq!(
            (
                r.meter().as_str(),
                r.measure().as_str(),
                r.unit().symbol(),
                r.kind()
            ),
            ("S1", "energy", "kWh", Kind::Cumulative)
        );
        assert_eq!(r.time().timestamp(), 1_717_236_000);
        let missing = v[1].as_ref().unwrap_err();
        assert_eq!((missing.line, missing.field.as_deref()), (2, Some("/ts")));
        // A topic the rule does not match is read the plain way.
        assert_eq!(one("meters/M1/t", "1").meter().as_str(), "M1");
        // Topic levels name meter and measure when the rule says so.
        let m = mapping(vec![MapRuleSpec {
            meter_level: Some(2),
            measure_level: Some(3),
            value: "/ENERGY/Total".into(),
            ..rule("tele/+/+/SENSOR")
        }]);
        let v = all(
            "tele/plug1/power/SENSOR",
            r#"{"ENERGY":{"Total":1.25}}"#,
            Some(&m),
        );
        let r = v[0].as_ref().unwrap();
        assert_eq!(
            (r.meter().as_str(), r.measure().as_str(), r.value()),
            ("plug1", "power", 1.25)
        );
        let v = all("tele/plug1/power/SENSOR", "1.25", Some(&m));
        assert!(v[0]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("not a JSON object"));
    }

    #[test]
    fn bad_mapping_rules_are_named() {
        let e = Mapping::new(MappingSpec {
            map: vec![
                rule("ok/#"),
                MapRuleSpec {
                    unit: Some("parsecs?".into()),
                    ..rule("b/+")
                },
            ],
        })
        .unwrap_err();
        assert_eq!(e.rule, 2);
        assert!(e.to_string().contains("unit"), "{e}");
        assert!(Mapping::new(MappingSpec {
            map: vec![rule("a/#/b")]
        })
        .is_err());
        let e = Mapping::new(MappingSpec {
            map: vec![MapRuleSpec {
                meter_level: Some(0),
                ..rule("a/+")
            }],
        })
        .unwrap_err();
        assert!(e.message.contains("0 is neither"));
    }

    #[test]
    fn levels_count_from_either_end() {
        assert_eq!(level("a/b/c", 1), Some("a"));
        assert_eq!(level("a/b/c", -1), Some("c"));
        assert_eq!(level("a/b/c", -3), Some("a"));
        assert_eq!(level("a/b/c", -4), None);
        assert_eq!(level("a/b/c", 4), None);
        assert_eq!(level("a//c", 2), None);
    }

    proptest::proptest! {
        #[test]
        fn any_payload_gives_items_or_reasons_never_a_panic(
            topic in "[a-z$/+#]{0,12}",
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let v: Vec<_> = decode_message(&topic, &payload, &options(), None).collect();
            proptest::prop_assert!(!v.is_empty());
            for item in v {
                if let Err(r) = item {
                    proptest::prop_assert!(!r.reason.is_empty());
                    proptest::prop_assert_eq!(&*r.file, topic.as_str());
                }
            }
        }

        #[test]
        fn a_number_on_a_meter_topic_is_that_reading(
            meter in "[A-Za-z][A-Za-z0-9_-]{0,10}",
            value in -1e12f64..1e12,
        ) {
            let r = one(&format!("meters/{meter}/power"), &value.to_string());
            proptest::prop_assert_eq!(r.meter().as_str(), meter.as_str());
            proptest::prop_assert_eq!(r.value(), value);
        }
    }
}
