//! Reading JSON Lines with bounded memory: a line longer than the limit is reported, not
//! buffered, and the reader resynchronises at the next newline.

use std::io::{self, BufRead};

/// What one call to [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its `\n` or `\r\n`) is in the buffer.
    Complete,
    /// The line had this many bytes, over the limit; the buffer holds only its start.
    TooLong(usize),
}

/// Splits a byte stream into lines of at most `max_bytes`.
pub struct LineReader<R> {
    inner: R,
    max_bytes: usize,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps `inner`; lines longer than `max_bytes` are reported as [`Line::TooLong`].
    pub fn new(inner: R, max_bytes: usize) -> Self {
        Self { inner, max_bytes }
    }

    /// Reads the next line into `buf` (cleared first). `None` at end of input.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
        buf.clear();
        let mut total = 0usize;
        let mut saw_any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            saw_any = true;
            let (chunk, found_newline) = match memchr(available) {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            let room = (self.max_bytes + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            total += chunk.len();
            let used = chunk.len() + usize::from(found_newline);
            self.inner.consume(used);
            if found_newline {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        if total > self.max_bytes {
            return Ok(Some(Line::TooLong(total)));
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(Some(Line::Complete))
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut reader = LineReader::new(io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(line) = reader.next_line(&mut buf).expect("in-memory read") {
            out.push((line, buf.clone()));
        }
        out
    }

    #[test]
    fn splits_on_newlines_and_strips_carriage_returns() {
        let got = lines(b"a\r\nbc\n\nd", 100);
        let texts: Vec<&[u8]> = got.iter().map(|(_, b)| b.as_slice()).collect();
        assert_eq!(texts, [&b"a"[..], b"bc", b"", b"d"]);
        assert!(got.iter().all(|(l, _)| *l == Line::Complete));
    }

    #[test]
    fn no_phantom_line_after_a_final_newline() {
        assert_eq!(lines(b"a\n", 100).len(), 1);
        assert!(lines(b"", 100).is_empty());
    }

    #[test]
    fn long_lines_are_reported_and_skipped() {
        let got = lines(b"ok\n0123456789abcdef\nnext\n", 8);
        assert_eq!(got[0].0, Line::Complete);
        assert_eq!(got[1].0, Line::TooLong(16));
        assert!(got[1].1.len() <= 9, "buffer stays bounded");
        assert_eq!(got[2], (Line::Complete, b"next".to_vec()));
    }
}
