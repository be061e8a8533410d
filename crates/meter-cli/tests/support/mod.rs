//! Helpers shared by the integration tests that run `meter serve` as a process.
#![allow(dead_code)] // reason: each test file uses a different subset of these helpers

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;

pub(crate) const TOKEN: &str = "test-token-7f3a";
pub(crate) const HOOK: &str = "hook-secret-19";

pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The daily sums of the example wide CSV, computed from the file itself.
pub(crate) fn wide_sums(meter: &str) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(examples().join("consumption-wide.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| l.starts_with(meter))
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let sum: f64 = cells[2..].iter().map(|c| c.parse::<f64>().unwrap()).sum();
            assert_eq!(cells.len(), 50);
            (cells[1].to_owned(), sum)
        })
        .collect()
}

/// Asserts a command succeeded, showing what it wrote to stderr when it did not.
pub(crate) fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `meter import --json FILE` into `store` where some rows are rejected: asserts the partial
/// exit code (3) and answers the summary and the quarantine's lines.
pub(crate) fn partial_import(store: &Path, file: &Path) -> (Value, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .arg("--store")
        .arg(store)
        .args(["import", "--json"])
        .arg(file)
        .env_remove("METER_TZ")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let quarantine = std::fs::read_to_string(summary["quarantine"].as_str().unwrap()).unwrap();
    let lines = quarantine
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, lines)
}

/// `meter query daily METER` with these after it gives the example wide CSV's days as JSON.
pub(crate) const EXAMPLE_DAYS: [&str; 6] = [
    "--from",
    "2024-03-01",
    "--to",
    "2024-03-03",
    "--format",
    "json",
];

/// The (date, value) pairs of `meter query daily --format json`, each day a sum.
pub(crate) fn daily_sums(days: &Value) -> Vec<(String, f64)> {
    days.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["rule"], "sum");
            (
                d["date"].as_str().unwrap().to_owned(),
                d["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) lines: BufReader<ChildStdout>,
    pub(crate) addr: String,
    pub(crate) drop: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test must not leave a server running (it would hold the test's output open).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn start(auth: bool) -> Self {
        Self::start_with(auth, None, &[])
    }

    /// Starts on a given store with extra environment variables.
    pub(crate) fn start_with(auth: bool, store: Option<&Path>, env: &[(&str, &str)]) -> Self {
        Self::launch(auth, store, env, false, &[])
    }

    /// Starts on a given store with extra `meter serve` flags.
    pub(crate) fn start_args(auth: bool, store: Option<&Path>, args: &[&str]) -> Self {
        Self::launch(auth, store, &[], false, args)
    }

    /// Starts as the unprivileged user `nobody` when the tests run as root (as CI does), so
    /// file permissions apply to the server as they do on a user's machine.
    pub(crate) fn start_unprivileged() -> Self {
        Self::launch(false, None, &[], true, &[])
    }

    fn launch(
        auth: bool,
        store: Option<&Path>,
        env: &[(&str, &str)],
        unprivileged: bool,
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let drop = dir.path().join("drop");
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let mut cmd = if unprivileged && root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_meter"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_meter"))
        };
        let store = store.map_or_else(|| dir.path().join("meter.db"), Path::to_path_buf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["--store"])
            .arg(store)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--scan-every",
                "100ms",
                "--drop",
            ])
            .arg(&drop)
            .args(extra)
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
            dir,
        }
    }

    /// Reads printed lines until one starts with `prefix`.
    pub(crate) fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            let line = read_line(&mut self.lines);
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Puts a file at `rel` in the drop folder the way a careful uploader does: written under a
    /// name the server ignores, then renamed.
    pub(crate) fn drop_file(&self, src: &Path, rel: &Path) {
        let target = self.drop.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let part = target.with_extension("part");
        std::fs::copy(src, &part).unwrap();
        std::fs::rename(&part, &target).unwrap();
    }

    pub(crate) fn stop(&mut self) {
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

pub(crate) fn read_line(r: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    let n = r.read_line(&mut line).unwrap();
    assert!(n > 0, "the server exited");
    line.trim_end().to_owned()
}

/// A minimal HTTP/1.1 exchange (the test needs no HTTP client crate).
pub(crate) fn http(
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

pub(crate) fn get_json(addr: &str, path: &str) -> Value {
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

/// The Python that has the push clients (`influxdb-client`, `paho-mqtt`): scripts/test.sh makes
/// a virtualenv and sets this, with METER_REQUIRE_PUSH so CI cannot skip.
pub(crate) fn push_python() -> Option<PathBuf> {
    match std::env::var_os("METER_PUSH_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("METER_REQUIRE_PUSH").is_none(),
                "METER_REQUIRE_PUSH is set but METER_PUSH_PYTHON is not"
            );
            eprintln!("skipped: METER_PUSH_PYTHON is not set (scripts/test.sh sets it)");
            None
        }
    }
}
