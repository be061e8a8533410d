//! Printing rows as an aligned table, CSV or JSON.

use std::io::Write;

use serde::Serialize;

use crate::cli::OutFormat;

/// Something printable as a row of named columns.
pub(crate) trait Row: Serialize {
    /// Column names.
    fn header() -> &'static [&'static str];
    /// The cells, in header order.
    fn cells(&self) -> Vec<String>;
}

/// Prints rows to stdout in the chosen format.
pub(crate) fn print<R: Row>(rows: &[R], format: OutFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        OutFormat::Json => {
            serde_json::to_writer_pretty(&mut out, rows)?;
            writeln!(out)?;
        }
        OutFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(R::header())?;
            for r in rows {
                w.write_record(r.cells())?;
            }
            w.flush()?;
        }
        OutFormat::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
            let mut widths: Vec<usize> = R::header().iter().map(|h| h.len()).collect();
            for row in &cells {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |out: &mut dyn Write, row: &[&str]| -> std::io::Result<()> {
                let padded: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", padded.join("  ").trim_end())
            };
            line(&mut out, R::header())?;
            for row in &cells {
                let refs: Vec<&str> = row.iter().map(String::as_str).collect();
                line(&mut out, &refs)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// A number as people expect to read it: no trailing `.0` on whole numbers.
pub(crate) fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
