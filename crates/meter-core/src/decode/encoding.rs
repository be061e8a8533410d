//! Text that is not UTF-8: a reader that turns a legacy single-byte encoding (Latin-1,
//! Windows-1252) into UTF-8 as the decoders read, chunk by chunk, so no file is held whole.
//! Without it, bytes that are not UTF-8 are refused cell by cell, never replaced.

use std::io::{self, BufRead, Read};

use encoding_rs::{CoderResult, Decoder, Encoding};

/// The encodings a file may be read from (UTF-8, and Latin-1 / Windows-1252, which WHATWG reads
/// alike), by any of their WHATWG labels (`utf-8`, `latin1`, `iso-8859-1`, `cp1252`, ...).
pub fn encoding_named(name: &str) -> Result<&'static Encoding, crate::choice::UnknownName> {
    Encoding::for_label(name.trim().as_bytes())
        .filter(|e| *e == encoding_rs::UTF_8 || *e == encoding_rs::WINDOWS_1252)
        .ok_or_else(|| {
            crate::choice::UnknownName::new("encoding", name, "utf-8, latin1 or windows-1252")
        })
}

/// Reads `inner` in `encoding` and yields UTF-8.
pub struct Utf8Reader<R> {
    inner: R,
    decoder: Decoder,
    out: Vec<u8>,
    start: usize,
    end: usize,
    done: bool,
}

impl<R: std::fmt::Debug> std::fmt::Debug for Utf8Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Utf8Reader")
            .field("inner", &self.inner)
            .field("encoding", &self.decoder.encoding().name())
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> Utf8Reader<R> {
    /// A reader of `inner`, written in `encoding`.
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_without_bom_handling(),
            out: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Utf8Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        super::lines::read_buffered(self, buf)
    }
}

impl<R: BufRead> BufRead for Utf8Reader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.start == self.end && !self.done {
            let input = self.inner.fill_buf()?;
            let last = input.is_empty();
            let (result, read, written, _) =
                self.decoder.decode_to_utf8(input, &mut self.out, last);
            self.inner.consume(read);
            self.start = 0;
            self.end = written;
            if last && result == CoderResult::InputEmpty {
                self.done = true;
            }
        }
        Ok(&self.out[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        self.start = (self.start + amount).min(self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_becomes_utf8_across_chunk_edges() {
        // The Latin-1 a utility writes: ä is the one byte 0xE4.
        let mut latin1 = b"meter,time,value\n".to_vec();
        for i in 0..20_000 {
            latin1.extend_from_slice(b"Z\xe4hler-");
            latin1.extend_from_slice(format!("{i},2024-01-01T00:00:00Z,1\n").as_bytes());
        }
        let reader = std::io::BufReader::with_capacity(1000, latin1.as_slice());
        let mut text = String::new();
        Utf8Reader::new(reader, encoding_named("latin1").unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.starts_with("meter,time,value\nZähler-0,"));
        assert_eq!(text.lines().count(), 20_001);
        assert!(encoding_named("ebcdic").is_err());
    }
}
