//! A bound on the length of one line of text input: a CSV record is held whole by the csv
//! reader, so a 10 MB line with no line break would cost many times that in memory. Lines up to
//! [`MAX_LINE_BYTES`] pass through (complete lines without a copy); a longer line is dropped
//! while it is read, never held, and replaced by an empty line, so line numbers stay right; the
//! decoder reports it from [`LongLines`].

use std::io::{self, BufRead, Read};
use std::sync::{Arc, Mutex};

/// The longest line a text decoder reads: far beyond any meter file's rows.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The lines (1-based) a [`BoundedLines`] dropped for being too long, shared with the decoder.
#[derive(Debug, Clone, Default)]
pub struct LongLines(Arc<Mutex<Vec<u64>>>);

impl LongLines {
    /// The lines dropped since the last call.
    pub fn take(&self) -> Vec<u64> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn push(&self, line: u64) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

/// Reads `inner`, passing lines of at most `max` bytes and replacing longer ones by `\n`.
#[derive(Debug)]
pub struct BoundedLines<R> {
    inner: R,
    max: usize,
    /// The start of a line not finished yet (at most `max` bytes), or a line to hand out.
    held: Vec<u8>,
    /// How much of `held` was handed out.
    given: usize,
    /// Whether `held` is a finished line being handed out.
    ready: bool,
    /// Whether a too-long line is being skipped up to its end.
    skipping: bool,
    /// Line breaks passed so far (the current line is `breaks + 1`).
    breaks: u64,
    long: LongLines,
}

impl<R: BufRead> BoundedLines<R> {
    /// Bounds `inner`'s lines at `max` bytes; dropped lines are listed in the returned handle.
    pub fn new(inner: R, max: usize) -> (Self, LongLines) {
        let long = LongLines::default();
        let me = Self {
            inner,
            max,
            held: Vec::new(),
            given: 0,
            ready: false,
            skipping: false,
            breaks: 0,
            long: long.clone(),
        };
        (me, long)
    }
}

impl<R: BufRead> Read for BoundedLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, buf)
    }
}

/// `Read::read` for a reader whose `BufRead` side does the work.
pub(crate) fn read_buffered<B: BufRead>(reader: &mut B, buf: &mut [u8]) -> io::Result<usize> {
    let available = reader.fill_buf()?;
    let n = available.len().min(buf.len());
    buf[..n].copy_from_slice(&available[..n]);
    reader.consume(n);
    Ok(n)
}

impl<R: BufRead> BufRead for BoundedLines<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.ready {
            return Ok(&self.held[self.given..]);
        }
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                // The end: a last line without a break is handed out as it is.
                if self.skipping || self.held.is_empty() {
                    return Ok(&[]);
                }
                self.ready = true;
                return Ok(&self.held[self.given..]);
            }
            let first_break = chunk.iter().position(|b| *b == b'\n');
            if self.skipping {
                match first_break {
                    Some(i) => {
                        self.inner.consume(i);
                        self.skipping = false;
                        // The break itself goes through below: the dropped line reads as empty.
                    }
                    None => {
                        let n = chunk.len();
                        self.inner.consume(n);
                    }
                }
                continue;
            }
            if self.held.is_empty() {
                // Complete lines straight from the inner buffer, without a copy: every line up
                // to the last break that ends a line within the bound.
                if let Some(end) = complete_lines(chunk, self.max) {
                    let inner: &[u8] = self.inner.fill_buf()?;
                    return Ok(&inner[..end]);
                }
            }
            // The start of a line: hold it until its break, or drop it past `max`.
            let take = first_break.map_or(chunk.len(), |i| i + 1);
            if self.held.len() + take > self.max + 1 {
                self.long.push(self.breaks + 1);
                self.held.clear();
                self.skipping = true;
                continue;
            }
            self.held.extend_from_slice(&chunk[..take]);
            self.inner.consume(take);
            if first_break.is_some() {
                self.ready = true;
                return Ok(&self.held[self.given..]);
            }
        }
    }

    fn consume(&mut self, amount: usize) {
        if self.ready {
            let end = (self.given + amount).min(self.held.len());
            self.breaks += count_breaks(&self.held[self.given..end]);
            self.given = end;
            if self.given == self.held.len() {
                self.held.clear();
                self.given = 0;
                self.ready = false;
            }
            return;
        }
        if let Ok(chunk) = self.inner.fill_buf() {
            let end = amount.min(chunk.len());
            self.breaks += count_breaks(&chunk[..end]);
        }
        self.inner.consume(amount);
    }
}

/// The length of the run of complete lines of at most `max` bytes that `chunk` starts with.
fn complete_lines(chunk: &[u8], max: usize) -> Option<usize> {
    // A chunk no longer than the bound holds no line past it: only its last break matters
    // (the common case, read buffers being smaller than the bound).
    if chunk.len() <= max {
        return chunk.iter().rposition(|b| *b == b'\n').map(|i| i + 1);
    }
    let mut start = 0;
    let mut end = None;
    for (i, b) in chunk.iter().enumerate() {
        if *b == b'\n' {
            if i - start > max {
                break;
            }
            end = Some(i + 1);
            start = i + 1;
        }
    }
    end
}

/// The rejection of a line dropped for its length.
pub(crate) fn too_long(file: &Arc<str>, line: u64) -> crate::ingest::Rejection {
    crate::ingest::Rejection::decode(
        file,
        line,
        None,
        format!("the line is longer than {MAX_LINE_BYTES} bytes; it was skipped, not read whole"),
        "",
    )
}

fn count_breaks(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(text: &[u8], max: usize, capacity: usize) -> (Vec<u8>, Vec<u64>) {
        let reader = std::io::BufReader::with_capacity(capacity, text);
        let (mut bounded, long) = BoundedLines::new(reader, max);
        let mut out = Vec::new();
        bounded.read_to_end(&mut out).unwrap();
        (out, long.take())
    }

    #[test]
    fn long_lines_become_empty_and_are_listed_by_number() {
        let text = b"head\nshort\nxxxxxxxxxxxxxxxxxxxxxxxx\nok\nyyyyyyyyyyyyyyyyyyyyyy";
        for capacity in [1, 3, 7, 64] {
            let (out, long) = through(text, 10, capacity);
            assert_eq!(out, b"head\nshort\n\nok\n", "capacity {capacity}");
            assert_eq!(long, [3, 5], "capacity {capacity}");
        }
        let (out, long) = through(b"a\nb", 10, 2);
        assert_eq!((out.as_slice(), long.len()), (&b"a\nb"[..], 0));
    }

    proptest::proptest! {
        #[test]
        fn lines_within_the_bound_pass_unchanged(
            lines in proptest::collection::vec("[a-z,0-9]{0,30}", 0..40),
            capacity in 1usize..50,
        ) {
            let text = lines.join("\n");
            let (out, long) = through(text.as_bytes(), 30, capacity);
            proptest::prop_assert_eq!(out, text.as_bytes());
            proptest::prop_assert!(long.is_empty());
        }
    }
}
