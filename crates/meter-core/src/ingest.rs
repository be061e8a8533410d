//! The one ingest pipeline: decode -> batch -> write -> report, for every way readings come in
//! (a file, a drop folder, an S3 object, and the push paths: MQTT messages, line-protocol
//! writes).
//!
//! It has no I/O and no runtime of its own. It offers the stages, and the caller decides what
//! runs where:
//!
//! 1. **Units.** Input arrives as units that carry their origin: a file, an object (with the
//!    record it resumes from), a message. [`Pipeline::begin`] opens one and gives its
//!    [`UnitId`]; [`Pipeline::feed`] runs a [`Decoder`] over it; [`Pipeline::end`] closes it, or
//!    [`Pipeline::fail`] records why it could not be read at all.
//! 2. **Batches.** The pipeline cuts readings into [`Batch`]es of the writer's size. A batch
//!    carries the source line of each reading and the decode rejections met since the last
//!    batch, so everything about a stretch of input travels together (over a channel, to
//!    another thread or task).
//! 3. **Write.** The caller writes [`Batch::readings`] with whatever store it has, then calls
//!    [`Batch::settle`] with the result. Store refusals become [`Rejection`]s of
//!    [`Stage::Store`] with the line the reading came from.
//! 4. **Report.** [`Report::add`] counts a settled batch into one [`FileReport`] per unit and
//!    answers which units' records are now committed ([`Committed`]): the resume marker of an
//!    import needs the last record whose write finished, and an MQTT message may be acknowledged
//!    only once its readings are stored. Batches may settle out of order (several writes in
//!    flight); commits are only announced for a prefix of batches that all settled.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::decode::{truncate, Format, MAX_RAW};
use crate::ports::{StoreError, WriteReport};
use crate::reading::Reading;

/// Which stage refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The decoder: the record is not a valid reading.
    Decode,
    /// The store: a valid reading it would not keep (a unit that conflicts with its series).
    Store,
}

impl Stage {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Store => "store",
        }
    }
}

/// A record that did not land, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The stage that refused it.
    pub stage: Stage,
    /// The file, object key, topic or request it came from.
    pub file: Arc<str>,
    /// The 1-based line of a text record, or element number inside a JSON document.
    pub line: u64,
    /// The column or JSON field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why it was refused (at most [`MAX_RAW`] bytes and a note of the length).
    pub reason: String,
    /// The original text (at most [`MAX_RAW`] bytes); for a store refusal, the reading as JSON.
    pub raw: String,
    /// Whether the whole input was unreadable (its header or structure), not just this record.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fatal: bool,
    /// Whether writing it again may succeed (the store was unavailable), as opposed to a
    /// refusal that will not change.
    #[serde(default, skip_serializing_if = "is_false")]
    pub retryable: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Rejection {
    /// A record the decoder refused.
    pub fn decode(
        file: &Arc<str>,
        line: u64,
        field: Option<&str>,
        reason: impl fmt::Display,
        raw: &str,
    ) -> Self {
        Self {
            stage: Stage::Decode,
            file: file.clone(),
            line,
            field: field.map(str::to_owned),
            reason: bounded(reason.to_string()),
            raw: truncate(raw, MAX_RAW).to_owned(),
            fatal: false,
            retryable: false,
        }
    }

    /// An input that cannot be read at all (a header without the needed columns, a body that
    /// is not JSON): the decoder stops after it.
    pub fn unreadable(file: &Arc<str>, line: u64, reason: impl fmt::Display, raw: &str) -> Self {
        Self {
            fatal: true,
            ..Self::decode(
                file,
                line,
                None,
                format_args!("unreadable input: {reason}"),
                raw,
            )
        }
    }

    /// A valid reading the store did not keep.
    pub fn store(
        file: &Arc<str>,
        line: u64,
        reading: &Reading,
        reason: impl fmt::Display,
        retryable: bool,
    ) -> Self {
        let raw = serde_json::to_string(reading).unwrap_or_default();
        Self {
            stage: Stage::Store,
            retryable,
            ..Self::decode(file, line, None, reason, &raw)
        }
    }

    /// Whether the whole input was unreadable, not just this record.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(field) = &self.field {
            write!(f, " [{field}]")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A reason cut to [`MAX_RAW`] bytes: reasons quote the offending value, and a hostile 30 MB
/// cell must not become a 30 MB report line or log line.
pub(crate) fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_RAW {
        let total = reason.len();
        let keep = truncate(&reason, MAX_RAW).len();
        reason.truncate(keep);
        reason.push_str(&format!("... ({total} bytes in all)"));
    }
    reason
}

/// A decoder as the pipeline drives it: its items, and the source line of the last one.
pub trait Decoder: Iterator<Item = Result<Reading, Rejection>> + Send {
    /// The 1-based line (or element number) of the record that gave the last item.
    fn line(&self) -> u64;
}

/// One unit of input within a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct UnitId(u64);

/// The most rejections a [`FileReport`] lists when listing is asked for (all are counted).
pub const MAX_LISTED: usize = 10_000;

/// What happened to one unit (a file, an object or a part of one, a message).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileReport {
    /// Where it came from.
    pub file: String,
    /// The version read (an S3 ETag), when the source has versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The record this run started from (after a resume), when not the first.
    #[serde(skip_serializing_if = "is_zero")]
    pub first_record: u64,
    /// The format it was read as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Readings decoded.
    pub decoded: u64,
    /// Readings stored.
    pub stored: u64,
    /// Records the decoder rejected.
    pub rejected: u64,
    /// Readings the store did not keep.
    pub not_stored: u64,
    /// Why the unit as a whole could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The rejections (decode and store), up to the report's listing limit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FileReport {
    /// A report of a unit that failed before decoding (missing, unreadable, unknown format).
    pub fn failed(file: impl Into<String>, error: impl fmt::Display) -> Self {
        Self {
            file: file.into(),
            error: Some(error.to_string()),
            ..Self::default()
        }
    }

    /// Whether everything in it landed.
    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.rejected == 0 && self.not_stored == 0
    }
}

/// The report of a whole run: totals, and each unit's part.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Units that could not be read at all (and gave no reading).
    pub files_failed: usize,
    /// Readings decoded.
    pub readings_decoded: u64,
    /// Readings stored.
    pub readings_stored: u64,
    /// Records the decoders rejected.
    pub rows_rejected: u64,
    /// Readings the store did not keep.
    pub readings_not_stored: u64,
    /// Each unit, in the order it began.
    pub per_file: Vec<FileReport>,
    #[serde(skip)]
    list_limit: usize,
    #[serde(skip)]
    index: HashMap<UnitId, usize>,
    #[serde(skip)]
    next_seq: u64,
    #[serde(skip)]
    waiting: BTreeMap<u64, Vec<Committed>>,
}

/// A unit's records written up to here: the caller may acknowledge or mark them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The unit.
    pub unit: UnitId,
    /// Records of the unit (readings and rejections, counted from its start, a resumed run's
    /// skipped records included) whose outcome is now final.
    pub records: u64,
    /// Whether that is all of the unit.
    pub complete: bool,
}

impl Report {
    /// An empty report that counts every rejection but lists none (a caller that streams them
    /// to a quarantine of its own).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty report that also lists up to `limit` rejections per unit.
    pub fn listing(limit: usize) -> Self {
        Self {
            list_limit: limit,
            ..Self::default()
        }
    }

    /// Adds a unit that failed before it could be decoded.
    pub fn push_failed(&mut self, file: FileReport) {
        self.files_failed += usize::from(file.decoded == 0);
        self.per_file.push(file);
    }

    /// The report of one unit.
    pub fn unit(&self, unit: UnitId) -> Option<&FileReport> {
        self.index.get(&unit).map(|&i| &self.per_file[i])
    }

    /// Counts a settled batch in, and answers the units whose records are committed by it (and
    /// by earlier batches that were waiting for it).
    pub fn add(&mut self, settled: Settled) -> Vec<Committed> {
        let Settled {
            seq,
            spans,
            rejections,
        } = settled;
        let mut progress = Vec::new();
        for s in spans {
            let i = *self.index.entry(s.unit).or_insert_with(|| {
                self.per_file.push(FileReport {
                    file: s.name.to_string(),
                    first_record: s.first_record,
                    ..FileReport::default()
                });
                self.per_file.len() - 1
            });
            let f = &mut self.per_file[i];
            let had_error = f.error.is_some() && f.decoded == 0;
            f.format = f.format.or(s.format);
            f.decoded += s.decoded;
            f.stored += s.stored;
            f.rejected += s.rejected;
            f.not_stored += s.not_stored;
            if f.error.is_none() {
                f.error = s.error;
            }
            let failed = f.error.is_some() && f.decoded == 0;
            if failed != had_error {
                if failed {
                    self.files_failed += 1;
                } else {
                    self.files_failed -= 1;
                }
            }
            self.readings_decoded += s.decoded;
            self.readings_stored += s.stored;
            self.rows_rejected += s.rejected;
            self.readings_not_stored += s.not_stored;
            progress.push(Committed {
                unit: s.unit,
                records: s.records_end,
                complete: s.ended,
            });
        }
        for r in rejections {
            let Some(&i) = self.index.get(&r.unit) else {
                continue;
            };
            if self.per_file[i].rejections.len() < self.list_limit {
                self.per_file[i].rejections.push(r.rejection);
            }
        }
        self.waiting.insert(seq, progress);
        let mut out = Vec::new();
        while let Some(done) = self.waiting.remove(&self.next_seq) {
            self.next_seq += 1;
            for c in done {
                match out.iter_mut().find(|o: &&mut Committed| o.unit == c.unit) {
                    Some(o) => *o = c,
                    None => out.push(c),
                }
            }
        }
        out
    }

    /// Rejections plus readings not stored, plus units that failed: what did not land.
    pub fn problems(&self) -> u64 {
        self.rows_rejected + self.readings_not_stored + self.files_failed as u64
    }
}

/// One unit's share of a batch.
#[derive(Debug, Clone)]
struct Span {
    unit: UnitId,
    name: Arc<str>,
    first_record: u64,
    /// Index of its first reading in the batch.
    start: usize,
    format: Option<Format>,
    decoded: u64,
    rejected: u64,
    records_end: u64,
    ended: bool,
    error: Option<String>,
}

/// A rejection with the unit it belongs to.
#[derive(Debug, Clone)]
struct UnitRejection {
    unit: UnitId,
    rejection: Rejection,
}

/// Readings on their way to a writer, with their source lines and the decode rejections met
/// since the previous batch.
#[derive(Debug)]
pub struct Batch {
    seq: u64,
    readings: Vec<Reading>,
    lines: Vec<u64>,
    spans: Vec<Span>,
    rejections: Vec<UnitRejection>,
}

impl Batch {
    fn new(seq: u64, capacity: usize) -> Self {
        Self {
            seq,
            readings: Vec::with_capacity(capacity),
            lines: Vec::with_capacity(capacity),
            spans: Vec::new(),
            rejections: Vec::new(),
        }
    }

    /// The readings to write, at most the pipeline's batch size.
    pub fn readings(&self) -> &[Reading] {
        &self.readings
    }

    /// The decode rejections in this batch (to quarantine as they pass).
    pub fn rejections(&self) -> impl Iterator<Item = &Rejection> {
        self.rejections.iter().map(|r| &r.rejection)
    }

    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The batch after its write: `result` is the writer's answer for [`Self::readings`].
    /// Items it did not store become store rejections carrying their source line; a call that
    /// failed as a whole fails each reading with its error.
    pub fn settle(self, result: Result<WriteReport, StoreError>) -> Settled {
        let Batch {
            seq,
            readings,
            lines,
            spans,
            mut rejections,
        } = self;
        let ends: Vec<usize> = (0..spans.len())
            .map(|i| spans.get(i + 1).map_or(readings.len(), |n| n.start))
            .collect();
        let mut not_stored = vec![0u64; spans.len()];
        let mut refuse = |index: usize, reason: &dyn fmt::Display, retryable: bool| {
            let s = spans
                .partition_point(|s| s.start <= index)
                .saturating_sub(1);
            not_stored[s] += 1;
            rejections.push(UnitRejection {
                unit: spans[s].unit,
                rejection: Rejection::store(
                    &spans[s].name,
                    lines[index],
                    &readings[index],
                    reason,
                    retryable,
                ),
            });
        };
        match result {
            Ok(report) => {
                for f in report.failures.iter().filter(|f| f.index < readings.len()) {
                    refuse(f.index, &f.reason, f.retryable);
                }
            }
            Err(e) => {
                let reason = format!("not stored: {e}");
                for i in 0..readings.len() {
                    refuse(i, &reason, e.is_retryable());
                }
            }
        }
        let spans = spans
            .into_iter()
            .zip(ends)
            .zip(not_stored)
            .map(|((s, end), not_stored)| SpanOutcome {
                stored: (end - s.start) as u64 - not_stored,
                unit: s.unit,
                name: s.name,
                first_record: s.first_record,
                format: s.format,
                decoded: s.decoded,
                rejected: s.rejected,
                not_stored,
                records_end: s.records_end,
                ended: s.ended,
                error: s.error,
            })
            .collect();
        Settled {
            seq,
            spans,
            rejections,
        }
    }

    /// The batch of a dry run: decoded and checked, nothing written.
    pub fn dry_run(self) -> Settled {
        let mut settled = self.settle(Ok(WriteReport::default()));
        for s in &mut settled.spans {
            s.stored = 0;
        }
        settled
    }
}

/// One unit's counts in a settled batch.
#[derive(Debug, Clone)]
struct SpanOutcome {
    unit: UnitId,
    name: Arc<str>,
    first_record: u64,
    format: Option<Format>,
    decoded: u64,
    stored: u64,
    rejected: u64,
    not_stored: u64,
    records_end: u64,
    ended: bool,
    error: Option<String>,
}

/// A batch after its write: what to count, and the rejections of both stages.
#[derive(Debug, Clone)]
pub struct Settled {
    seq: u64,
    spans: Vec<SpanOutcome>,
    rejections: Vec<UnitRejection>,
}

impl Settled {
    /// Every rejection of the batch, decode and store, in input order per stage.
    pub fn rejections(&self) -> impl Iterator<Item = &Rejection> {
        self.rejections.iter().map(|r| &r.rejection)
    }

    /// The same batch after the transaction that held it was rolled back (a writer that
    /// commits several batches at once, and failed): what it stored counts as not stored, and
    /// each of its units carries `reason` as its error. Its readings are not listed again (the
    /// source still holds them); its decode rejections stand.
    pub fn lost(mut self, reason: &str) -> Self {
        for s in &mut self.spans {
            s.not_stored += s.stored;
            s.stored = 0;
            if s.not_stored > 0 && s.error.is_none() {
                s.error = Some(reason.to_owned());
            }
        }
        self
    }

    /// Each rejection with the unit it belongs to: a queue consumer fails the messages with a
    /// retryable one and quarantines the rest.
    pub fn unit_rejections(&self) -> impl Iterator<Item = (UnitId, &Rejection)> {
        self.rejections.iter().map(|r| (r.unit, &r.rejection))
    }

    /// Readings the store refused for now (it was unavailable): the caller decides whether to
    /// retry the input or report them.
    pub fn retryable(&self) -> usize {
        self.rejections
            .iter()
            .filter(|r| r.rejection.retryable)
            .count()
    }
}

/// A unit being decoded.
#[derive(Debug, Clone)]
struct Open {
    name: Arc<str>,
    first_record: u64,
    /// Records seen, skipped ones included.
    records: u64,
}

/// The decode and batch stages: units in, batches of at most `max_batch` records (readings and
/// rejections) out.
#[derive(Debug)]
pub struct Pipeline {
    max_batch: usize,
    next_unit: u64,
    /// A few units at most: looked up twice per record, so by compare rather than by hash.
    open: BTreeMap<UnitId, Open>,
    batch: Batch,
}

impl Pipeline {
    /// A pipeline whose batches hold at most `max_batch` readings: a writer's
    /// [`max_batch`](crate::ports::ReadingWriter::max_batch), or a multiple of it when the
    /// caller keeps several writes in flight.
    pub fn new(max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        Self {
            max_batch,
            next_unit: 0,
            open: BTreeMap::new(),
            batch: Batch::new(0, max_batch.min(65_536)),
        }
    }

    /// Opens a unit named `name` (a path, `s3://bucket/key`, a topic). Its first
    /// `first_record` records were done by an earlier run and are skipped by [`Self::feed`].
    pub fn begin(&mut self, name: &str, first_record: u64) -> UnitId {
        let id = UnitId(self.next_unit);
        self.next_unit += 1;
        let open = Open {
            name: Arc::from(name),
            first_record,
            records: 0,
        };
        self.open.insert(id, open);
        self.span(id);
        id
    }

    /// Records the format a unit is read as.
    pub fn format(&mut self, unit: UnitId, format: Format) {
        if let Some(s) = self.span(unit) {
            s.format = Some(format);
        }
    }

    /// The current batch's span of `unit`, started if the last span is another unit's.
    fn span(&mut self, unit: UnitId) -> Option<&mut Span> {
        let open = self.open.get(&unit)?;
        let start = self.batch.readings.len();
        if self.batch.spans.last().is_none_or(|s| s.unit != unit) {
            self.batch.spans.push(Span {
                unit,
                name: open.name.clone(),
                first_record: open.first_record,
                start,
                format: None,
                decoded: 0,
                rejected: 0,
                records_end: open.records.max(open.first_record),
                ended: false,
                error: None,
            });
        }
        self.batch.spans.last_mut()
    }

    /// Hands over one decoder item of `unit` from source line `line`; returns a batch when one
    /// is full.
    pub fn push(
        &mut self,
        unit: UnitId,
        item: Result<Reading, Rejection>,
        line: u64,
    ) -> Option<Batch> {
        let open = self.open.get_mut(&unit)?;
        open.records += 1;
        if open.records <= open.first_record {
            return None;
        }
        let records = open.records;
        let span = self.span(unit)?;
        span.records_end = records;
        match item {
            Ok(r) => {
                span.decoded += 1;
                self.batch.readings.push(r);
                self.batch.lines.push(line);
            }
            Err(rejection) => {
                span.rejected += 1;
                if rejection.fatal && span.error.is_none() {
                    span.error = Some(rejection.reason.clone());
                }
                self.batch
                    .rejections
                    .push(UnitRejection { unit, rejection });
            }
        }
        // Rejections count too, so a file of nothing but bad rows is still cut into batches.
        let held = self.batch.readings.len() + self.batch.rejections.len();
        (held >= self.max_batch).then(|| self.take())
    }

    /// Runs `decoder` over `unit`, handing each full batch to `emit`. Stops early with
    /// `emit`'s error (the writer is gone, or the caller's budget is spent).
    pub fn feed<E>(
        &mut self,
        unit: UnitId,
        decoder: &mut dyn Decoder,
        emit: &mut dyn FnMut(Batch) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(item) = decoder.next() {
            if let Some(full) = self.push(unit, item, decoder.line()) {
                emit(full)?;
            }
        }
        Ok(())
    }

    /// Records that `unit` could not be read as a whole (it cannot be opened, its format is
    /// unknown), and closes it.
    pub fn fail(&mut self, unit: UnitId, error: impl fmt::Display) {
        if let Some(s) = self.span(unit) {
            s.error.get_or_insert_with(|| error.to_string());
        }
        self.end(unit);
    }

    /// Closes a unit: once the batch holding its end is settled, it is complete.
    pub fn end(&mut self, unit: UnitId) {
        if let Some(s) = self.span(unit) {
            s.ended = true;
        }
        self.open.remove(&unit);
    }

    /// The batch in progress, if it holds anything (readings, rejections, or a unit's news).
    pub fn flush(&mut self) -> Option<Batch> {
        (!self.batch.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Batch {
        let seq = self.batch.seq + 1;
        let full = std::mem::replace(&mut self.batch, Batch::new(seq, self.max_batch.min(65_536)));
        // Units still open continue in the next batch.
        let open: Vec<UnitId> = full
            .spans
            .iter()
            .filter(|s| !s.ended)
            .map(|s| s.unit)
            .collect();
        for u in open {
            self.span(u);
        }
        full
    }
}

#[cfg(test)]
mod tests;
