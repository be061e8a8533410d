//! The `meter` binary end to end: real files in, a real SQLite store, output parsed back.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::{daily_sums, examples, wide_sums, EXAMPLE_DAYS};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store/meter.db")
    }

    fn meter(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_meter"))
            .args(args)
            .env("METER_STORE", self.store())
            .env_remove("METER_TZ")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.meter(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Imports hourly readings of a cumulative water counter from 2024-01-01T00:00Z.
    fn import_counter(&self, meter: &str, values: &[f64]) {
        let mut text = String::from("meter,time,value,unit,measure,kind\n");
        for (h, v) in values.iter().enumerate() {
            text.push_str(&format!(
                "{meter},2024-01-01T0{h}:00:00Z,{v},L,volume,cumulative\n"
            ));
        }
        let file = self.write(&format!("{meter}.csv"), &text);
        self.json(&["import", "--json", file.to_str().unwrap()]);
    }

    /// `meter query KIND METER` over 2024-01-01 as JSON.
    fn on_new_years_day(&self, kind: &str, meter: &str) -> Value {
        let day = [
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-01",
            "--format",
            "json",
        ];
        self.json(&[&["query", kind, meter][..], &day].concat())
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

#[test]
fn importing_the_examples_stores_everything_and_daily_sums_match_the_rows() {
    let env = Env::new();
    let ex = examples();
    let summary = env.json(&["import", "--json", ex.to_str().unwrap()]);
    assert_eq!(summary["files"], 5);
    assert_eq!(summary["rows_rejected"], 0);
    assert_eq!(summary["readings_stored"], summary["readings_decoded"]);
    // 2 meters x 3 days x 48 slots, 48 + 24 long rows, 1 Pi object, 2 notifications, 2 counters.
    assert_eq!(summary["readings_stored"], 288 + 72 + 1 + 2 + 2);

    for meter in ["EX00101", "EX00102"] {
        let days = env.json(&[&["query", "daily", meter][..], &EXAMPLE_DAYS].concat());
        let got = daily_sums(&days);
        assert_eq!(got, wide_sums(meter));
    }

    // Re-importing changes nothing.
    let again = env.json(&["import", "--json", ex.to_str().unwrap()]);
    assert_eq!(again["rows_rejected"], 0);
    let meters = env.json(&["query", "meters", "--format", "json"]);
    // The mbed and SST examples carry no time and are stamped at import, so only the
    // timestamped files are counted here.
    let total: u64 = meters
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["meter"].as_str().unwrap().starts_with("sst-"))
        .filter(|m| !m["meter"].as_str().unwrap().starts_with("button-"))
        .map(|m| m["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 288 + 72 + 1);
}

#[test]
fn cumulative_and_gauge_rollups_say_their_rule() {
    let env = Env::new();
    let long = examples().join("readings-long.csv");
    env.json(&["import", "--json", long.to_str().unwrap()]);
    let water = env.json(&[
        "query",
        "daily",
        "flat-cold",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
        "--format",
        "json",
    ]);
    let text = std::fs::read_to_string(&long).unwrap();
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("flat-cold"))
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(water[0]["rule"], "last_minus_first");
    assert_eq!(water[0]["value"].as_f64().unwrap(), values[23] - values[0]);
    // Day two counts from day one's last reading.
    assert_eq!(water[1]["value"].as_f64().unwrap(), values[47] - values[23]);

    let temp = env.json(&[
        "query",
        "daily",
        "garage",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-01",
        "--format",
        "json",
    ]);
    assert_eq!(temp[0]["rule"], "min_mean_max");
    assert!(temp[0]["min"].as_f64().unwrap() <= temp[0]["value"].as_f64().unwrap());
    assert!(temp[0]["max"].as_f64().unwrap() >= temp[0]["value"].as_f64().unwrap());
}

#[test]
fn bad_rows_are_quarantined_good_rows_land_and_the_exit_code_says_partial() {
    let env = Env::new();
    let file = env.write(
        "mixed.csv",
        "meter,time,value\n\
         a,2024-01-01T00:00:00Z,1\n\
         a,not-a-time,2\n\
         a,2024-01-01T01:00:00Z,zzz\n\
         a,2024-01-01T02:00:00Z,3\n",
    );
    let (summary, lines) = support::partial_import(&env.store(), &file);
    assert_eq!(summary["readings_stored"], 2);
    assert_eq!(summary["rows_rejected"], 2);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 3);
    assert_eq!(lines[0]["field"], "time");
    assert_eq!(lines[0]["raw"], "a,not-a-time,2");
    assert!(lines[0]["file"].as_str().unwrap().ends_with("mixed.csv"));
    assert_eq!(lines[1]["line"], 4);
    assert_eq!(lines[1]["field"], "value");
    assert!(lines[1]["reason"]
        .as_str()
        .unwrap()
        .contains("not a number"));
}

#[test]
fn a_file_of_only_bad_rows_fails_and_a_missing_path_is_reported() {
    let env = Env::new();
    let file = env.write("bad.csv", "meter,when\nx,y\n");
    let out = env.meter(&["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the header lacks time"), "{text}");

    let good = env.write("good.csv", "meter,time,value\na,2024-01-01T00:00:00Z,1\n");
    let missing = env.dir.path().join("nope.csv");
    let out = env.meter(&["import", good.to_str().unwrap(), missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no such file"));
}

#[test]
fn a_bad_zone_is_a_usage_error_and_meter_tz_is_the_default_everywhere() {
    let env = Env::new();
    let file = env.write("local.csv", "meter,time,value\nz,2024-07-01 12:00,1\n");
    let path = file.to_str().unwrap();
    for args in [
        vec!["import", "--tz", "Mars/Olympus", path],
        vec!["query", "daily", "z", "--tz", "Mars/Olympus"],
    ] {
        let out = env.meter(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Mars/Olympus"));
    }
    // The drop folder and queries read METER_TZ; `meter import` does too, so a file lands at
    // the same instants whichever path takes it.
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .args(["import", path])
        .env("METER_STORE", env.store())
        .env("METER_TZ", "Europe/London")
        .output()
        .unwrap();
    support::assert_ok(&out);
    let readings = env.json(&[
        "query",
        "readings",
        "z",
        "--from",
        "2024-07-01T00:00:00Z",
        "--to",
        "2024-07-02T00:00:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(
        readings["readings"][0]["time"], "2024-07-01T11:00:00+00:00",
        "{readings}"
    );
}

#[test]
fn latin1_files_are_refused_until_their_encoding_is_named() {
    let env = Env::new();
    let file = env.dir.path().join("latin1.csv");
    let bytes =
        b"meter,time,value\nZ\xe4hler,2024-01-01T00:00:00Z,1\nZ\xf6hler,2024-01-01T00:00:00Z,2\n";
    std::fs::write(&file, bytes).unwrap();
    let path = file.to_str().unwrap();
    let out = env.meter(&["import", "--json", path]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing may land as a merged meter"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rows_rejected"], 2);
    assert_eq!(
        env.meter(&["import", "--encoding", "ebcdic", path])
            .status
            .code(),
        Some(2)
    );
    let summary = env.json(&["import", "--json", "--encoding", "latin1", path]);
    assert_eq!(summary["readings_stored"], 2);
    let meters = env.json(&["query", "meters", "--format", "json"]);
    let ids: Vec<&str> = meters
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Zähler", "Zöhler"]);
}

#[test]
fn a_readings_query_cut_at_its_limit_says_so() {
    let env = Env::new();
    let mut text = String::from("meter,time,value\n");
    for h in 0..5 {
        text.push_str(&format!("c,2024-01-01T0{h}:00:00Z,{h}\n"));
    }
    let file = env.write("c.csv", &text);
    env.json(&["import", "--json", file.to_str().unwrap()]);
    let query = |limit: &str, format: &str| {
        env.meter(&[
            "query",
            "readings",
            "c",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-01",
            "--limit",
            limit,
            "--format",
            format,
        ])
    };
    let out = query("3", "csv");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 3 readings"));
    let out = query("5", "csv");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = |limit: &str| -> serde_json::Value {
        let out = query(limit, "json");
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let cut = json("3");
    assert_eq!(cut["truncated"], true, "{cut}");
    assert_eq!(cut["limit"], 3, "{cut}");
    assert_eq!(cut["readings"].as_array().unwrap().len(), 3, "{cut}");
    let whole = json("5");
    assert_eq!(whole["truncated"], false, "{whole}");
    assert_eq!(whole["readings"].as_array().unwrap().len(), 5, "{whole}");
}

#[test]
fn a_counter_glitch_adds_nothing_and_is_marked_where_it_is() {
    let env = Env::new();
    env.import_counter(
        "w",
        &[12000.0, 12010.0, 0.0, 12030.0, 12040.0, 12050.0, 12060.0],
    );
    let days = env.on_new_years_day("daily", "w");
    assert_eq!(days[0]["value"], 60.0, "{days}");
    assert_eq!(days[0]["glitches"], 1, "{days}");
    let readings = env.on_new_years_day("readings", "w");
    let marks: Vec<Option<&str>> = readings["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["counter"].as_str())
        .collect();
    assert_eq!(marks, [None, None, Some("glitch"), None, None, None, None]);
    let out = env.meter(&[
        "query",
        "daily",
        "w",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.lines().nth(1).unwrap().contains("1 glitch"), "{csv}");
}

#[test]
fn a_registered_register_size_counts_a_wrap_the_inference_would_call_a_reset() {
    let env = Env::new();
    env.import_counter("r", &[8970.0, 8980.0, 8990.0, 5.0, 15.0, 25.0, 35.0]);
    // Unregistered: 8,990 is not just under a power of ten, so the drop is a reset.
    let days = env.on_new_years_day("daily", "r");
    assert_eq!(days[0]["value"], 20.0 + 5.0 + 30.0, "{days}");
    assert_eq!(days[0]["resets"], 1, "{days}");
    let out = env.meter(&[
        "registry",
        "add",
        "r",
        "--source",
        "csv",
        "--param",
        "register_digits=4",
    ]);
    support::assert_ok(&out);
    let days = env.on_new_years_day("daily", "r");
    assert_eq!(days[0]["value"], 20.0 + 1_015.0 + 30.0, "{days}");
    assert_eq!(days[0]["wraps"], 1, "{days}");
}

#[test]
fn dry_run_validates_without_creating_a_store() {
    let env = Env::new();
    let file = env.write(
        "d.csv",
        "meter,time,value\na,2024-01-01T00:00:00Z,1\na,bad,1\n",
    );
    let out = env.meter(&["import", "--dry-run", "--json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["readings_decoded"], 1);
    assert_eq!(summary["rows_rejected"], 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("d.csv:3 [time]"));
    assert!(!env.store().exists());
}

#[test]
fn forced_format_zone_and_meter_flags_apply() {
    let env = Env::new();
    let file = env.write("temps.txt", "{\"timestamp\": 1704067200, \"celcius\": 5}\n");
    env.json(&[
        "import",
        "--json",
        "--format",
        "pi-json",
        "--meter",
        "shed",
        file.to_str().unwrap(),
    ]);
    let latest = env.json(&["query", "latest", "shed", "--format", "json"]);
    assert_eq!(latest[0]["value"], 5.0);
    assert_eq!(latest[0]["unit"], "degC");

    let csv = env.write("local.csv", "meter,time,value\nm,2024-07-01 08:00,1\n");
    env.json(&[
        "import",
        "--json",
        "--tz",
        "America/New_York",
        csv.to_str().unwrap(),
    ]);
    let rows = env.json(&[
        "query",
        "readings",
        "m",
        "--from",
        "2024-07-01",
        "--to",
        "2024-07-01",
        "--format",
        "json",
    ]);
    assert_eq!(rows["readings"][0]["time"], "2024-07-01T12:00:00+00:00");
}

#[test]
fn queries_fail_clearly() {
    let env = Env::new();
    let out = env.meter(&[
        "query",
        "daily",
        "x",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no store"));

    let file = env.write("g.csv", "meter,time,value\na,2024-01-01T00:00:00Z,1\n");
    env.json(&["import", "--json", file.to_str().unwrap()]);
    let out = env.meter(&[
        "query",
        "daily",
        "nobody",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no readings are stored for meter nobody")
    );
    let out = env.meter(&[
        "query",
        "daily",
        "a",
        "--from",
        "2024-01-05",
        "--to",
        "2024-01-01",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from must not be after --to"));
    let out = env.meter(&[
        "query",
        "daily",
        "a",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
        "--tz",
        "Mars/Base",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an IANA time zone"));
    let out = env.meter(&[
        "query",
        "daily",
        "a",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("period,value,min,max,count,rule,unit,notes")
    );
}
