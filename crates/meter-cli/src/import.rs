//! `meter import`: files and folders into the store, rejected rows into quarantine.
//!
//! Decoding runs on the calling thread and writing on a second one, joined by a channel of two
//! batches, so a two-core machine decodes the next batch while SQLite commits the last.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use meter_core::batch::{Batcher, Limits, SQLITE_MAX_BATCH};
use meter_core::decode::{decoder, detect, DecodeOptions, Format, Rejected};
use meter_core::ports::{write_all, ReadingWriter, StoreError, WriteReport};
use meter_core::time::parse_zone;
use meter_core::{Kind, MeasureName, MeterId, Reading, Tags, Unit};
use meter_store_sqlite::SqliteStore;
use serde::Serialize;

use crate::cli::{FormatArg, ImportArgs};
use crate::stores::{open_cloud, StoreSpec};
use crate::Outcome;

/// Extensions picked up when walking a folder.
const EXTENSIONS: &[&str] = &["csv", "json", "jsonl", "txt"];

/// What happened to one file.
#[derive(Debug, Default, Serialize)]
pub(crate) struct FileSummary {
    pub(crate) file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<Format>,
    pub(crate) decoded: u64,
    pub(crate) stored: u64,
    pub(crate) rejected: u64,
    pub(crate) not_stored: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The whole import, as printed at the end.
#[derive(Debug, Default, Serialize)]
struct Summary {
    dry_run: bool,
    files: usize,
    files_failed: usize,
    readings_decoded: u64,
    readings_stored: u64,
    rows_rejected: u64,
    readings_not_stored: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine: Option<String>,
    per_file: Vec<FileSummary>,
}

/// One quarantined record: where, why, and the original text.
#[derive(Debug, Serialize)]
struct QuarantineRecord<'a> {
    at: String,
    stage: &'static str,
    file: &'a str,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    reason: &'a str,
    raw: &'a str,
}

/// The quarantine file, opened for appending on the first rejection.
struct Quarantine {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl Quarantine {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            out: None,
            written: 0,
        }
    }

    fn add(&mut self, stage: &'static str, r: &Rejected) -> anyhow::Result<()> {
        if self.out.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| {
                    format!("cannot open the quarantine file {}", self.path.display())
                })?;
            self.out = Some(BufWriter::new(file));
        }
        let record = QuarantineRecord {
            at: Utc::now().to_rfc3339(),
            stage,
            file: &r.file,
            line: r.line,
            field: r.field.as_deref(),
            reason: &r.reason,
            raw: &r.raw,
        };
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, &record)?;
            out.write_all(b"\n")?;
        }
        self.written += 1;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(out) = &mut self.out {
            out.flush().with_context(|| {
                format!("cannot write the quarantine file {}", self.path.display())
            })?;
        }
        Ok(())
    }
}

/// Counts the bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub(crate) fn base_options(args: &ImportArgs) -> anyhow::Result<DecodeOptions> {
    let mut o = DecodeOptions::new("");
    o.zone = parse_zone(&args.tz)?;
    o.time_format = args.time_format.parse().map_err(anyhow::Error::msg)?;
    o.meter = args
        .meter
        .as_deref()
        .map(MeterId::new)
        .transpose()
        .context("--meter")?;
    o.measure = args
        .measure
        .as_deref()
        .map(MeasureName::new)
        .transpose()
        .context("--measure")?;
    o.unit = args
        .unit
        .as_deref()
        .map(Unit::parse)
        .transpose()
        .context("--unit")?;
    o.kind = args
        .kind
        .as_deref()
        .map(str::parse::<Kind>)
        .transpose()
        .context("--kind")?;
    let mut tags = Tags::empty();
    for t in &args.tags {
        let (k, v) = t
            .split_once('=')
            .with_context(|| format!("--tag {t:?}: write KEY=VALUE"))?;
        tags = tags
            .with(k.trim(), v.trim())
            .with_context(|| format!("--tag {t:?}"))?;
    }
    o.tags = tags;
    Ok(o)
}

fn forced_format(f: FormatArg) -> Option<Format> {
    match f {
        FormatArg::Auto => None,
        FormatArg::WideCsv => Some(Format::WideCsv),
        FormatArg::LongCsv => Some(Format::LongCsv),
        FormatArg::PiJson => Some(Format::PiJson),
        FormatArg::Mbed => Some(Format::Mbed),
        FormatArg::Sst => Some(Format::SstCounters),
    }
}

/// The files to import: named files as they are, folders walked (sorted, hidden entries
/// skipped) for known extensions. Paths that do not exist are reported, not fatal.
fn collect_files(paths: &[PathBuf], missing: &mut Vec<FileSummary>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out, missing);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            missing.push(FileSummary {
                file: p.display().to_string(),
                error: Some("no such file or folder".into()),
                ..FileSummary::default()
            });
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<FileSummary>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(FileSummary {
                file: dir.display().to_string(),
                error: Some(format!("cannot list the folder: {e}")),
                ..FileSummary::default()
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out, problems);
        } else if p.extension().is_some_and(|e| {
            EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
        }) {
            out.push(p);
        }
    }
}

/// A batch of one file's readings, on its way to the writer thread.
struct Batch {
    file: usize,
    readings: Vec<Reading>,
}

/// What the writer thread did.
#[derive(Default)]
struct Written {
    stored: Vec<u64>,
    failures: Vec<(usize, Reading, String)>,
    error: Option<String>,
}

/// Where the writer thread puts readings: the local store, or a cloud history store written
/// in its maximum batch size with several requests in flight.
pub(crate) enum Sink {
    Local(SqliteStore),
    Cloud {
        rt: tokio::runtime::Runtime,
        writer: Arc<dyn ReadingWriter>,
    },
}

/// Requests in flight to a cloud store: enough to hide a round trip of tens of milliseconds
/// behind the others, few enough not to be throttled on an on-demand table.
const CLOUD_CONCURRENCY: usize = 16;

impl Sink {
    fn write_batch(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        match self {
            Sink::Local(store) => store.write_batch(readings),
            Sink::Cloud { rt, writer } => {
                rt.block_on(write_all(&**writer, readings, CLOUD_CONCURRENCY))
            }
        }
    }
}

fn writer_thread(store: Sink, files: usize, rx: std::sync::mpsc::Receiver<Batch>) -> Written {
    let mut w = Written {
        stored: vec![0; files],
        ..Written::default()
    };
    for batch in rx {
        if w.error.is_some() {
            // The store failed as a whole; keep draining so the decoder finishes and every
            // unstored reading is counted.
            for r in batch.readings {
                w.failures
                    .push((batch.file, r, "not stored: the store failed earlier".into()));
            }
            continue;
        }
        match store.write_batch(&batch.readings) {
            Ok(report) => {
                w.stored[batch.file] += report.written as u64;
                let mut readings: Vec<Option<Reading>> =
                    batch.readings.into_iter().map(Some).collect();
                for f in report.failures {
                    if let Some(r) = readings.get_mut(f.index).and_then(Option::take) {
                        w.failures.push((batch.file, r, f.reason));
                    }
                }
            }
            Err(e) => {
                let reason = format!("not stored: {e}");
                w.error = Some(e.to_string());
                for r in batch.readings {
                    w.failures.push((batch.file, r, reason.clone()));
                }
            }
        }
    }
    w
}

fn progress_bar(args: &ImportArgs, total: u64) -> ProgressBar {
    let visible = !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !visible {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Decodes one file: full batches of readings go to `batch`, rejected records to `reject`.
/// Problems with the file itself (unreadable, unknown format) are in the summary's `error`;
/// only a failing `batch` or `reject` ends it with an error.
pub(crate) fn decode_file(
    path: &Path,
    format: Option<Format>,
    base: &DecodeOptions,
    read_bytes: Option<&Arc<AtomicU64>>,
    batch: &mut dyn FnMut(Vec<Reading>) -> anyhow::Result<()>,
    reject: &mut dyn FnMut(Rejected) -> anyhow::Result<()>,
) -> anyhow::Result<FileSummary> {
    let name = path.display().to_string();
    let mut fs = FileSummary {
        file: name.clone(),
        ..FileSummary::default()
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            fs.error = Some(format!("cannot open {name}: {e}"));
            return Ok(fs);
        }
    };
    let count = read_bytes.cloned().unwrap_or_default();
    let mut reader = BufReader::with_capacity(256 * 1024, Counting { inner: file, count });
    let format = match format {
        Some(f) => Ok(f),
        None => match reader.fill_buf() {
            Ok(head) => detect(&name, head),
            Err(e) => Err(format!("cannot read {name}: {e}")),
        },
    };
    let format = match format {
        Ok(f) => f,
        Err(e) => {
            fs.error = Some(e);
            return Ok(fs);
        }
    };
    fs.format = Some(format);
    let mut options = base.clone();
    options.file = Arc::from(name.as_str());
    options.received_at = Utc::now();
    let mut batcher = Batcher::new(Limits::items(SQLITE_MAX_BATCH));
    for item in decoder(format, reader, options) {
        match item {
            Ok(r) => {
                fs.decoded += 1;
                if let Some(full) = batcher.push(r) {
                    batch(full)?;
                }
            }
            Err(rejected) => {
                fs.rejected += 1;
                if rejected.is_fatal() {
                    fs.error = Some(rejected.reason.clone());
                }
                reject(rejected)?;
            }
        }
    }
    if let Some(rest) = batcher.finish() {
        batch(rest)?;
    }
    Ok(fs)
}

pub(crate) fn run(spec: &StoreSpec, args: ImportArgs) -> anyhow::Result<Outcome> {
    let base = base_options(&args)?;
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    let mut problems = Vec::new();
    let files = collect_files(&args.paths, &mut problems);
    if files.is_empty() && problems.is_empty() {
        bail!("no .csv, .json, .jsonl or .txt files found in the given paths");
    }
    let store = if args.dry_run {
        None
    } else if let StoreSpec::Local(path) = spec {
        Some(Sink::Local(SqliteStore::open(path)?))
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let cloud = rt
            .block_on(open_cloud(spec))?
            .context("a cloud store was expected")?;
        Some(Sink::Cloud {
            rt,
            writer: cloud.writer,
        })
    };
    let quarantine_path = args
        .quarantine
        .clone()
        .unwrap_or_else(|| spec.default_quarantine());
    let mut quarantine = (!args.dry_run).then(|| Quarantine::new(quarantine_path));
    let mut shown_rejections = 0usize;

    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(&args, total_bytes);
    let read_bytes = Arc::new(AtomicU64::new(0));

    let (tx, rx) = sync_channel::<Batch>(2);
    let writer = store.map(|s| {
        let n = files.len();
        std::thread::spawn(move || writer_thread(s, n, rx))
    });
    let send = |batch: Batch| -> anyhow::Result<()> {
        if writer.is_some() {
            tx.send(batch)
                .map_err(|_| anyhow::anyhow!("the store writer stopped unexpectedly"))?;
        }
        Ok(())
    };

    for (index, path) in files.iter().enumerate() {
        bar.set_message(path.display().to_string());
        let mut reject = |rejected: Rejected| -> anyhow::Result<()> {
            match &mut quarantine {
                Some(q) => q.add("decode", &rejected)?,
                None if shown_rejections < 20 => {
                    shown_rejections += 1;
                    bar.suspend(|| eprintln!("rejected: {rejected}"));
                }
                None => {}
            }
            Ok(())
        };
        let mut batch = |readings: Vec<Reading>| -> anyhow::Result<()> {
            send(Batch {
                file: index,
                readings,
            })?;
            bar.set_position(read_bytes.load(Ordering::Relaxed));
            Ok(())
        };
        let fs = decode_file(
            path,
            forced_format(args.format),
            &base,
            Some(&read_bytes),
            &mut batch,
            &mut reject,
        )?;
        bar.set_position(read_bytes.load(Ordering::Relaxed));
        summary.per_file.push(fs);
    }
    drop(tx);
    bar.finish_and_clear();

    if let Some(handle) = writer {
        let written = handle
            .join()
            .map_err(|_| anyhow::anyhow!("the store writer panicked"))?;
        for (fs, stored) in summary.per_file.iter_mut().zip(&written.stored) {
            fs.stored = *stored;
        }
        for (file, reading, reason) in &written.failures {
            let fs = &mut summary.per_file[*file];
            fs.not_stored += 1;
            if let Some(q) = &mut quarantine {
                let raw = serde_json::to_string(reading).unwrap_or_default();
                let r = Rejected {
                    file: Arc::from(fs.file.as_str()),
                    line: 0,
                    field: None,
                    reason: reason.clone(),
                    raw,
                };
                q.add("store", &r)?;
            }
        }
        if let Some(e) = written.error {
            if let Some(f) = summary.per_file.iter_mut().rev().find(|f| f.not_stored > 0) {
                f.error
                    .get_or_insert_with(|| format!("the store failed: {e}"));
            }
        }
    }
    if let Some(q) = &mut quarantine {
        q.finish()?;
        if q.written > 0 {
            summary.quarantine = Some(q.path.display().to_string());
        }
    }

    summary.per_file.extend(problems);
    summary.files = summary.per_file.len();
    summary.files_failed = summary
        .per_file
        .iter()
        .filter(|f| f.error.is_some() && f.decoded == 0)
        .count();
    for f in &summary.per_file {
        summary.readings_decoded += f.decoded;
        summary.readings_stored += f.stored;
        summary.rows_rejected += f.rejected;
        summary.readings_not_stored += f.not_stored;
    }
    print_summary(&summary, args.json)?;

    let landed = if args.dry_run {
        summary.readings_decoded
    } else {
        summary.readings_stored
    };
    let problems =
        summary.rows_rejected + summary.readings_not_stored + summary.files_failed as u64;
    Ok(if problems == 0 {
        Outcome::Success
    } else if landed > 0 {
        Outcome::Partial
    } else {
        Outcome::Failure
    })
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, s)?;
        writeln!(out)?;
        return Ok(());
    }
    for f in &s.per_file {
        let format = f.format.map_or("-".to_owned(), |f| f.to_string());
        write!(
            out,
            "{}: {format}, {} decoded, {} stored, {} rejected",
            f.file,
            f.decoded,
            if s.dry_run {
                "-".to_owned()
            } else {
                f.stored.to_string()
            },
            f.rejected
        )?;
        if f.not_stored > 0 {
            write!(out, ", {} not stored", f.not_stored)?;
        }
        if let Some(e) = &f.error {
            write!(out, " ({e})")?;
        }
        writeln!(out)?;
    }
    let verb = if s.dry_run {
        "would be stored (dry run)"
    } else {
        "stored"
    };
    let landed = if s.dry_run {
        s.readings_decoded
    } else {
        s.readings_stored
    };
    writeln!(
        out,
        "files: {} ({} failed), readings {verb}: {landed}, rows rejected: {}{}",
        s.files,
        s.files_failed,
        s.rows_rejected,
        if s.readings_not_stored > 0 {
            format!(", readings not stored: {}", s.readings_not_stored)
        } else {
            String::new()
        }
    )?;
    if let Some(q) = &s.quarantine {
        writeln!(out, "rejected rows are kept in {q}")?;
    }
    Ok(())
}
