//! `meter serve` as a process: files dropped in its folder are read back over HTTP, the webhook
//! counts, the page renders in headless Chromium, and Ctrl-C stops it cleanly. The tests wait on
//! the lines the server prints, not on time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;

const TOKEN: &str = "test-token-7f3a";
const HOOK: &str = "hook-secret-19";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

struct Server {
    child: Child,
    lines: BufReader<ChildStdout>,
    addr: String,
    drop: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test must not leave a server running (it would hold the test's output open).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(auth: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let drop = dir.path().join("drop");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
        cmd.args(["--store"])
            .arg(dir.path().join("meter.db"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--scan-every",
                "100ms",
                "--drop",
            ])
            .arg(&drop)
            .env_remove("METER_API_TOKEN_FILE")
            .env_remove("METER_TZ")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if auth {
            cmd.env("METER_API_TOKEN", TOKEN)
                .env("METER_WEBHOOK_SECRET", HOOK);
        } else {
            cmd.arg("--no-auth");
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let first = read_line(&mut lines);
        let addr = first
            .strip_prefix("meter serve: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Self {
            child,
            lines,
            addr,
            drop,
            _dir: dir,
        }
    }

    /// Reads printed lines until one starts with `prefix`.
    fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            let line = read_line(&mut self.lines);
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Puts a file at `rel` in the drop folder the way a careful uploader does: written under a
    /// name the server ignores, then renamed.
    fn drop_file(&self, src: &Path, rel: &Path) {
        let target = self.drop.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let part = target.with_extension("part");
        std::fs::copy(src, &part).unwrap();
        std::fs::rename(&part, &target).unwrap();
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        self.wait_for("meter serve: stopped");
        assert!(self.child.wait().unwrap().success());
    }
}

fn read_line(r: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    let n = r.read_line(&mut line).unwrap();
    assert!(n > 0, "the server exited");
    line.trim_end().to_owned()
}

/// A minimal HTTP/1.1 exchange (the test needs no HTTP client crate).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = http(
        addr,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn dropped_files_are_served_and_the_webhook_counts() {
    let mut server = Server::start(true);
    let mut names = Vec::new();
    let mut stack = vec![examples()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(examples()).unwrap().to_path_buf();
                server.drop_file(&p, &rel);
                names.push(rel);
            }
        }
    }
    let bad = server._dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "meter,time,value\nq,2024-01-01T00:00:00Z,1\nq,nope,2\n",
    )
    .unwrap();
    server.drop_file(&bad, Path::new("bad.csv"));
    let mut done = Vec::new();
    for _ in 0..names.len() + 1 {
        done.push(server.wait_for("imported "));
    }
    let bad_line = done
        .iter()
        .find(|l| l.starts_with("imported bad.csv"))
        .unwrap();
    assert!(bad_line.ends_with("-> quarantine/bad.csv"), "{bad_line}");
    assert!(server.drop.join("quarantine/bad.csv.errors.json").is_file());
    for n in &names {
        assert!(
            server.drop.join("done").join(n).is_file(),
            "{} not in done/",
            n.display()
        );
    }

    let addr = server.addr.clone();
    let meters = get_json(&addr, "/v1/meters");
    let ids: Vec<&str> = meters["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect();
    for id in [
        "EX00101",
        "EX00102",
        "flat-cold",
        "garage",
        "pool",
        "sst-1101",
        "button-hall",
        "q",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // Seed 004's route gives the row's total.
    let csv = std::fs::read_to_string(examples().join("consumption-wide.csv")).unwrap();
    let row = csv
        .lines()
        .find(|l| l.starts_with("EX00101,2024-03-02"))
        .unwrap();
    let want: i64 = row
        .split(',')
        .skip(2)
        .map(|c| c.parse::<i64>().unwrap())
        .sum();
    let v = get_json(&addr, "/?meterId=EX00101&date=02-03-2024");
    assert_eq!(v["sum"], want);
    assert_eq!(http(&addr, "GET", "/v1/meters", &[], "").0, 401);

    let note = r#"{"notifications":[{"ep":"btn-1","path":"/3200/0/5501","payload":"Mw=="}]}"#;
    let (status, body) = http(
        &addr,
        "PUT",
        "/webhook",
        &[("x-webhook-secret", HOOK)],
        note,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["counted"], 1);
    let (_, body) = http(
        &addr,
        "PUT",
        "/webhook",
        &[("x-webhook-secret", HOOK)],
        note,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["duplicates"],
        1
    );
    assert_eq!(http(&addr, "PUT", "/webhook", &[], note).0, 401);
    server.stop();
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
}

#[test]
fn the_page_renders_every_chart_in_headless_chromium() {
    let Some(browser) = chromium() else {
        // scripts/test.sh installs Chromium and sets this, so CI cannot skip the check.
        assert!(
            std::env::var_os("METER_REQUIRE_CHROMIUM").is_none(),
            "METER_REQUIRE_CHROMIUM is set but no chromium is on PATH"
        );
        eprintln!("skipped: no chromium on PATH (scripts/test.sh installs it)");
        return;
    };
    let mut server = Server::start(false);
    for name in ["consumption-wide.csv", "readings-long.csv"] {
        server.drop_file(&examples().join(name), Path::new(name));
    }
    server.wait_for("imported ");
    server.wait_for("imported ");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{}/ui", server.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8(out.stdout).unwrap();
    let sections: Vec<&str> = dom.split("<section class=\"meter\"").skip(1).collect();
    assert_eq!(sections.len(), 4, "one section per meter");
    for s in sections {
        // Each chart was parsed by the browser into an SVG element with a drawn series and the
        // last value annotated.
        assert!(s.contains("<svg"), "{s}");
        assert!(s.contains("class=\"series\""), "{s}");
        assert!(s.contains("class=\"last\""), "{s}");
    }
    server.stop();
}
