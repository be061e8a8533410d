//! `meter serve --mqtt`: readings pushed through an MQTT broker.
//!
//! Delivery is at least once and storage exactly once: the client subscribes at QoS 1 under a
//! fixed client id with a persistent session (clean session off), and acknowledges a message
//! only after its readings are committed to the store (or its rejection is in the
//! quarantine). A crash, a kill or a broker restart leaves the unacknowledged messages with
//! the broker, which delivers them again; readings are keyed by (meter, measure, time), so a
//! redelivery stores nothing twice (except bare numbers, stamped at receipt).
//!
//! Two tasks: one polls the connection (and reconnects with backoff, saying so on stderr),
//! one gathers the messages that arrived, writes them in one transaction, quarantines what
//! was refused, and then acknowledges them in the order they came.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use chrono_tz::Tz;
use meter_core::batch::SQLITE_MAX_BATCH;
use meter_core::contract;
use meter_core::decode::mqtt::{
    check_filter, decode_message, Mapping, MappingSpec, DEFAULT_TOPIC_FILTER, MAX_PAYLOAD_BYTES,
};
use meter_core::decode::{CachedSeries, DecodeOptions, KnownSeries};
use meter_core::ingest::{Pipeline, Rejection, Report, Settled};
use meter_core::ports::Quarantine as _;
use meter_store_sqlite::SqliteStore;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, Transport};
use tokio::sync::{mpsc, watch};

use crate::cli::ServeArgs;
use crate::import::{FileQuarantine, Sink, Writer};
use crate::serve::env_opt;

/// Messages written in one transaction at most.
const MAX_ROUND: usize = 8_192;
/// Messages in the channel to the writer.
const QUEUED: usize = 8_192;
/// Messages the connection task holds beyond the channel. It must keep polling the connection
/// while the writer is busy: polling is what sends the writer's acknowledgements and the
/// keep-alive pings, so a connection task that waited for the writer would stall both (the
/// writer waiting to hand over acknowledgements, the broker dropping a silent client). QoS 1
/// keeps at most 65,535 messages unacknowledged (one per packet id), and the broker's in-flight
/// window (`max_inflight_messages`) far fewer, so this bound is not reached in practice.
const MAX_HELD: usize = 65_536;
/// Requests (acknowledgements, subscriptions) queued for the connection task.
const REQUESTS: usize = QUEUED + MAX_ROUND + 64;
/// The keep-alive interval.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A line for the operator on stderr (connection news), flushed at once.
fn tell(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// How to reach the broker and what to read, parsed once from the flags and environment.
pub(crate) struct MqttConfig {
    host: String,
    port: u16,
    tls: Option<Option<Vec<u8>>>,
    topics: Vec<String>,
    client_id: String,
    credentials: Option<(String, String)>,
    mapping: Option<Mapping>,
    zone: Tz,
    /// The URL as given, without credentials, for messages.
    shown: String,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("broker", &self.shown)
            .field("topics", &self.topics)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A client id that is the same on every start with the same store, and at most 23 bytes
/// (the length every MQTT 3.1.1 broker must accept): `meterflow-` and 12 hex digits of an
/// FNV-1a hash of the store's absolute path.
pub(crate) fn default_client_id(store: &Path) -> String {
    let path = std::fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("meterflow-{:012x}", h >> 16)
}

/// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`: (host, port, tls).
fn parse_url(url: &str) -> anyhow::Result<(String, u16, bool)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        bail!("--mqtt {url:?}: write mqtt://HOST[:PORT] or mqtts://HOST[:PORT]");
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') || rest.contains('/') {
        bail!(
            "--mqtt {url:?}: only a host and port; the user and password come from {} and {}",
            contract::ENV_MQTT_USERNAME,
            contract::ENV_MQTT_PASSWORD
        );
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .with_context(|| format!("--mqtt {url:?}: the port {p:?} is not 1-65535"))?;
            (h, port)
        }
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--mqtt {url:?}: the host is missing");
    }
    Ok((host.to_owned(), port, tls))
}

impl MqttConfig {
    /// The configuration `meter serve` was given, if it was given `--mqtt`.
    pub(crate) fn from_args(
        args: &ServeArgs,
        store: &Path,
        zone: Tz,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = args.mqtt.as_deref() else {
            return Ok(None);
        };
        let (host, port, tls) = parse_url(url)?;
        let tls = if tls {
            Some(
                args.mqtt_ca
                    .as_ref()
                    .map(|p| {
                        std::fs::read(p)
                            .with_context(|| format!("--mqtt-ca: cannot read {}", p.display()))
                    })
                    .transpose()?,
            )
        } else {
            if args.mqtt_ca.is_some() {
                bail!("--mqtt-ca is for an mqtts:// broker");
            }
            None
        };
        let topics = if args.mqtt_topics.is_empty() {
            vec![DEFAULT_TOPIC_FILTER.to_owned()]
        } else {
            args.mqtt_topics.clone()
        };
        for t in &topics {
            check_filter(t).map_err(|why| anyhow::anyhow!("--mqtt-topic {t:?}: {why}"))?;
        }
        let client_id = match &args.mqtt_client_id {
            Some(id) if id.is_empty() || id.len() > 65_535 => {
                bail!("--mqtt-client-id must be 1 to 65,535 bytes")
            }
            Some(id) => id.clone(),
            None => default_client_id(store),
        };
        let credentials = match (
            env_opt(contract::ENV_MQTT_USERNAME),
            env_opt(contract::ENV_MQTT_PASSWORD),
        ) {
            (Some(u), p) => Some((u, p.unwrap_or_default())),
            (None, Some(_)) => bail!(
                "{} is set without {}",
                contract::ENV_MQTT_PASSWORD,
                contract::ENV_MQTT_USERNAME
            ),
            (None, None) => None,
        };
        let mapping = args.mqtt_map.as_ref().map(read_mapping).transpose()?;
        Ok(Some(Self {
            shown: format!(
                "{}://{host}:{port}",
                if tls.is_some() { "mqtts" } else { "mqtt" }
            ),
            host,
            port,
            tls,
            topics,
            client_id,
            credentials,
            mapping,
            zone,
        }))
    }

    /// Where it connects, for the operator.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} as {}, topics {}",
            self.shown,
            self.client_id,
            self.topics.join(" ")
        )
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(KEEP_ALIVE)
            .set_clean_session(false)
            .set_manual_acks(true)
            // A topic and its payload fit; the rest of a packet is a few bytes.
            .set_max_packet_size(MAX_PAYLOAD_BYTES + 70_000, 70_000)
            .set_request_channel_capacity(REQUESTS);
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u, p);
        }
        match &self.tls {
            Some(Some(ca)) => {
                o.set_transport(Transport::tls(ca.clone(), None, None));
            }
            Some(None) => {
                o.set_transport(Transport::tls_with_default_config());
            }
            None => {}
        }
        o
    }
}

/// Reads and checks a `--mqtt-map` file.
fn read_mapping(path: &PathBuf) -> anyhow::Result<Mapping> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--mqtt-map: cannot read {}", path.display()))?;
    let spec: MappingSpec = toml::from_str(&text)
        .with_context(|| format!("--mqtt-map {}: not a mapping file", path.display()))?;
    if spec.map.is_empty() {
        bail!("--mqtt-map {}: no [[map]] rules in it", path.display());
    }
    Mapping::new(spec).with_context(|| format!("--mqtt-map {}", path.display()))
}

/// A message and the connection it came on.
struct Arrived {
    publish: Publish,
    connection: u64,
}

/// What the subscriber did, for the line printed when it stops.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    received: AtomicU64,
    redelivered: AtomicU64,
    stored: AtomicU64,
    rejected: AtomicU64,
    connections: AtomicU64,
}

impl Stats {
    pub(crate) fn summary(&self) -> String {
        format!(
            "mqtt: {} messages received ({} flagged by the broker as redelivered), {} readings stored, {} \
             rejected into the quarantine, {} connections",
            self.received.load(Ordering::Relaxed),
            self.redelivered.load(Ordering::Relaxed),
            self.stored.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

/// Runs the subscriber until `stop` turns true; answers what it did.
pub(crate) async fn run(
    config: MqttConfig,
    store: SqliteStore,
    quarantine: Arc<FileQuarantine>,
    stop: watch::Receiver<bool>,
) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let (client, eventloop) = AsyncClient::new(config.options(), REQUESTS);
    let (tx, rx) = mpsc::channel(QUEUED);
    let connection = Arc::new(AtomicU64::new(0));
    let config = Arc::new(config);
    let poller = tokio::spawn(poll_loop(
        config.clone(),
        client.clone(),
        eventloop,
        tx,
        connection.clone(),
        stats.clone(),
        stop.clone(),
    ));
    let known = KnownSeries(Arc::new(CachedSeries::new(KnownSeries(Arc::new(
        store.clone(),
    )))));
    write_loop(
        &config,
        &client,
        rx,
        &store,
        known,
        &quarantine,
        &connection,
        &stats,
        stop,
    )
    .await;
    // Everything taken has been acknowledged (or left for redelivery); a clean disconnect
    // keeps the session, and the broker queues what comes next.
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    stats
}

async fn poll_loop(
    config: Arc<MqttConfig>,
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    tx: mpsc::Sender<Arrived>,
    connection: Arc<AtomicU64>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    let mut connected = false;
    let mut failures = 0u32;
    let mut subscribed = 0usize;
    let mut held: std::collections::VecDeque<Arrived> = std::collections::VecDeque::new();
    loop {
        let event = tokio::select! {
            permit = tx.reserve(), if !held.is_empty() => {
                let Ok(permit) = permit else { return };
                if let Some(a) = held.pop_front() {
                    permit.send(a);
                }
                continue;
            }
            e = eventloop.poll(), if held.len() < MAX_HELD => e,
            _ = stop.changed() => {
                // Flush the disconnect the writer asked for.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while eventloop.poll().await.is_ok() {}
                }).await;
                return;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let n = connection.fetch_add(1, Ordering::SeqCst) + 1;
                stats.connections.fetch_add(1, Ordering::Relaxed);
                connected = true;
                failures = 0;
                backoff = Duration::from_millis(250);
                subscribed = 0;
                tell(&format!(
                    "meter serve: mqtt connected to {} ({}; connection {n})",
                    config.describe(),
                    if ack.session_present {
                        "session resumed"
                    } else {
                        "new session"
                    }
                ));
                // Subscribing again is harmless and adds filters given since the session began.
                for t in &config.topics {
                    if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                        tell(&format!("meter serve: mqtt cannot subscribe to {t}: {e}"));
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                // One SUBSCRIBE per filter, in order, so each answer is for the next filter.
                let t = &config.topics[subscribed % config.topics.len()];
                subscribed += 1;
                match ack.return_codes.first() {
                    Some(rumqttc::SubscribeReasonCode::Success(_)) => crate::serve::say(&format!(
                        "meter serve: mqtt subscribed to {t} (connection {})",
                        connection.load(Ordering::SeqCst)
                    )),
                    _ => tell(&format!(
                        "meter serve: mqtt: the broker refused the subscription to {t} \
                         (check its access control list)"
                    )),
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                if publish.dup {
                    stats.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                let arrived = Arrived {
                    publish,
                    connection: connection.load(Ordering::SeqCst),
                };
                // Handed over without waiting when the writer has room; held otherwise.
                if held.is_empty() {
                    match tx.try_send(arrived) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(a)) => held.push_back(a),
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                } else {
                    held.push_back(arrived);
                }
            }
            Ok(_) => {}
            Err(e) => {
                if *stop.borrow() {
                    return;
                }
                failures += 1;
                if connected || failures == 1 {
                    tell(&format!(
                        "meter serve: mqtt disconnected from {}: {e}; reconnecting",
                        config.shown
                    ));
                } else if failures.is_multiple_of(20) {
                    tell(&format!(
                        "meter serve: mqtt still cannot reach {} after {failures} attempts: {e}",
                        config.shown
                    ));
                }
                connected = false;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    config: &MqttConfig,
    client: &AsyncClient,
    mut rx: mpsc::Receiver<Arrived>,
    store: &SqliteStore,
    known: KnownSeries,
    quarantine: &FileQuarantine,
    connection: &AtomicU64,
    stats: &Stats,
    mut stop: watch::Receiver<bool>,
) {
    let mapping = config.mapping.clone().map(Arc::new);
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = stop.changed() => return,
        };
        let mut round = vec![first];
        while round.len() < MAX_ROUND {
            match rx.try_recv() {
                Ok(m) => round.push(m),
                Err(_) => break,
            }
        }
        let mut options = DecodeOptions::new("mqtt");
        options.zone = config.zone;
        options.received_at = Utc::now();
        options.known = Some(known.clone());
        let messages: Arc<Vec<Publish>> =
            Arc::new(round.iter().map(|a| a.publish.clone()).collect());
        let mut backoff = Duration::from_millis(100);
        let (report, rejected) = loop {
            let (s, o, m, msgs) = (
                store.clone(),
                options.clone(),
                mapping.clone(),
                messages.clone(),
            );
            let written =
                tokio::task::spawn_blocking(move || write_round(&s, &o, m.as_deref(), &msgs)).await;
            // A round can settle nothing (messages without readings); only a failed task or
            // a retryable store error leaves it unacknowledged.
            let (settled, failed) = match written {
                Ok(settled) => (settled, false),
                Err(e) => {
                    tracing::error!(error = %e, "The MQTT write task failed.");
                    (Vec::new(), true)
                }
            };
            let retryable: usize = settled.iter().map(Settled::retryable).sum();
            if retryable == 0 && !failed {
                let mut report = Report::new();
                let mut rejected: Vec<Rejection> = Vec::new();
                for s in settled {
                    rejected.extend(s.rejections().cloned());
                    report.add(s);
                }
                break (report, rejected);
            }
            // The store could not take them now: nothing is acknowledged, and the round is
            // written again (idempotently) until it lands or the server stops, when the broker
            // keeps the messages for the next start.
            tell(&format!(
                "meter serve: mqtt: {} messages could not be stored now; trying again in {:?}",
                round.len(),
                backoff
            ));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        };
        if !rejected.is_empty() {
            if let Err(e) = quarantine.keep(&rejected).await {
                // Not acknowledged: the broker redelivers, and the quarantine is tried again.
                tell(&format!(
                    "meter serve: mqtt: cannot write the quarantine ({e}); the messages are \
                     left with the broker"
                ));
                continue;
            }
        }
        stats
            .stored
            .fetch_add(report.readings_stored, Ordering::Relaxed);
        stats
            .rejected
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
        let now = connection.load(Ordering::SeqCst);
        for a in &round {
            // A message of an earlier connection is delivered again on this one; its
            // packet id may now belong to another message.
            if a.connection == now {
                let _ = client.ack(&a.publish).await;
            }
        }
    }
}

/// Decodes a round of messages and writes it in one transaction; answers the settled batches.
fn write_round(
    store: &SqliteStore,
    options: &DecodeOptions,
    mapping: Option<&Mapping>,
    messages: &[Publish],
) -> Vec<Settled> {
    let mut pipeline = Pipeline::new(SQLITE_MAX_BATCH);
    let mut batches = Vec::new();
    for m in messages {
        let unit = pipeline.begin(&m.topic, 0);
        let mut decoder = decode_message(&m.topic, &m.payload, options, mapping);
        let _ = pipeline.feed(unit, &mut decoder, &mut |b| {
            batches.push(b);
            Ok::<(), ()>(())
        });
        pipeline.end(unit);
    }
    batches.extend(pipeline.flush());
    let mut writer = Writer::new(Some(Sink::Local(store.clone())));
    let mut settled = Vec::new();
    for b in batches {
        settled.extend(writer.write_some(b));
    }
    settled.extend(writer.finish());
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            parse_url("mqtt://localhost").unwrap(),
            ("localhost".into(), 1883, false)
        );
        assert_eq!(
            parse_url("mqtts://broker.example:8884/").unwrap(),
            ("broker.example".into(), 8884, true)
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1884").unwrap(),
            ("::1".into(), 1884, false)
        );
        assert!(parse_url("tcp://x").is_err());
        assert!(parse_url("mqtt://user:pw@x").is_err());
        assert!(parse_url("mqtt://x:0").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
    }

    #[test]
    fn the_default_client_id_is_stable_and_short() {
        let a = default_client_id(Path::new("/tmp/a/meter.db"));
        assert_eq!(a, default_client_id(Path::new("/tmp/a/meter.db")));
        assert_ne!(a, default_client_id(Path::new("/tmp/b/meter.db")));
        assert!(a.len() <= 23, "{a}");
    }
}
