//! `meter serve`: the whole product on one machine, over the SQLite store. The API and page
//! (meter-api's router), the webhook counting into SQLite, a drop folder instead of S3, and a
//! timer instead of EventBridge for collecting registry entries from their sources.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use chrono::Utc;
use chrono_tz::Tz;
use meter_api::{router, ApiState, AuthConfig, PushState, Secret};
use meter_core::batch::SQLITE_MAX_BATCH;
use meter_core::collect::{collect_all, Source};
use meter_core::contract;
use meter_core::decode::{DecodeOptions, KnownSeries};
use meter_core::ingest::{Batch, Pipeline, Report, MAX_LISTED};
use meter_core::time::parse_zone;
use meter_store_sqlite::SqliteStore;
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::import::{feed_file, FileQuarantine, Sink, Writer};
use crate::Outcome;

/// Parses `500ms`, `30s`, `10m`, `1h`.
fn duration(text: &str, flag: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().with_context(|| {
        format!("--{flag} {text:?}: write a number and a unit, such as 30s or 10m")
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!("--{flag} {text:?}: the unit must be ms, s, m or h"),
    };
    if d.is_zero() {
        bail!("--{flag} must be more than zero");
    }
    Ok(d)
}

pub(crate) fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The secrets, from the environment (or the token file), never printed.
fn auth_config(no_auth: bool) -> anyhow::Result<AuthConfig> {
    if no_auth {
        return Ok(AuthConfig::disabled());
    }
    let token = match (
        env_opt(contract::ENV_API_TOKEN),
        env_opt(contract::ENV_API_TOKEN_FILE),
    ) {
        (Some(t), _) => Some(t),
        (None, Some(file)) => Some(
            std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read {file}", contract::ENV_API_TOKEN_FILE))?,
        ),
        (None, None) => None,
    };
    let Some(api_token) = token.as_deref().and_then(Secret::new) else {
        bail!(
            "set {} (or {}) to the API token clients will send, or pass --no-auth",
            contract::ENV_API_TOKEN,
            contract::ENV_API_TOKEN_FILE
        );
    };
    Ok(AuthConfig {
        enabled: true,
        api_token: Some(api_token),
        seed003_token: env_opt(contract::ENV_SEED003_TOKEN)
            .as_deref()
            .and_then(Secret::new),
        webhook_secret: env_opt(contract::ENV_WEBHOOK_SECRET)
            .as_deref()
            .and_then(Secret::new),
        write_token: env_opt(contract::ENV_WRITE_TOKEN)
            .as_deref()
            .and_then(Secret::new),
    })
}

/// The quarantine of everything pushed to the server: next to the store, as for imports.
fn quarantine_path(store: &Path) -> PathBuf {
    crate::stores::StoreSpec::Local(store.to_path_buf()).default_quarantine()
}

/// A line for the operator (and for tests, which wait on these lines rather than on time).
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub(crate) async fn run(store_path: &Path, args: ServeArgs) -> anyhow::Result<Outcome> {
    let auth = auth_config(args.no_auth)?;
    let zone = match args.tz.clone().or_else(|| env_opt(contract::ENV_TZ)) {
        Some(z) => parse_zone(&z).context("--tz")?,
        None => Tz::UTC,
    };
    let mqtt = crate::mqtt::MqttConfig::from_args(&args, store_path, zone)?;
    let scan = duration(&args.scan_every, "scan-every")?;
    let settle = duration(&args.settle, "settle")?;
    let every = duration(&args.collect_every, "collect-every")?;
    let store = SqliteStore::open(store_path)?;
    // Days are stored in the zone the server answers in when the registry names none.
    let rebuilt = store.set_default_zone(zone)?;
    if rebuilt > 0 {
        say(&format!(
            "meter serve: stored the rollups of {rebuilt} series in {} days",
            zone.name()
        ));
    }
    let drop_dir = args.drop.clone().unwrap_or_else(|| {
        store_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("drop")
    });
    for sub in ["", contract::DROP_DONE_DIR, contract::DROP_QUARANTINE_DIR] {
        let d = drop_dir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }

    // Watching starts before the server says it listens, so no file dropped after that line
    // escapes the close-write events.
    let writes = Writes::watch(&drop_dir);

    let shared = Arc::new(store.clone());
    let quarantine = Arc::new(FileQuarantine::new(quarantine_path(store_path)));
    let state = ApiState {
        readings: shared.clone(),
        forecasts: shared.clone(),
        registry: Some(shared.clone()),
        counters: shared.clone(),
        push: Some(PushState {
            writer: shared.clone(),
            quarantine: quarantine.clone(),
            known: Some(KnownSeries(shared.clone())),
            meter_tag: args.meter_tag.clone(),
            catalogue: None,
        }),
        auth,
        default_zone: zone,
        clock: Arc::new(Utc::now),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    say(&format!("meter serve: listening on http://{addr}"));
    say(&format!("meter serve: drop folder {}", drop_dir.display()));
    if !state.auth.enabled {
        say("meter serve: authentication is OFF (--no-auth)");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut base = DecodeOptions::new("");
    base.zone = zone;
    base.encoding = args.encoding;
    let dropper = tokio::spawn(drop_loop(
        store.clone(),
        drop_dir,
        base,
        (scan, settle),
        writes,
        stop_rx.clone(),
    ));
    let (sources, notes) = crate::registry::sources(&store).await;
    for n in notes {
        say(&format!("meter serve: source {n}"));
    }
    let collector = tokio::spawn(collect_loop(store.clone(), sources, every, stop_rx.clone()));
    let subscriber = mqtt.map(|config| {
        say(&format!("meter serve: mqtt {}", config.describe()));
        tokio::spawn(crate::mqtt::run(
            config,
            store.clone(),
            quarantine.clone(),
            stop_rx,
        ))
    });

    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            say("meter serve: stopping");
            let _ = stop_tx.send(true);
        })
        .await
        .context("the server failed")?;
    // The drop folder finishes the file it is importing; nothing is left half-written.
    let _ = dropper.await;
    let _ = collector.await;
    if let Some(subscriber) = subscriber {
        if let Ok(stats) = subscriber.await {
            say(&format!("meter serve: {}", stats.summary()));
        }
    }
    say("meter serve: stopped");
    Ok(Outcome::Success)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Whether a name in the drop folder is a file still being written by a tool that renames it
/// when done, or one to leave alone.
fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with(".part")
        || name.ends_with('~')
}

/// What the kernel said about the drop folder's files since the server started watching:
/// those written to and not closed yet, and those whose writer closed them (or that were renamed
/// into place). A file in neither has an unknown history (it was there, or being written,
/// before the watch began) and waits for `--settle` like on a platform without the events.
#[derive(Clone, Default)]
struct Writes(Arc<std::sync::Mutex<WriteState>>);

#[derive(Default)]
struct WriteState {
    open: HashSet<PathBuf>,
    closed: HashSet<PathBuf>,
}

impl Writes {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Watches `dir` (inotify on Linux); `None` where the platform gives no close-write events.
    fn watch(dir: &Path) -> Option<(Self, notify::RecommendedWatcher)> {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
        use notify::Watcher;
        if !cfg!(target_os = "linux") {
            return None;
        }
        let writes = Self::default();
        let seen = writes.clone();
        // The server's own moves and reports land in done/ and quarantine/: not imports.
        let own = [
            dir.join(contract::DROP_DONE_DIR),
            dir.join(contract::DROP_QUARANTINE_DIR),
        ];
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            let Ok(e) = e else { return };
            let mut state = seen.lock();
            for path in e.paths {
                if own.iter().any(|d| path.starts_with(d)) {
                    continue;
                }
                match e.kind {
                    EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => {
                        state.closed.remove(&path);
                        state.open.insert(path);
                    }
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                        state.open.remove(&path);
                        state.closed.insert(path);
                    }
                    EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => {
                        state.open.remove(&path);
                        if path.exists() {
                            state.closed.insert(path);
                        } else {
                            state.closed.remove(&path);
                        }
                    }
                    _ => {}
                }
            }
        })
        .ok()?;
        watcher.watch(dir, notify::RecursiveMode::Recursive).ok()?;
        Some((writes, watcher))
    }
}

async fn drop_loop(
    store: SqliteStore,
    dir: PathBuf,
    base: DecodeOptions,
    (scan, settle): (Duration, Duration),
    kernel: Option<(Writes, notify::RecommendedWatcher)>,
    mut stop: watch::Receiver<bool>,
) {
    // A file is imported once its writer has closed it (the kernel says so on Linux), or, where
    // it cannot say, once it has stayed unchanged for `settle`; and in both cases only once its
    // size and modification time were the same on two scans. The watcher lives as long as the
    // loop.
    let writes = kernel.as_ref().map(|(w, _)| w.clone());
    let mut seen: HashMap<PathBuf, ((u64, SystemTime), std::time::Instant)> = HashMap::new();
    let mut waiting: HashSet<PathBuf> = HashSet::new();
    // Files imported but not movable to done/ or quarantine/: not read again until they change.
    let mut stuck: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    // Folders that could not be read, said once each (until they can be read again).
    let mut unreadable: HashSet<PathBuf> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(scan) => {}
            _ = stop.changed() => return,
        }
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        if let Err(e) = walk_drop(&dir, &dir, 0, &mut entries, &mut skipped) {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot list the drop folder.");
            continue;
        }
        let now_unreadable: HashSet<PathBuf> = skipped.iter().map(|(p, _)| p.clone()).collect();
        for (path, e) in skipped {
            if !unreadable.contains(&path) {
                say(&format!(
                    "meter serve: skipping {}: {e} (the rest of the drop folder is imported)",
                    path.display()
                ));
            }
        }
        unreadable = now_unreadable;
        entries.sort();
        let mut still_there = HashMap::new();
        for path in entries {
            if *stop.borrow() {
                return;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || ignored(&name) {
                continue;
            }
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let since = match seen.get(&path) {
                Some((s, since)) if *s == stamp => *since,
                _ => {
                    still_there.insert(path, (stamp, std::time::Instant::now()));
                    continue;
                }
            };
            let (open, closed) = writes.as_ref().map_or((false, false), |w| {
                let state = w.lock();
                (state.open.contains(&path), state.closed.contains(&path))
            });
            if open {
                if waiting.insert(path.clone()) {
                    say(&format!(
                        "meter serve: waiting for the writer of {} to close it",
                        path.strip_prefix(&dir).unwrap_or(&path).display()
                    ));
                }
                still_there.insert(path, (stamp, since));
                continue;
            }
            let wait = if closed { Duration::ZERO } else { settle };
            if since.elapsed() < wait || stuck.get(&path) == Some(&stamp) {
                still_there.insert(path, (stamp, since));
                continue;
            }
            waiting.remove(&path);
            let (s, b, p, d) = (store.clone(), base.clone(), path.clone(), dir.clone());
            let read = (stamp, since);
            match tokio::task::spawn_blocking(move || import_dropped(&s, &p, &d, &b, stamp)).await {
                Ok(Ok(Dropped::Moved(line))) => say(&line),
                Ok(Ok(Dropped::Stuck(line))) => {
                    say(&line);
                    stuck.insert(path.clone(), stamp);
                    still_there.insert(path, read);
                }
                Ok(Err(e)) => {
                    say(&format!(
                        "meter serve: could not import {}: {e:#}",
                        path.display()
                    ));
                    still_there.insert(path, read);
                }
                Err(e) => tracing::error!(error = %e, "The import task failed."),
            }
        }
        stuck.retain(|p, _| still_there.contains_key(p));
        // Closed files that are gone (imported and moved) need no more remembering.
        if let Some(w) = &writes {
            w.lock().closed.retain(|p| still_there.contains_key(p));
        }
        seen = still_there;
    }
}

/// The files under the drop folder, subfolders included (an uploader may keep S3-style keys
/// such as `pool/2024/06/01/120000.json`), except `done/` and `quarantine/`. A subfolder that
/// cannot be read goes to `skipped` with its error; only the drop folder itself failing is an
/// error.
fn walk_drop(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<(PathBuf, std::io::Error)>,
) -> std::io::Result<()> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if dir != root => {
            skipped.push((dir.to_path_buf(), e));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for entry in listing {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                skipped.push((dir.to_path_buf(), e));
                continue;
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ignored(&name) {
            continue;
        }
        if path.is_dir() {
            let reserved = dir == root
                && (name == contract::DROP_DONE_DIR || name == contract::DROP_QUARANTINE_DIR);
            if !reserved && depth < 8 {
                walk_drop(root, &path, depth + 1, out, skipped)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// What became of a dropped file that was read whole.
enum Dropped {
    /// Moved to `done/` or `quarantine/`; the line to print.
    Moved(String),
    /// Imported, but it could not be moved; the line to print.
    Stuck(String),
}

/// Imports one dropped file and moves it to `done/`, or to `quarantine/` with a report of what
/// was rejected, keeping its path below the drop folder.
fn import_dropped(
    store: &SqliteStore,
    path: &Path,
    dir: &Path,
    base: &DecodeOptions,
    stamp: (u64, SystemTime),
) -> anyhow::Result<Dropped> {
    let mut writer = Writer::new(Some(Sink::Local(store.clone())));
    let mut report = Report::listing(MAX_LISTED);
    let mut pipeline = Pipeline::new(SQLITE_MAX_BATCH);
    let mut emit = |batch: Batch| -> anyhow::Result<()> {
        for settled in writer.write_some(batch) {
            report.add(settled);
        }
        Ok(())
    };
    feed_file(&mut pipeline, path, None, base, None, &mut emit)?;
    if let Some(rest) = pipeline.flush() {
        emit(rest)?;
    }
    let fs = report
        .per_file
        .pop()
        .context("the pipeline reported no file")?;
    // A file that changed while it was read stays where it is and is read again whole later
    // (readings are idempotent), rather than being moved away with its end missing.
    let after =
        std::fs::metadata(path).map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
    if after.ok() != Some(stamp) {
        anyhow::bail!("it changed while it was read; it will be read again whole");
    }
    let clean = fs.is_clean();
    let sub = if clean {
        contract::DROP_DONE_DIR
    } else {
        contract::DROP_QUARANTINE_DIR
    };
    let rel = path.strip_prefix(dir).unwrap_or(path).to_path_buf();
    let name = rel.display().to_string();
    let mut target = dir.join(sub).join(&rel);
    if target.exists() {
        let file = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.set_file_name(format!("{}.{file}", Utc::now().format("%Y%m%dT%H%M%S%.3f")));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if !clean {
        let mut report_path = target.clone().into_os_string();
        report_path.push(contract::DROP_REPORT_SUFFIX);
        std::fs::write(&report_path, serde_json::to_vec_pretty(&fs)?)
            .with_context(|| format!("cannot write {}", PathBuf::from(&report_path).display()))?;
    }
    if let Err(e) = std::fs::rename(path, &target) {
        return Ok(Dropped::Stuck(format!(
            "imported {name}: {} stored, but it cannot be moved to {}: {e}; it is left in place \
             and read again only if it changes",
            fs.stored,
            target.strip_prefix(dir).unwrap_or(&target).display()
        )));
    }
    Ok(Dropped::Moved(format!(
        "imported {name}: {} stored, {} rejected, {} not stored -> {}",
        fs.stored,
        fs.rejected,
        fs.not_stored,
        target.strip_prefix(dir).unwrap_or(&target).display()
    )))
}

async fn collect_loop(
    store: SqliteStore,
    sources: BTreeMap<String, Arc<dyn Source>>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match collect_all(&store, &sources, &store, &store, Utc::now()).await {
            Ok(report) if report.entries > 0 => {
                say(&format!(
                    "collected {} of {} registry entries: {} readings, {} forecasts, {} failed, {} with no source here",
                    report.collected,
                    report.entries,
                    report.readings_written,
                    report.forecasts_written,
                    report.failed.len(),
                    report.unknown_source.len()
                ));
                for (entry, why) in &report.failed {
                    tracing::warn!(entry = %entry, reason = %why, "Collection failed.");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "Collection round failed."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration("10m", "x").unwrap(), Duration::from_secs(600));
        assert_eq!(duration("250ms", "x").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("2h", "x").unwrap(), Duration::from_secs(7200));
        assert!(duration("0s", "x").is_err());
        assert!(duration("ten", "x").is_err());
        assert!(duration("5d", "x").is_err());
    }

    #[test]
    fn partial_files_are_left_alone() {
        assert!(ignored(".hidden.csv"));
        assert!(ignored("upload.csv.part"));
        assert!(!ignored("readings.csv"));
    }
}
