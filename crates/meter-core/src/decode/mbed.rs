//! mbed Device Connector notification bodies (seed 002): `{"notifications": [{"ep", "path",
//! "ct", "payload" (base64), "max-age"}], ...}`. Other top-level keys (`registrations`,
//! `async-responses`...) carry no readings and are ignored.
//!
//! [`parse_notifications`] gives the notifications themselves (the webhook counts presses from
//! them); [`MbedDecoder`] turns each into a reading of the value the device reported, stamped
//! with the time the body was received (notifications carry no time).

use std::io::BufRead;
use std::sync::Arc;

use base64::Engine;
use serde_json::Value;

use super::{read_bounded_json, DecodeOptions, Decoded, Rejection};
use crate::reading::{Kind, MeasureName, MeterId, Reading, Unit};

/// The IPSO Digital Input counter resource: the button-press counter of mbed-os-example-client.
pub const BUTTON_PATH: &str = "/3200/0/5501";
/// The measure of button-press counters.
pub const BUTTON_MEASURE: &str = "button_presses";
/// The default source name.
pub const DEFAULT_SOURCE: &str = "mbed";

/// One notification, validated and with its payload decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The endpoint (device) name.
    pub ep: MeterId,
    /// The resource path, such as `/3200/0/5501`.
    pub path: String,
    /// The content type, such as `text/plain`.
    pub ct: Option<String>,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// The `max-age` in seconds, given as a number or a string.
    pub max_age: Option<u64>,
}

impl Notification {
    /// The payload as a number, if it is one (the device sends its counter as text).
    pub fn number(&self) -> Option<f64> {
        std::str::from_utf8(&self.payload)
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }

    /// The measure this resource is stored as: `button_presses` for the counter resource,
    /// `lwm2m_<object>_<instance>_<resource>` for others.
    pub fn measure(&self) -> Option<MeasureName> {
        if self.path == BUTTON_PATH {
            return MeasureName::new(BUTTON_MEASURE).ok();
        }
        let parts: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        if parts.is_empty()
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        MeasureName::new(&format!("lwm2m_{}", parts.join("_"))).ok()
    }
}

/// Validates every notification of a parsed body. Element `i` is reported as line `i + 1`, with
/// the field path (`notifications[3].payload`).
pub fn parse_notifications(body: &Value, file: &Arc<str>) -> Vec<Result<Notification, Rejection>> {
    let Some(obj) = body.as_object() else {
        return vec![Err(Rejection::unreadable(
            file,
            1,
            "the body is not a JSON object",
            &body.to_string(),
        ))];
    };
    let list = match obj.get("notifications") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return vec![Err(Rejection {
                field: Some("notifications".into()),
                ..Rejection::unreadable(file, 1, "notifications is not a list", &other.to_string())
            })]
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, n)| parse_one(n, i, file))
        .collect()
}

fn parse_one(n: &Value, i: usize, file: &Arc<str>) -> Result<Notification, Rejection> {
    let line = i as u64 + 1;
    let raw = n.to_string();
    let reject = |field: &str, reason: String| {
        Err(Rejection::decode(
            file,
            line,
            Some(&format!("notifications[{i}].{field}")),
            reason,
            &raw,
        ))
    };
    let Some(obj) = n.as_object() else {
        return Err(Rejection::decode(
            file,
            line,
            Some(&format!("notifications[{i}]")),
            "a notification must be an object",
            &raw,
        ));
    };
    let text = |key: &str| obj.get(key).and_then(Value::as_str);
    let ep = match text("ep").map(MeterId::new) {
        Some(Ok(ep)) => ep,
        Some(Err(e)) => return reject("ep", e.to_string()),
        None => return reject("ep", "the endpoint name is missing".into()),
    };
    let Some(path) = text("path") else {
        return reject("path", "the resource path is missing".into());
    };
    if !path.starts_with('/') || path.len() > 256 {
        return reject("path", format!("{path:?} is not a resource path"));
    }
    let payload = match obj.get("payload") {
        Some(Value::String(p)) => {
            match base64::engine::general_purpose::STANDARD.decode(p.trim()) {
                Ok(bytes) => bytes,
                Err(e) => return reject("payload", format!("the payload is not base64: {e}")),
            }
        }
        None | Some(Value::Null) => return reject("payload", "the payload is missing".into()),
        Some(_) => return reject("payload", "the payload must be a base64 string".into()),
    };
    let max_age = match obj.get("max-age") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    Ok(Notification {
        ep,
        path: path.to_owned(),
        ct: text("ct").map(str::to_owned),
        payload,
        max_age,
    })
}

/// Decodes a notification body into readings. The whole body is read (at most
/// [`MAX_JSON_BYTES`](super::MAX_JSON_BYTES)): Connector bodies are small and JSON objects
/// cannot be split safely.
#[derive(Debug)]
pub struct MbedDecoder {
    items: std::vec::IntoIter<Decoded>,
    yielded: u64,
}

impl MbedDecoder {
    /// Reads and validates the body.
    pub fn new<R: BufRead>(reader: R, options: DecodeOptions) -> Self {
        let items = match read_bounded_json(reader) {
            Err(reason) => vec![Err(Rejection::unreadable(&options.file, 1, reason, ""))],
            Ok(body) => parse_notifications(&body, &options.file)
                .into_iter()
                .enumerate()
                .map(|(i, n)| n.and_then(|n| to_reading(&n, i, &options)))
                .collect(),
        };
        Self {
            items: items.into_iter(),
            yielded: 0,
        }
    }
}

fn to_reading(n: &Notification, i: usize, options: &DecodeOptions) -> Decoded {
    let field = format!("notifications[{i}].payload");
    let reject = |reason: String| {
        Rejection::decode(
            &options.file,
            i as u64 + 1,
            Some(&field),
            reason,
            &String::from_utf8_lossy(&n.payload),
        )
    };
    let value = n.number().ok_or_else(|| {
        reject(format!(
            "the payload {:?} is not a number",
            String::from_utf8_lossy(&n.payload)
        ))
    })?;
    let measure = match &options.measure {
        Some(m) => m.clone(),
        None => n
            .measure()
            .ok_or_else(|| reject(format!("the path {:?} is not an LwM2M resource", n.path)))?,
    };
    let is_button = n.path == BUTTON_PATH;
    let (unit, kind) = if is_button {
        (Unit::Count, Kind::Cumulative)
    } else {
        (Unit::Dimensionless, Kind::Gauge)
    };
    Reading::new(
        n.ep.clone(),
        measure,
        value,
        options.unit.clone().unwrap_or(unit),
        options.kind.unwrap_or(kind),
        options.received_at,
        options.source_or(DEFAULT_SOURCE),
    )
    .map(|r| r.with_tags(options.tags.clone()))
    .map_err(|e| reject(e.to_string()))
}

impl super::Decoder for MbedDecoder {
    fn line(&self) -> u64 {
        self.yielded
    }
}

impl Iterator for MbedDecoder {
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

    fn decode(body: &str) -> Vec<Decoded> {
        MbedDecoder::new(body.as_bytes(), DecodeOptions::new("webhook")).collect()
    }

    #[test]
    fn the_connector_example_decodes() {
        let body = r#"{"notifications":[{"ep":"node-001","path":"/3200/0/5501","ct":"text/plain","payload":"MTI=","max-age":"0"}],"registrations":[]}"#;
        let items = decode(body);
        let r = items[0].as_ref().unwrap();
        assert_eq!(r.meter().as_str(), "node-001");
        assert_eq!(r.measure().as_str(), BUTTON_MEASURE);
        assert_eq!(r.value(), 12.0);
        assert_eq!(r.kind(), Kind::Cumulative);
        let n = &parse_notifications(&serde_json::from_str(body).unwrap(), &Arc::from("b"))[0];
        assert_eq!(n.as_ref().unwrap().max_age, Some(0));
    }

    #[test]
    fn bodies_without_notifications_give_nothing() {
        assert!(decode(r#"{"registrations":[{"ep":"x"}]}"#).is_empty());
    }

    #[test]
    fn malformed_notifications_name_element_and_field() {
        let body = r#"{"notifications":[
            {"ep":"a","path":"/3200/0/5501","payload":"MQ=="},
            {"path":"/3200/0/5501","payload":"MQ=="},
            {"ep":"a","payload":"MQ=="},
            {"ep":"a","path":"/3200/0/5501","payload":"***"},
            {"ep":"a","path":"/3200/0/5501","payload":"aGVsbG8="},
            {"ep":"a","path":"/3200/0/5501"},
            "nope",
            {"ep":"a","path":"/x/y","payload":"MQ=="},
            {"ep":"a","path":"/3303/0/5700","payload":"MjEuNQ=="}
        ]}"#;
        let items = decode(body);
        let bad: Vec<(u64, String, String)> = items
            .iter()
            .filter_map(|i| i.as_ref().err())
            .map(|e| {
                (
                    e.line,
                    e.field.clone().unwrap_or_default(),
                    e.reason.clone(),
                )
            })
            .collect();
        let expect = [
            (2, "notifications[1].ep", "endpoint name is missing"),
            (3, "notifications[2].path", "path is missing"),
            (4, "notifications[3].payload", "not base64"),
            (5, "notifications[4].payload", "\"hello\" is not a number"),
            (6, "notifications[5].payload", "payload is missing"),
            (7, "notifications[6]", "must be an object"),
            (8, "notifications[7].payload", "not an LwM2M resource"),
        ];
        assert_eq!(bad.len(), expect.len(), "{bad:?}");
        for (got, want) in bad.iter().zip(expect) {
            assert_eq!((got.0, got.1.as_str()), (want.0, want.1));
            assert!(got.2.contains(want.2), "{got:?}");
        }
        let last = items[8].as_ref().unwrap();
        assert_eq!(last.measure().as_str(), "lwm2m_3303_0_5700");
        assert_eq!(last.value(), 21.5);
    }

    #[test]
    fn unreadable_bodies_are_fatal() {
        for body in ["not json", "[1]", r#"{"notifications": 5}"#] {
            let items = decode(body);
            assert_eq!(items.len(), 1, "{body}");
            assert!(items[0].as_ref().unwrap_err().is_fatal(), "{body}");
        }
    }
}
