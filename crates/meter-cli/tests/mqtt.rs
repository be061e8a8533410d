//! `meter serve --mqtt` against a real broker (Debian's mosquitto, persistence on) and a
//! publisher that keeps its own session (paho-mqtt at QoS 1): nothing is lost and nothing is
//! stored twice across a broker restart and a SIGKILL of the server.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use support::{push_python, Server};

const COUNT: u64 = 100_000;
const METERS: u64 = 20;
/// The publisher's first timestamp (2024-01-01T00:00Z), as in push/mqtt_publish.py.
const START_MS: i64 = 1_704_067_200_000;

/// The mosquitto binary, or None where it is not installed (scripts/test.sh installs it and
/// sets METER_REQUIRE_PUSH, so CI cannot skip).
fn mosquitto() -> Option<PathBuf> {
    let found = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("METER_REQUIRE_PUSH").is_none(),
            "METER_REQUIRE_PUSH is set but mosquitto is not installed"
        );
        eprintln!("skipped: mosquitto is not installed (scripts/test.sh installs it)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` to a child process.
fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {}", child.id());
}

/// A child's output lines, read on a thread so the pipe never fills.
fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    counting_lines_of(r, "", Arc::default())
}

/// Like `lines_of`, but lines containing `needle` are only counted into `count`.
fn counting_lines_of(
    r: impl std::io::Read + Send + 'static,
    needle: &'static str,
    count: Arc<AtomicU64>,
) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if !needle.is_empty() && line.contains(needle) {
                count.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; panics with the lines seen when the deadline passes.
fn expect_line(rx: &mpsc::Receiver<String>, needle: &str, within: Duration, what: &str) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!("{what}: no line with {needle:?} ({e:?}); saw {seen:#?}"),
        }
    }
}

/// The server's client id, so the broker's log names it.
const SUBSCRIBER: &str = "meterflow-test-sub";
/// What mosquitto's debug log says each time it sends the server a message.
const SENT_TO_SUBSCRIBER: &str = "Sending PUBLISH to meterflow-test-sub ";

/// mosquitto with persistence on and the queue limits a dependable deployment sets (its
/// defaults keep 20 messages in flight and queue 1,000 for an offline client).
struct Broker {
    child: Child,
    _stderr: mpsc::Receiver<String>,
    /// Messages sent to the server, over every run of the broker.
    sent: Arc<AtomicU64>,
    config: PathBuf,
    binary: PathBuf,
}

impl Broker {
    fn start(binary: &Path, dir: &Path, port: u16) -> Self {
        let config = dir.join("mosquitto.conf");
        let data = dir.join("broker");
        std::fs::create_dir_all(&data).unwrap();
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nlog_dest stderr\nlog_type error\nlog_type warning\n\
             log_type notice\nlog_type information\nlog_type debug\nmax_inflight_messages 1000\n\
             max_queued_messages 1000000\n",
            data.display()
        );
        if root {
            // As root it would drop to the `mosquitto` user, who cannot write the test's folder.
            text.push_str("user root\n");
        }
        std::fs::write(&config, text).unwrap();
        Self::launch(binary.to_path_buf(), config, Arc::default())
    }

    fn launch(binary: PathBuf, config: PathBuf, sent: Arc<AtomicU64>) -> Self {
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = counting_lines_of(
            child.stderr.take().unwrap(),
            SENT_TO_SUBSCRIBER,
            sent.clone(),
        );
        expect_line(&stderr, "running", Duration::from_secs(20), "mosquitto");
        Self {
            child,
            _stderr: stderr,
            sent,
            config,
            binary,
        }
    }

    /// Stops it the way a service manager does (SIGTERM: it saves its state) and starts it
    /// again on the same port and state.
    fn restart(mut self) -> Self {
        signal(&self.child, "-TERM");
        assert!(self.child.wait().unwrap().success());
        let (binary, config) = (self.binary.clone(), self.config.clone());
        let sent = self.sent.clone();
        Self::launch(binary, config, sent)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (readings, readings whose value is not what the publisher sent) in the store.
fn stored(store: &Path) -> (u64, u64) {
    let db =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let count: u64 = db
        .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    // Message i is meter M{i % METERS} at START + (i / METERS) minutes with value i / 4.
    let wrong: u64 = db
        .query_row(
            "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series
             WHERE s.measure != 'power'
                OR r.value != (((r.ts - ?1) / 60000) * ?2 + CAST(substr(s.meter, 2) AS INTEGER)) / 4.0",
            rusqlite::params![START_MS, METERS as i64],
            |r| r.get(0),
        )
        .unwrap();
    (count, wrong)
}

fn subscribed(server: &mut Server) {
    server.wait_for("meter serve: mqtt subscribed to meters/#");
}

#[test]
fn qos1_messages_survive_a_broker_restart_and_a_killed_server() {
    let (Some(mosquitto), Some(python)) = (mosquitto(), push_python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Broker::start(&mosquitto, dir.path(), port);
    let url = format!("mqtt://127.0.0.1:{port}");
    let store = dir.path().join("meter.db");
    let args = ["--mqtt", url.as_str(), "--mqtt-client-id", SUBSCRIBER];

    let mut server = Server::start_args(false, Some(&store), &args);
    subscribed(&mut server);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/push/mqtt_publish.py");
    let mut publisher = Command::new(python)
        .arg(script)
        .args([
            port.to_string(),
            COUNT.to_string(),
            METERS.to_string(),
            "meterflow-test-publisher".to_owned(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let published = lines_of(publisher.stdout.take().unwrap());
    let minutes = Duration::from_secs(150);

    expect_line(&published, "acked 20000", minutes, "publisher");
    broker = broker.restart();

    expect_line(&published, "acked 60000", minutes, "publisher");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let (at_kill, wrong) = stored(&store);
    assert!(
        (1..COUNT).contains(&at_kill),
        "the kill came mid-stream: {at_kill} stored"
    );
    assert_eq!(wrong, 0);

    let mut server = Server::start_args(false, Some(&store), &args);
    subscribed(&mut server);
    expect_line(&published, &format!("done {COUNT}"), minutes, "publisher");
    assert!(publisher.wait().unwrap().success());

    // Everything is with the broker now; the server drains it.
    let deadline = Instant::now() + minutes;
    let (count, wrong) = loop {
        let (count, wrong) = stored(&store);
        if count >= COUNT || Instant::now() > deadline {
            break (count, wrong);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(count, COUNT, "{at_kill} stored at the kill");
    assert_eq!(wrong, 0);

    signal(&server.child, "-INT");
    let summary = server.wait_for("meter serve: mqtt:");
    // The broker sent the server more messages than were published: what was in flight to
    // the killed server (and not acknowledged) was delivered again, and stored once.
    let sent = broker.sent.load(Ordering::Relaxed);
    assert!(
        sent > COUNT,
        "no redelivery: the broker sent {sent}; {summary}"
    );
    eprintln!("{COUNT} published, {at_kill} stored at the kill, {sent} sent by the broker");
    server.wait_for("meter serve: stopped");
    assert!(server.child.wait().unwrap().success());
    drop(broker);
}
