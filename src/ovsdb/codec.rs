//! Incremental framing of the OVSDB byte stream.
//!
//! OVSDB sends bare concatenated JSON values: no delimiter, no length prefix. The
//! [`Framer`] finds where each top-level value ends by tracking nesting depth, whether
//! the scanner is inside a string and whether the previous byte was an escape. The scan
//! position survives across reads, so a multi-megabyte message that arrives in 64 KiB
//! pieces is scanned once: O(n) overall, never re-parsed from the start.
//!
//! "Incomplete, read more" ([`Framer::next_frame`] returning `Ok(None)`) is kept apart
//! from "invalid" ([`CodecError`]): the first is normal, the second ends the session.

use serde_json::Value;

/// Default maximum size of one message: 64 MiB (a 10,000-row initial monitor reply of
/// load balancers is ~4 MB).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Why a byte stream cannot be framed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a JSON object or array stream (or the value does not parse).
    #[error("invalid JSON from peer: {0}")]
    Invalid(String),
    /// One message grew past the configured limit before it was complete.
    #[error("message larger than the {limit}-byte limit")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

/// Scanner state for one stream. Feed it bytes with [`Framer::extend`] and take complete
/// values with [`Framer::next_frame`] or [`Framer::next_value`].
#[derive(Debug)]
pub struct Framer {
    /// Bytes received and not yet handed out as frames (from `start`).
    buf: Vec<u8>,
    /// Offset in `buf` where the current (incomplete) value begins.
    start: usize,
    /// Offset in `buf` up to which bytes have been scanned; kept across reads.
    scan: usize,
    /// Nesting depth of `{`/`[` at `scan`; 0 means between values.
    depth: u32,
    /// Whether `scan` is inside a string literal.
    in_string: bool,
    /// Whether the previous byte inside a string was a backslash.
    escape: bool,
    /// Largest message accepted, in bytes.
    max: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Framer {
    /// A framer refusing messages larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            scan: 0,
            depth: 0,
            in_string: false,
            escape: false,
            max,
        }
    }

    /// Append received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        // Compact once the consumed prefix dominates: amortised O(1) per byte.
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not yet form a complete value (whitespace included).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete top-level value's bytes, `Ok(None)` if more input is needed.
    ///
    /// # Errors
    /// [`CodecError::Invalid`] when a top-level value does not start with `{` or `[`;
    /// [`CodecError::TooLarge`] when a value exceeds the limit. Both are final.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, CodecError> {
        let buf = &self.buf;
        let mut i = self.scan;
        let end = buf.len();
        while i < end {
            let b = buf[i];
            if self.depth == 0 {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {
                        // Whitespace between values is dropped.
                        self.start = i + 1;
                    }
                    b'{' | b'[' => self.depth = 1,
                    _ => {
                        return Err(CodecError::Invalid(format!(
                            "unexpected byte 0x{b:02x} between messages"
                        )))
                    }
                }
            } else if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                } else {
                    // Jump to the next quote or backslash: string bodies are most of
                    // the bytes, and need no look at each byte.
                    match memchr::memchr2(b'"', b'\\', &buf[i..end]) {
                        Some(k) => i += k,
                        None => i = end,
                    }
                    if i - self.start > self.max {
                        return Err(CodecError::TooLarge { limit: self.max });
                    }
                    continue;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            let from = self.start;
                            self.start = i + 1;
                            self.scan = i + 1;
                            return Ok(Some(&self.buf[from..i + 1]));
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
            if self.depth > 0 && i - self.start > self.max {
                return Err(CodecError::TooLarge { limit: self.max });
            }
        }
        self.scan = i;
        Ok(None)
    }

    /// The next complete value, parsed.
    ///
    /// # Errors
    /// As [`Framer::next_frame`], plus [`CodecError::Invalid`] when the framed bytes are
    /// not valid JSON.
    pub fn next_value(&mut self) -> Result<Option<Value>, CodecError> {
        match self.next_frame()? {
            None => Ok(None),
            Some(frame) => serde_json::from_slice(frame)
                .map(Some)
                .map_err(|e| CodecError::Invalid(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<Value> {
        let mut out = vec![];
        while let Some(v) = f.next_value().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn two_messages_one_read() {
        let mut f = Framer::default();
        f.extend(
            br#"{"id":1,"result":[],"error":null}{"id":null,"method":"update3","params":["x"]}"#,
        );
        let v = all(&mut f);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1]["method"], "update3");
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn split_everywhere_including_escapes() {
        let msg = br#" {"a":"x\"}]{[\\","b":[1,{"c":"\u00e9}"}]} "#;
        for cut in 0..msg.len() {
            let mut f = Framer::default();
            f.extend(&msg[..cut]);
            let mut got = all(&mut f);
            f.extend(&msg[cut..]);
            got.extend(all(&mut f));
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0]["a"], "x\"}]{[\\");
            assert_eq!(got[0]["b"][1]["c"], "\u{e9}}");
        }
    }

    #[test]
    fn garbage_and_limits() {
        let mut f = Framer::default();
        f.extend(b"hello");
        assert!(matches!(f.next_frame(), Err(CodecError::Invalid(_))));
        let mut f = Framer::new(8);
        f.extend(b"{\"aaaaaaaaaaaa");
        assert_eq!(f.next_frame(), Err(CodecError::TooLarge { limit: 8 }));
        let mut f = Framer::default();
        f.extend(b"{\"a\":tru}");
        assert!(matches!(f.next_value(), Err(CodecError::Invalid(_))));
    }

    #[test]
    fn large_message_in_pieces_is_linear() {
        // 4 MB in 64 KiB reads: each byte is scanned once.
        let mut big = String::from("{\"rows\":[");
        for i in 0..100_000 {
            if i > 0 {
                big.push(',');
            }
            big.push_str(&format!("{{\"name\":\"lb-{i}\",\"v\":\"a\\\"b\"}}"));
        }
        big.push_str("]}");
        let mut f = Framer::default();
        let mut n = 0;
        for chunk in big.as_bytes().chunks(64 * 1024) {
            f.extend(chunk);
            n += all(&mut f).len();
        }
        assert_eq!(n, 1);
    }
}
