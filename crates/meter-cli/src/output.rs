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

/// Prints one JSON value to stdout, as the row printer does.
pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Prints rows to stdout in the chosen format.
pub(crate) fn print<R: Row>(rows: &[R], format: OutFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        OutFormat::Json => {
            drop(out);
            return print_json(&rows);
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

/// A number as people expect to read it: the shortest decimal text that reads back to the same
/// number (no rounding, no exponent, no trailing `.0` on whole numbers).
pub(crate) fn number(v: f64) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::number;
    use proptest::prelude::*;

    #[test]
    fn numbers_print_in_full_and_whole_ones_plainly() {
        assert_eq!(number(1.23456789), "1.23456789");
        assert_eq!(number(1e-7), "0.0000001");
        assert_eq!(number(48210.0), "48210");
        assert_eq!(number(-2.5), "-2.5");
    }

    proptest! {
        #[test]
        fn every_printed_number_reads_back_the_same(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            prop_assert_eq!(number(v).parse::<f64>().unwrap(), v);
        }
    }
}
