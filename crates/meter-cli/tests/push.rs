//! Push ingestion into `meter serve`: the InfluxDB write routes, exercised by raw requests and
//! by the official InfluxDB 2 Python client.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use support::{get_json, http, push_python, Server, TOKEN};

fn write(server: &Server, path: &str, auth: &[(&str, &str)], body: &str) -> (u16, Value) {
    let (status, text) = http(&server.addr, "POST", path, auth, body);
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"))
    };
    (status, v)
}

fn daily(server: &Server, meter: &str, measure: &str, from: &str, to: &str) -> Vec<(String, f64)> {
    let v = get_json(
        &server.addr,
        &format!("/v1/meters/{meter}/daily?from={from}&to={to}&measure={measure}"),
    );
    v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["date"].as_str().unwrap().to_owned(),
                b["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn line_protocol_writes_land_partially_with_the_bad_lines_named() {
    let server = Server::start(true);
    let token = format!("Token {TOKEN}");
    let body = "water,meter=W1,unit=L,kind=interval used=2 1717200000\n\
                water,meter=W1,unit=L,kind=interval used=3 1717203600\n\
                water,meter=W1 state=\"open\" 1717203600\n\
                water used=1 1717203600\n\
                water,meter=W1,unit=L,kind=interval used=5 1717290000\n";
    let path = "/api/v2/write?org=home&bucket=meters&precision=s";

    // No credential, a wrong one, the bearer of the read API for the 1.x route's `p`.
    assert_eq!(write(&server, path, &[], body).0, 401);
    assert_eq!(
        write(&server, path, &[("Authorization", "Token nope")], body).0,
        401
    );

    let (status, v) = write(&server, path, &[("Authorization", &token)], body);
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "invalid");
    assert_eq!(v["stored"], 3);
    let lines: Vec<u64> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4]);
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("line 3 [state]"), "{message}");
    assert!(
        message.contains("line 4: the point names no meter"),
        "{message}"
    );

    // The same body again stores nothing twice; the 1.x route takes `p` or Basic auth.
    let v1 = format!("/write?db=meters&precision=s&u=any&p={TOKEN}");
    assert_eq!(write(&server, &v1, &[], body).0, 400);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("someone:{TOKEN}"))
    );
    let good: String = body
        .lines()
        .filter(|l| !l.contains("state") && l.contains("meter="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        write(
            &server,
            "/write?db=x&precision=s",
            &[("Authorization", &basic)],
            &good
        )
        .0,
        204
    );
    assert_eq!(
        daily(&server, "W1", "water.used", "2024-06-01", "2024-06-02"),
        vec![("2024-06-01".into(), 5.0), ("2024-06-02".into(), 5.0)]
    );

    // A point without a unit joins its stored series (litres, interval) instead of clashing.
    let (status, v) = write(
        &server,
        path,
        &[("Authorization", &token)],
        "water,meter=W1 used=4 1717293600\n",
    );
    assert_eq!(status, 204, "{v}");
    assert_eq!(
        daily(&server, "W1", "water.used", "2024-06-02", "2024-06-02"),
        vec![("2024-06-02".into(), 9.0)]
    );

    // The rejected lines are kept with their reasons.
    let quarantine =
        std::fs::read_to_string(server.dir.path().join("meter.db.quarantine.jsonl")).unwrap();
    let kept: Vec<Value> = quarantine
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 4, "two bad lines, written twice");
    assert_eq!(kept[0]["file"], "write");
    assert_eq!(kept[0]["line"], 3);
    assert!(kept[0]["raw"].as_str().unwrap().contains("state=\"open\""));
}

#[test]
fn the_influxdb_python_client_writes_100000_points_and_daily_sums_read_back() {
    let Some(python) = push_python() else {
        return;
    };
    let (meters, points) = (100u64, 1_000u64);
    let server = Server::start(true);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/push/influx_write.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .arg(TOKEN)
        .arg(meters.to_string())
        .arg(points.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["points"], meters * points);

    // One answer was a partial write: the second request (the first went twice), naming the
    // three bad lines by their line numbers in that request's body.
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["request"], 2);
    assert_eq!(errors[0]["status"], 400);
    let named: Vec<&Value> = errors[0]["body"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["line"])
        .collect();
    let expected: Vec<&Value> = summary["bad_lines"].as_array().unwrap().iter().collect();
    assert_eq!(named, expected);
    assert_eq!(errors[0]["body"]["stored"], 5_000);

    // Every meter's daily sums, computed here from the script's formula.
    for m in (0..meters).step_by(9) {
        let mut want: BTreeMap<String, f64> = BTreeMap::new();
        for i in 0..points {
            let t = chrono::DateTime::from_timestamp(1_717_200_000 + 300 * i as i64, 0).unwrap();
            let value = ((i * 7 + m) % 11) as f64 / 4.0;
            *want.entry(t.format("%Y-%m-%d").to_string()).or_default() += value;
        }
        let got = daily(
            &server,
            &format!("lp-{m}"),
            "water.used",
            "2024-06-01",
            "2024-06-04",
        );
        let want: Vec<(String, f64)> = want.into_iter().collect();
        assert_eq!(got.len(), want.len(), "meter lp-{m}");
        for ((gd, gv), (wd, wv)) in got.iter().zip(&want) {
            assert_eq!(gd, wd);
            assert!((gv - wv).abs() < 1e-9, "lp-{m} {gd}: {gv} != {wv}");
        }
    }
    let v = get_json(&server.addr, "/v1/meters");
    let listed = v
        .as_array()
        .map_or_else(|| v["meters"].as_array().unwrap().len(), |a| a.len());
    assert_eq!(listed as u64, meters, "no reading of the bad lines landed");
}
