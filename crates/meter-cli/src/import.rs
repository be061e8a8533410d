//! `meter import`: files and folders into the store, rejected rows into quarantine.
//!
//! The stages are meter-core's ingest pipeline: decoding and batching run on the calling thread,
//! writing, quarantining and counting on a second one, joined by a channel of two batches, so a
//! two-core machine decodes the next batch while SQLite commits the last.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use meter_core::batch::SQLITE_MAX_BATCH;
use meter_core::decode::{self, DecodeOptions, Format, KnownSeries, Rejection};
use meter_core::ingest::{Batch, FileReport, Pipeline, Report, Settled};
use meter_core::ports::{write_all, ReadingWriter, StoreError, WriteReport};
use meter_core::time::parse_zone;
use meter_core::{Kind, MeasureName, MeterId, Reading, Tags, Unit};
use meter_store_sqlite::SqliteStore;
use serde::Serialize;

use crate::cli::{FormatArg, ImportArgs};
use crate::stores::{open_cloud, StoreSpec};
use crate::Outcome;

/// Extensions picked up when walking a folder.
const EXTENSIONS: &[&str] = &["csv", "json", "jsonl", "txt", "lp"];
/// The path that means standard input.
const STDIN: &str = "-";

/// The whole import, as printed at the end: the pipeline's report and where rejections went.
#[derive(Debug, Serialize)]
struct Summary {
    dry_run: bool,
    files: usize,
    #[serde(flatten)]
    report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine: Option<String>,
}

/// One quarantined record: when, then the rejection (stage, where, why, the original text).
#[derive(Debug, Serialize)]
struct QuarantineRecord<'a> {
    at: String,
    #[serde(flatten)]
    rejection: &'a Rejection,
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

    fn add(&mut self, r: &Rejection) -> anyhow::Result<()> {
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
            rejection: r,
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

/// The quarantine file shared by a server's writers (the InfluxDB write routes, MQTT): each
/// call appends its records and flushes them before answering, so a record said to be kept is
/// in the file.
pub(crate) struct FileQuarantine(std::sync::Mutex<Quarantine>);

impl FileQuarantine {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self(std::sync::Mutex::new(Quarantine::new(path)))
    }

    fn keep_sync(&self, rejections: &[Rejection]) -> anyhow::Result<()> {
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in rejections {
            q.add(r)?;
        }
        q.finish()
    }
}

#[async_trait::async_trait]
impl meter_core::ports::Quarantine for FileQuarantine {
    async fn keep(&self, rejections: &[Rejection]) -> Result<(), StoreError> {
        // A few lines appended to a local file: not worth a trip to the blocking pool.
        self.keep_sync(rejections)
            .map_err(|e| StoreError::Unavailable {
                backend: "quarantine",
                message: format!("{e:#}"),
                source: None,
            })
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
    o.encoding = args.encoding;
    o.time_format = args.time_format.parse().context("--time-format")?;
    o.precision = args.precision.parse().context("--precision")?;
    o.meter_tag = args.meter_tag.clone();
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
        FormatArg::LineProtocol => Some(Format::LineProtocol),
    }
}

/// The files to import: named files as they are, folders walked (sorted, hidden entries
/// skipped) for known extensions. Paths that do not exist are reported, not fatal.
fn collect_files(paths: &[PathBuf], missing: &mut Vec<FileReport>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == STDIN {
            out.push(p.clone());
        } else if p.is_dir() {
            walk(p, &mut out, missing);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            missing.push(FileReport::failed(
                p.display().to_string(),
                "no such file or folder",
            ));
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<FileReport>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(FileReport::failed(
                dir.display().to_string(),
                format_args!("cannot list the folder: {e}"),
            ));
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
    /// Writes a batch; answers its outcome and whether everything written so far is durable.
    /// With `open`, the local store keeps its transaction open across batches (see
    /// [`SqliteStore::write_open`]).
    fn write_batch(
        &self,
        readings: &[Reading],
        open: bool,
    ) -> Result<(WriteReport, bool), StoreError> {
        match self {
            Sink::Local(store) if open => {
                store.write_open(readings).map(|w| (w.report, w.committed))
            }
            Sink::Local(store) => store.write_batch(readings).map(|r| (r, true)),
            Sink::Cloud { rt, writer } => rt
                .block_on(write_all(&**writer, readings, CLOUD_CONCURRENCY))
                .map(|r| (r, true)),
        }
    }

    fn commit(&self) -> Result<(), StoreError> {
        match self {
            Sink::Local(store) => store.commit_open(),
            // A cloud store's rollups, recomputed once per series for the whole import.
            Sink::Cloud { rt, writer } => rt.block_on(writer.flush()),
        }
    }
}

/// The write stage: each batch into the store (or nowhere, on a dry run), its rejections into
/// quarantine, its counts into the report.
pub(crate) struct Writer {
    sink: Option<Sink>,
    /// The first error that failed a whole write: later batches are not attempted.
    failed: Option<String>,
    /// Whether the local store's transaction stays open across batches (`meter import`).
    open: bool,
    /// Batches written into the open transaction and not committed yet: counted only once the
    /// commit lands, and as not stored if it does not.
    pending: Vec<Settled>,
}

impl Writer {
    /// A writer that commits every batch (the drop folder shares its store with other writers).
    pub(crate) fn new(sink: Option<Sink>) -> Self {
        Self {
            sink,
            failed: None,
            open: false,
            pending: Vec::new(),
        }
    }

    /// A writer for a one-shot import: the local store commits every
    /// [`meter_store_sqlite::OPEN_COMMIT_ROWS`] readings and at [`Self::finish`].
    pub(crate) fn bulk(sink: Option<Sink>) -> Self {
        Self {
            open: true,
            ..Self::new(sink)
        }
    }

    /// Writes a batch; answers the batches now settled (durable, or lost with a failed commit).
    pub(crate) fn write_some(&mut self, batch: Batch) -> Vec<Settled> {
        let Some(sink) = &self.sink else {
            return vec![batch.dry_run()];
        };
        let result = match &self.failed {
            Some(e) => Err(StoreError::Unavailable {
                backend: "store",
                message: format!("the store failed earlier: {e}"),
                source: None,
            }),
            None => sink.write_batch(batch.readings(), self.open),
        };
        match result {
            Ok((report, durable)) => {
                self.pending.push(batch.settle(Ok(report)));
                if durable {
                    std::mem::take(&mut self.pending)
                } else {
                    Vec::new()
                }
            }
            Err(e) => {
                self.failed.get_or_insert_with(|| e.to_string());
                let mut out = self.lose_pending(&e);
                out.push(batch.settle(Err(e)));
                out
            }
        }
    }

    /// Commits what is still open; answers the batches it settles.
    pub(crate) fn finish(&mut self) -> Vec<Settled> {
        let Some(sink) = &self.sink else {
            return Vec::new();
        };
        match sink.commit() {
            Ok(()) => std::mem::take(&mut self.pending),
            Err(e) => {
                self.failed.get_or_insert_with(|| e.to_string());
                self.lose_pending(&e)
            }
        }
    }

    /// The batches rolled back with a failed write or commit: their readings are counted as
    /// not stored (the source file still holds them; a re-run stores them).
    fn lose_pending(&mut self, e: &StoreError) -> Vec<Settled> {
        let reason = format!("rolled back when the store failed: {e}");
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|s| s.lost(&reason))
            .collect()
    }
}

/// Readings per batch of `meter import` into the local store.
const LOCAL_IMPORT_BATCH: usize = 10_000;

/// Opens one file and runs it through the pipeline, handing full batches to `emit`. A file that
/// cannot be opened or whose format is unknown is recorded as the unit's error.
pub(crate) fn feed_file(
    pipeline: &mut Pipeline,
    path: &Path,
    format: Option<Format>,
    base: &DecodeOptions,
    read_bytes: Option<&Arc<AtomicU64>>,
    emit: &mut dyn FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let stdin = path.as_os_str() == STDIN;
    let name = if stdin {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    };
    let unit = pipeline.begin(&name, 0);
    let file: Box<dyn Read + Send> = if stdin {
        Box::new(std::io::stdin())
    } else {
        match File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                pipeline.fail(unit, format_args!("cannot open {name}: {e}"));
                return Ok(());
            }
        }
    };
    let count = read_bytes.cloned().unwrap_or_default();
    let reader = BufReader::with_capacity(256 * 1024, Counting { inner: file, count });
    let mut options = base.clone();
    options.file = Arc::from(name.as_str());
    options.received_at = Utc::now();
    match decode::open(reader, format, options) {
        Ok((format, mut decoder)) => {
            pipeline.format(unit, format);
            pipeline.feed(unit, &mut *decoder, emit)?;
            pipeline.end(unit);
        }
        Err(e) => pipeline.fail(unit, e),
    }
    Ok(())
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

pub(crate) fn run(spec: &StoreSpec, args: ImportArgs) -> anyhow::Result<Outcome> {
    let base = base_options(&args)?;
    let mut problems = Vec::new();
    let files = collect_files(&args.paths, &mut problems);
    if files.is_empty() && problems.is_empty() {
        bail!("no .csv, .json, .jsonl, .txt or .lp files found in the given paths");
    }
    let mut base = base;
    let sink = if args.dry_run {
        None
    } else if let StoreSpec::Local(path) = spec {
        let store = SqliteStore::open(path)?;
        base.known = Some(KnownSeries(Arc::new(store.clone())));
        Some(Sink::Local(store))
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let cloud = rt
            .block_on(open_cloud(spec))
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
    let quarantine = (!args.dry_run).then(|| Quarantine::new(quarantine_path));

    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(&args, total_bytes);
    let read_bytes = Arc::new(AtomicU64::new(0));

    // The write stage runs on its own thread; on a dry run there is nothing to overlap.
    let stage = WriteStage {
        writer: Writer::bulk(sink),
        quarantine,
        report: Report::new(),
        shown: 0,
    };
    let dry_run = args.dry_run;
    let (tx, rx) = sync_channel::<Batch>(2);
    let (mut inline_stage, writer) = if dry_run {
        (Some(stage), None)
    } else {
        let handle = std::thread::spawn(move || -> anyhow::Result<WriteStage> {
            let mut stage = stage;
            for batch in rx {
                stage.take(batch, None)?;
            }
            stage.finish()?;
            Ok(stage)
        });
        (None, Some(handle))
    };
    // The local store's commits no longer follow batches (see `Writer::bulk`), so its batches
    // only need to amortise the hand-over between threads; smaller ones keep the readings in
    // flight (a batch being decoded, two queued, one being written) to a few megabytes.
    let batch = if matches!(spec, StoreSpec::Local(_)) {
        LOCAL_IMPORT_BATCH
    } else {
        SQLITE_MAX_BATCH
    };
    let mut pipeline = Pipeline::new(batch);
    {
        let mut emit = |batch: Batch| -> anyhow::Result<()> {
            match &mut inline_stage {
                Some(stage) => stage.take(batch, Some(&bar))?,
                None => tx
                    .send(batch)
                    .map_err(|_| anyhow::anyhow!("the store writer stopped unexpectedly"))?,
            }
            bar.set_position(read_bytes.load(Ordering::Relaxed));
            Ok(())
        };
        for path in &files {
            bar.set_message(path.display().to_string());
            feed_file(
                &mut pipeline,
                path,
                forced_format(args.format),
                &base,
                Some(&read_bytes),
                &mut emit,
            )?;
            bar.set_position(read_bytes.load(Ordering::Relaxed));
        }
        if let Some(rest) = pipeline.flush() {
            emit(rest)?;
        }
    }
    drop(tx);
    bar.finish_and_clear();

    let mut stage = match writer {
        Some(handle) => handle
            .join()
            .map_err(|_| anyhow::anyhow!("the store writer panicked"))??,
        None => inline_stage.context("the dry run's write stage is gone")?,
    };
    if let Some(e) = &stage.writer.failed {
        if let Some(f) = stage
            .report
            .per_file
            .iter_mut()
            .rev()
            .find(|f| f.not_stored > 0)
        {
            f.error
                .get_or_insert_with(|| format!("the store failed: {e}"));
        }
    }
    let mut quarantined = None;
    if let Some(q) = &mut stage.quarantine {
        q.finish()?;
        if q.written > 0 {
            quarantined = Some(q.path.display().to_string());
        }
    }
    let mut report = stage.report;
    for p in problems {
        report.push_failed(p);
    }
    let summary = Summary {
        dry_run,
        files: report.per_file.len(),
        report,
        quarantine: quarantined,
    };
    print_summary(&summary, args.json)?;

    let r = &summary.report;
    let landed = if dry_run {
        r.readings_decoded
    } else {
        r.readings_stored
    };
    Ok(if r.problems() == 0 {
        Outcome::Success
    } else if landed > 0 {
        Outcome::Partial
    } else {
        Outcome::Failure
    })
}

/// The write stage of `meter import`, owned by the writer thread (or run inline on a dry run).
struct WriteStage {
    writer: Writer,
    quarantine: Option<Quarantine>,
    report: Report,
    /// Rejections shown on stderr when there is no quarantine (a dry run).
    shown: usize,
}

impl WriteStage {
    fn take(&mut self, batch: Batch, bar: Option<&ProgressBar>) -> anyhow::Result<()> {
        for settled in self.writer.write_some(batch) {
            self.count(settled, bar)?;
        }
        Ok(())
    }

    /// Commits what is still open and counts it.
    fn finish(&mut self) -> anyhow::Result<()> {
        for settled in self.writer.finish() {
            self.count(settled, None)?;
        }
        Ok(())
    }

    fn count(&mut self, settled: Settled, bar: Option<&ProgressBar>) -> anyhow::Result<()> {
        for r in settled.rejections() {
            match &mut self.quarantine {
                Some(q) => q.add(r)?,
                None if self.shown < 20 => {
                    self.shown += 1;
                    match bar {
                        Some(bar) => bar.suspend(|| eprintln!("rejected: {r}")),
                        None => eprintln!("rejected: {r}"),
                    }
                }
                None => {}
            }
        }
        self.report.add(settled);
        Ok(())
    }
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, s)?;
        writeln!(out)?;
        return Ok(());
    }
    for f in &s.report.per_file {
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
    let r = &s.report;
    let landed = if s.dry_run {
        r.readings_decoded
    } else {
        r.readings_stored
    };
    writeln!(
        out,
        "files: {} ({} failed), readings {verb}: {landed}, rows rejected: {}{}",
        s.files,
        r.files_failed,
        r.rows_rejected,
        if r.readings_not_stored > 0 {
            format!(", readings not stored: {}", r.readings_not_stored)
        } else {
            String::new()
        }
    )?;
    if let Some(q) = &s.quarantine {
        writeln!(out, "rejected rows are kept in {q}")?;
    }
    Ok(())
}
