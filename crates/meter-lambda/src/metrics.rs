//! The functions' operational metrics as CloudWatch embedded metric format (EMF) lines: one
//! JSON object per invocation on stdout, which CloudWatch Logs turns into metrics
//! (`meter_core::contract::cloud::ops`) with no API call, no permission and no added latency.
//!
//! The line is written to stdout directly rather than through `tracing`: the runtime's JSON
//! log format nests an event's fields under `fields`, where CloudWatch does not look for the
//! `_aws` member. Zero values are left out (see `ops`), so an invocation with nothing to
//! report writes nothing.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use meter_core::contract::cloud::ops;
use serde_json::{json, Map, Value};

/// The counts one invocation reports, by metric name.
pub type Counts = Vec<(&'static str, u64)>;

/// Where an [`Emitter`]'s lines go.
#[derive(Clone)]
enum Sink {
    Stdout,
    Capture(Captured),
}

/// Writes one function's metric lines.
#[derive(Clone)]
pub struct Emitter {
    function: Arc<str>,
    sink: Sink,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// Lines on stdout, for Lambda's log agent, with the function's name from
    /// `AWS_LAMBDA_FUNCTION_NAME` (which Lambda always sets), or `role` outside Lambda.
    pub fn lambda(role: &str) -> Self {
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| role.to_owned());
        Self {
            function: function.into(),
            sink: Sink::Stdout,
        }
    }

    /// Lines kept in memory, for tests and harnesses that sum them.
    pub fn capture(function: &str) -> (Self, Captured) {
        let captured = Captured::default();
        let emitter = Self {
            function: function.into(),
            sink: Sink::Capture(captured.clone()),
        };
        (emitter, captured)
    }

    /// Writes the line for `counts`, if any is not zero.
    pub fn emit(&self, counts: &[(&'static str, u64)]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let Some(line) = line(&self.function, now, counts) else {
            return;
        };
        match &self.sink {
            // reason: EMF must be a line of its own on stdout (see the module's note); one
            // `println!` holds stdout's lock for the whole line.
            #[allow(clippy::print_stdout)]
            Sink::Stdout => println!("{line}"),
            Sink::Capture(c) => c.push(line),
        }
    }

    /// Runs one invocation, then writes its counts (from its result) with the AWS retries
    /// the SDK made during it.
    pub async fn measure<T, F>(&self, invocation: F, counts: impl FnOnce(&T) -> Counts) -> T
    where
        F: Future<Output = T>,
    {
        // Boxed: the handlers' futures are deep, and nesting them in two more layers overflows
        // rustc's layout query depth in the binaries.
        let (out, tally) = meter_aws::tally::tallied(Box::pin(invocation)).await;
        let mut c = counts(&out);
        c.push((ops::AWS_RETRIES, tally.retries));
        self.emit(&c);
        out
    }
}

/// The counts of one HTTP answer: refused credentials, other client errors, server errors.
pub fn http_counts(status: u16) -> Counts {
    vec![
        (ops::UNAUTHORIZED, u64::from(status == 401)),
        (
            ops::CLIENT_ERRORS,
            u64::from((400..500).contains(&status) && status != 401),
        ),
        (ops::SERVER_ERRORS, u64::from(status >= 500)),
    ]
}

/// The EMF line for `counts` at `timestamp_ms`, or `None` when every count is zero.
pub fn line(function: &str, timestamp_ms: u64, counts: &[(&'static str, u64)]) -> Option<String> {
    // A name given twice is summed: CloudWatch would read its member once.
    let mut summed: Vec<(&str, u64)> = Vec::new();
    for &(name, value) in counts.iter().filter(|(_, v)| *v > 0) {
        match summed.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += value,
            None => summed.push((name, value)),
        }
    }
    let mut root = Map::new();
    let mut metrics = Vec::new();
    for (name, value) in summed {
        root.insert(name.to_owned(), json!(value));
        metrics.push(json!({"Name": name, "Unit": "Count"}));
    }
    if metrics.is_empty() {
        return None;
    }
    root.insert(ops::DIMENSION.to_owned(), json!(function));
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": ops::NAMESPACE,
                "Dimensions": [[ops::DIMENSION]],
                "Metrics": metrics,
            }],
        }),
    );
    Some(Value::Object(root).to_string())
}

/// Why a line is not an embedded-metric-format line CloudWatch would read.
#[derive(Debug, thiserror::Error)]
pub enum EmfError {
    /// The line is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// The line is JSON but breaks a rule of the format, named here.
    #[error("{0}")]
    Breaks(String),
}

/// A captured line that [`read`] refused, with the line.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {line}")]
pub struct UnreadableLine {
    /// The line.
    pub line: String,
    /// What is wrong with it.
    #[source]
    pub error: EmfError,
}

/// Reads an EMF line back as CloudWatch would: the namespace, the dimension values, and each
/// declared metric's value; an error says which rule of the format the line breaks.
pub fn read(line: &str) -> Result<Metrics, EmfError> {
    let v: Value = serde_json::from_str(line)?;
    let aws = v
        .get("_aws")
        .ok_or_else(|| EmfError::Breaks("no _aws member".into()))?;
    aws.get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or_else(|| EmfError::Breaks("_aws.Timestamp is not a number of milliseconds".into()))?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or_else(|| EmfError::Breaks("_aws.CloudWatchMetrics is not an array".into()))?;
    let mut out = Metrics::default();
    for d in directives {
        out.namespace = d
            .get("Namespace")
            .and_then(Value::as_str)
            .ok_or_else(|| EmfError::Breaks("a directive has no Namespace".into()))?
            .to_owned();
        for set in d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or_else(|| EmfError::Breaks("a directive has no Dimensions".into()))?
        {
            for key in set
                .as_array()
                .ok_or_else(|| EmfError::Breaks("a dimension set is not an array".into()))?
            {
                let key = key
                    .as_str()
                    .ok_or_else(|| EmfError::Breaks("a dimension name is not a string".into()))?;
                let value = v.get(key).and_then(Value::as_str).ok_or_else(|| {
                    EmfError::Breaks(format!("dimension {key} has no string member"))
                })?;
                out.dimensions.push((key.to_owned(), value.to_owned()));
            }
        }
        for m in d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or_else(|| EmfError::Breaks("a directive has no Metrics".into()))?
        {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or_else(|| EmfError::Breaks("a metric has no Name".into()))?;
            let value = v
                .get(name)
                .and_then(Value::as_f64)
                .ok_or_else(|| EmfError::Breaks(format!("metric {name} has no numeric member")))?;
            out.values.push((name.to_owned(), value));
        }
    }
    Ok(out)
}

/// One line's metrics, as [`read`] found them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// The namespace.
    pub namespace: String,
    /// Dimension names and values.
    pub dimensions: Vec<(String, String)>,
    /// Metric names and values.
    pub values: Vec<(String, f64)>,
}

/// Lines an [`Emitter::capture`] kept.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<String>>>);

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Captured({} lines)", self.lines().len())
    }
}

impl Captured {
    fn push(&self, line: String) {
        if let Ok(mut l) = self.0.lock() {
            l.push(line);
        }
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// One metric's sum over the lines, read back with [`read`]; a line that does not read
    /// is an error.
    pub fn sum(&self, metric: &str) -> Result<f64, UnreadableLine> {
        let mut total = 0.0;
        for l in self.lines() {
            let m = read(&l).map_err(|error| UnreadableLine {
                line: l.clone(),
                error,
            })?;
            total += m
                .values
                .iter()
                .filter(|(n, _)| n == metric)
                .map(|(_, v)| v)
                .sum::<f64>();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_follows_the_embedded_metric_format_and_leaves_zeros_out() {
        let l = line(
            "stack-FetchFunction-1",
            1_795_435_200_000,
            &[
                (ops::READINGS_STORED, 48),
                (ops::AWS_RETRIES, 0),
                (ops::BATCH_ITEM_FAILURES, 2),
            ],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            v["_aws"],
            json!({"Timestamp": 1_795_435_200_000u64, "CloudWatchMetrics": [{
                "Namespace": "meterflow", "Dimensions": [["FunctionName"]],
                "Metrics": [{"Name": "ReadingsStored", "Unit": "Count"},
                            {"Name": "BatchItemFailures", "Unit": "Count"}]}]})
        );
        assert_eq!(v["FunctionName"], "stack-FetchFunction-1");
        assert_eq!(v["ReadingsStored"], 48);
        assert!(v.get("AwsRetries").is_none());
        assert!(!l.contains('\n'));
        assert_eq!(
            read(&l).unwrap(),
            Metrics {
                namespace: "meterflow".into(),
                dimensions: vec![("FunctionName".into(), "stack-FetchFunction-1".into())],
                values: vec![
                    ("ReadingsStored".into(), 48.0),
                    ("BatchItemFailures".into(), 2.0)
                ],
            }
        );
    }

    #[test]
    fn nothing_is_written_when_there_is_nothing_to_report() {
        assert_eq!(line("f", 1, &[(ops::AWS_RETRIES, 0)]), None);
        assert_eq!(line("f", 1, &[]), None);
        let (e, captured) = Emitter::capture("f");
        e.emit(&[(ops::SERVER_ERRORS, 0)]);
        assert!(captured.lines().is_empty());
    }

    #[test]
    fn a_name_given_twice_is_summed() {
        let l = line("f", 1, &[(ops::ROWS_REJECTED, 2), (ops::ROWS_REJECTED, 3)]).unwrap();
        assert_eq!(read(&l).unwrap().values, vec![("RowsRejected".into(), 5.0)]);
    }

    #[test]
    fn lines_that_break_the_format_are_named() {
        assert!(read("{}").unwrap_err().to_string().contains("_aws"));
        let no_value = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[],"Metrics":[{"Name":"X"}]}]}}"#;
        assert_eq!(
            read(no_value).unwrap_err().to_string(),
            "metric X has no numeric member"
        );
        let no_dim = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["D"]],"Metrics":[]}]}}"#;
        assert_eq!(
            read(no_dim).unwrap_err().to_string(),
            "dimension D has no string member"
        );
    }

    #[test]
    fn http_answers_are_counted_by_class() {
        let sum = |statuses: &[u16]| {
            let (e, c) = Emitter::capture("api");
            for s in statuses {
                e.emit(&http_counts(*s));
            }
            [ops::UNAUTHORIZED, ops::CLIENT_ERRORS, ops::SERVER_ERRORS].map(|m| c.sum(m).unwrap())
        };
        assert_eq!(sum(&[200, 204, 304]), [0.0, 0.0, 0.0]);
        assert_eq!(sum(&[401, 401, 400, 413, 404, 500, 503]), [2.0, 3.0, 2.0]);
    }

    #[tokio::test]
    async fn an_invocation_reports_its_counts_from_its_result() {
        let (e, c) = Emitter::capture("import");
        let out = e
            .measure(async { Err::<u64, u64>(7) }, |r| {
                vec![
                    (ops::ROWS_REJECTED, *r.as_ref().err().unwrap_or(&0)),
                    (ops::INVOCATIONS_FAILED, u64::from(r.is_err())),
                ]
            })
            .await;
        assert_eq!(out, Err(7));
        assert_eq!(c.sum(ops::ROWS_REJECTED).unwrap(), 7.0);
        assert_eq!(c.sum(ops::INVOCATIONS_FAILED).unwrap(), 1.0);
        assert_eq!(c.sum(ops::AWS_RETRIES).unwrap(), 0.0);
    }
}
