//! Streaming validation of `mongodump --archive` output.
//!
//! The bytes pass through unchanged while a small state machine walks the
//! format (see ../shared/fixtures/mongodump/README.md): magic number, header
//! document, collection metadata, terminator, then interleaved namespace
//! segments. A stream that ends mid-document, or before every namespace with
//! data was closed by its EOF record, is rejected even if mongodump exited 0.
//! Memory use is one BSON header document at a time; document bodies are
//! skipped, not buffered.

use std::collections::BTreeMap;
use std::io::{self, Read};

const MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];
const TERMINATOR: [u8; 4] = [0xff; 4];
/// BSON documents are at most 16 MiB; anything larger means a broken stream.
const MAX_DOC: usize = 16 * 1024 * 1024 + 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("not a mongodump archive (bad magic number)")]
    BadMagic,
    #[error("malformed archive at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("truncated archive: {0}")]
    Truncated(String),
}

/// What the archive says about itself, recorded in the snapshot manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveSummary {
    pub server_version: String,
    pub tool_version: String,
    pub format_version: String,
    /// Documents per namespace (`db.collection`; the oplog is `.oplog`).
    pub documents: BTreeMap<String, u64>,
    /// Namespaces listed in the metadata section, with their type ("", "view", "timeseries").
    pub collections: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Magic,
    Header,
    Metadata,
    SegmentStart,
    /// Inside a data segment of a namespace: documents until the terminator.
    InSegment(String),
    /// After an EOF namespace header: the terminator must follow.
    AfterEof,
    /// Skipping the rest of a document body.
    Skip(usize, Box<State>),
}

/// Pass-through reader that validates the archive as it goes.
pub struct ArchiveValidator<R> {
    inner: R,
    state: State,
    buf: Vec<u8>,
    offset: u64,
    summary: ArchiveSummary,
    open: BTreeMap<String, bool>,
    error: Option<ArchiveError>,
}

impl<R: Read> ArchiveValidator<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::Magic,
            buf: Vec::new(),
            offset: 0,
            summary: ArchiveSummary::default(),
            open: BTreeMap::new(),
            error: None,
        }
    }

    /// Call at end of stream: the archive must have ended cleanly.
    pub fn finish(self) -> Result<ArchiveSummary, ArchiveError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match &self.state {
            State::SegmentStart if self.buf.is_empty() => {}
            State::Magic | State::Header | State::Metadata => {
                return Err(ArchiveError::Truncated("ended before the collection metadata was complete".into()));
            }
            _ => {
                return Err(ArchiveError::Truncated(format!(
                    "ended in the middle of a record at byte {}",
                    self.offset
                )));
            }
        }
        if let Some((ns, _)) = self.open.iter().find(|(_, closed)| !**closed) {
            return Err(ArchiveError::Truncated(format!("namespace {ns} has no EOF record")));
        }
        Ok(self.summary)
    }

    fn malformed(&self, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Malformed { offset: self.offset, reason: reason.into() }
    }

    /// Length of the BSON document at the front of `buf`, if its prefix is there.
    fn doc_len(&self) -> Result<Option<usize>, ArchiveError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let n = i32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if n < 5 || n as usize > MAX_DOC {
            return Err(self.malformed(format!("impossible document length {n}")));
        }
        Ok(Some(n as usize))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.offset += n as u64;
    }

    /// Advance the state machine over buffered bytes as far as possible.
    fn step(&mut self) -> Result<(), ArchiveError> {
        loop {
            match self.state.clone() {
                State::Skip(left, next) => {
                    let n = left.min(self.buf.len());
                    self.consume(n);
                    if n < left {
                        self.state = State::Skip(left - n, next);
                        return Ok(());
                    }
                    self.state = *next;
                }
                State::Magic => {
                    if self.buf.len() < 4 {
                        return Ok(());
                    }
                    if self.buf[..4] != MAGIC {
                        return Err(ArchiveError::BadMagic);
                    }
                    self.consume(4);
                    self.state = State::Header;
                }
                State::Header => {
                    let Some(doc) = self.take_doc()? else { return Ok(()) };
                    let f = bson_fields(&doc).map_err(|r| self.malformed(r))?;
                    self.summary.server_version = f.get("server_version").cloned().unwrap_or_default();
                    self.summary.tool_version = f.get("tool_version").cloned().unwrap_or_default();
                    self.summary.format_version = f.get("version").cloned().unwrap_or_default();
                    self.state = State::Metadata;
                }
                State::Metadata => {
                    let Some(end) = self.terminator_next() else { return Ok(()) };
                    if end {
                        continue;
                    }
                    let Some(doc) = self.take_doc()? else { return Ok(()) };
                    let f = bson_fields(&doc).map_err(|r| self.malformed(r))?;
                    let ns = namespace(&f);
                    self.summary.collections.insert(ns, f.get("type").cloned().unwrap_or_default());
                }
                State::SegmentStart => {
                    let Some(doc) = self.take_doc()? else { return Ok(()) };
                    let f = bson_fields(&doc).map_err(|r| self.malformed(r))?;
                    if !f.contains_key("EOF") {
                        return Err(self.malformed("expected a namespace header"));
                    }
                    let ns = namespace(&f);
                    if f.get("EOF").map(String::as_str) == Some("true") {
                        self.open.insert(ns, true);
                        self.state = State::AfterEof;
                    } else {
                        if self.open.get(&ns) == Some(&true) {
                            return Err(self.malformed(format!("data for {ns} after its EOF record")));
                        }
                        self.open.insert(ns.clone(), false);
                        self.summary.documents.entry(ns.clone()).or_insert(0);
                        self.state = State::InSegment(ns);
                    }
                }
                State::AfterEof => {
                    let Some(end) = self.terminator_next() else { return Ok(()) };
                    if !end {
                        return Err(self.malformed("EOF record not followed by the terminator"));
                    }
                }
                State::InSegment(ns) => {
                    let Some(end) = self.terminator_next() else { return Ok(()) };
                    if end {
                        continue;
                    }
                    let Some(len) = self.doc_len()? else { return Ok(()) };
                    *self.summary.documents.entry(ns.clone()).or_insert(0) += 1;
                    self.state = State::Skip(len, Box::new(State::InSegment(ns)));
                }
            }
        }
    }

    /// `None`: need more bytes. `Some(true)`: a terminator was consumed and the
    /// next namespace segment starts. `Some(false)`: a document follows.
    fn terminator_next(&mut self) -> Option<bool> {
        if self.buf.len() < 4 {
            return None;
        }
        if self.buf[..4] != TERMINATOR {
            return Some(false);
        }
        self.consume(4);
        self.state = State::SegmentStart;
        Some(true)
    }

    /// Take a whole (small) document from the buffer, if it is all there.
    fn take_doc(&mut self) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(len) = self.doc_len()? else { return Ok(None) };
        if self.buf.len() < len {
            return Ok(None);
        }
        let doc = self.buf[..len].to_vec();
        self.consume(len);
        Ok(Some(doc))
    }
}

impl<R: Read> Read for ArchiveValidator<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        if n > 0 && self.error.is_none() {
            self.buf.extend_from_slice(&out[..n]);
            if let Err(e) = self.step() {
                // Recorded, not returned: the stream is still stored whole, and
                // `finish` fails the backup, with the child's exit status known.
                self.error = Some(e);
                self.buf.clear();
            }
        }
        Ok(n)
    }
}

fn namespace(f: &BTreeMap<String, String>) -> String {
    format!("{}.{}", f.get("db").map_or("", String::as_str), f.get("collection").map_or("", String::as_str))
}

/// Top-level string, int, bool fields of a BSON document, as text. Every
/// length is checked before it moves the cursor: a negative or oversized one
/// (crafted or corrupt) is an error, never a step backwards or past the end.
fn bson_fields(doc: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if doc.len() < 5 || doc[doc.len() - 1] != 0 {
        return Err("document not terminated".into());
    }
    let mut i = 4;
    let end = doc.len() - 1;
    while i < end {
        let ty = doc[i];
        i += 1;
        let name_end = doc[i..end].iter().position(|&b| b == 0).ok_or("unterminated field name")? + i;
        let name = String::from_utf8_lossy(&doc[i..name_end]).into_owned();
        i = name_end + 1;
        let size = field_size(ty, &doc[i..end])?;
        if ty == 0x02 {
            // Length prefix, bytes, NUL: field_size checked all of it is there.
            let s = &doc[i + 4..i + size - 1];
            out.insert(name, String::from_utf8_lossy(s).into_owned());
        } else if ty == 0x10 {
            out.insert(name, le32(&doc[i..end])?.to_string());
        } else if ty == 0x08 {
            out.insert(name, (doc[i] != 0).to_string());
        }
        i += size;
    }
    Ok(out)
}

/// A little-endian int32 at the start of `d`.
fn le32(d: &[u8]) -> Result<i32, String> {
    d.get(..4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| "short field".to_string())
}

/// Bytes taken by a value of BSON type `ty` at the start of `rest` (the
/// document's remaining fields), checked to lie within `rest`.
fn field_size(ty: u8, rest: &[u8]) -> Result<usize, String> {
    // A declared length: never negative, at least `min`.
    let length = |min: i32| -> Result<usize, String> {
        let n = le32(rest)?;
        if n < min {
            return Err(format!("impossible length {n} in a BSON field of type 0x{ty:02x}"));
        }
        Ok(n as usize)
    };
    let size = match ty {
        0x02 => 4 + length(1)?,
        0x10 => 4,
        0x08 => 1,
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x03 | 0x04 => length(5)?,
        0x05 => 5 + length(0)?,
        0x07 => 12,
        0x0A | 0x06 | 0xFF | 0x7F => 0,
        0x13 => 16,
        other => return Err(format!("unsupported BSON type 0x{other:02x} in a header document")),
    };
    if size > rest.len() {
        return Err("field runs past the end of its document".into());
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mongodump").join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn validate(bytes: &[u8], read_size: usize) -> Result<ArchiveSummary, ArchiveError> {
        let mut v = ArchiveValidator::new(bytes);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = v.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, bytes, "the validator must pass bytes through unchanged");
        v.finish()
    }

    #[test]
    fn real_archives_validate_with_the_documented_counts() {
        let s = validate(&fixture("test.bar.archive"), 7).unwrap();
        assert_eq!((s.server_version.as_str(), s.tool_version.as_str()), ("3.4.3", "r3.4.3"));
        assert_eq!(s.documents.get("test.bar"), Some(&1));
        assert_eq!(s.documents.get("admin.system.version"), Some(&1));

        let s = validate(&fixture("dump-w-oplog.archive"), 4096).unwrap();
        assert_eq!(s.server_version, "4.0.2");
        assert!(s.tool_version.starts_with("r4.1.3"), "{}", s.tool_version);
        assert_eq!(s.documents.get("test.foo"), Some(&25));
        assert_eq!(s.documents.get("admin.system.version"), Some(&1));
        assert_eq!(s.documents.get(".oplog"), Some(&18));

        let s = validate(&fixture("timeseries.archive"), 1000).unwrap();
        assert_eq!(s.server_version, "5.0.0-rc0");
        assert_eq!(s.documents.get("timeseries_test.system.buckets.foo_ts"), Some(&10));
        assert_eq!(s.collections.get("timeseries_test.foo_ts").map(String::as_str), Some("timeseries"));

        // Structurally valid even though mongorestore rejects its index spec.
        let s = validate(&fixture("bad-format.archive"), 13).unwrap();
        assert_eq!(s.documents.get("test.ixtest").copied().unwrap_or(0), 0);
    }

    #[test]
    fn truncated_archives_are_rejected_at_every_cut() {
        for name in ["test.bar.archive", "dump-w-oplog.archive", "timeseries.archive", "bad-format.archive"] {
            let full = fixture(name);
            let cuts: Vec<usize> = (0..full.len()).step_by((full.len() / 97).max(1)).chain([full.len() - 1]).collect();
            for cut in cuts {
                assert!(validate(&full[..cut], 64).is_err(), "{name} cut at {cut} of {} was accepted", full.len());
            }
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(validate(b"hello world, not an archive", 8), Err(ArchiveError::BadMagic));
        let mut bad = fixture("test.bar.archive");
        bad[4..8].copy_from_slice(&0x7fff_ffffi32.to_le_bytes());
        assert!(matches!(validate(&bad, 64), Err(ArchiveError::Malformed { .. })));
    }

    /// Run `f` on a thread; a validator that loops fails the test instead of hanging it.
    fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{what}: the validator did not finish ({e})"))
    }

    /// A BSON document from raw fields, its length prefix computed...
    fn doc(fields: &[u8]) -> Vec<u8> {
        with_len(fields, (fields.len() + 5) as i32)
    }

    /// ...or given, to lie.
    fn with_len(fields: &[u8], len: i32) -> Vec<u8> {
        let mut d = len.to_le_bytes().to_vec();
        d.extend_from_slice(fields);
        d.push(0);
        d
    }

    fn string(name: &str, v: &str) -> Vec<u8> {
        let mut f = vec![0x02];
        f.extend_from_slice(name.as_bytes());
        f.push(0);
        f.extend_from_slice(&(v.len() as i32 + 1).to_le_bytes());
        f.extend_from_slice(v.as_bytes());
        f.push(0);
        f
    }

    /// A field of type `ty` whose value starts with the int32 `len` (then a few bytes).
    fn sized(ty: u8, len: i32) -> Vec<u8> {
        let mut f = vec![ty, b'x', 0];
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f
    }

    fn ns(db: &str, coll: &str, eof: bool) -> Vec<u8> {
        let mut f = [string("db", db), string("collection", coll)].concat();
        f.extend_from_slice(&[0x08, b'E', b'O', b'F', 0, eof as u8]);
        doc(&f)
    }

    /// magic, header, one metadata document, one segment of `body`, its EOF.
    fn archive(header: &[u8], metadata: &[u8], body: &[u8]) -> Vec<u8> {
        let (open, eof) = (ns("d", "c", false), ns("d", "c", true));
        let parts: [&[u8]; 9] = [&MAGIC, header, metadata, &TERMINATOR, &open, body, &TERMINATOR, &eof, &TERMINATOR];
        parts.concat()
    }

    fn good_header() -> Vec<u8> {
        doc(&[string("version", "0.1"), string("server_version", "7.0.0")].concat())
    }

    fn good_metadata() -> Vec<u8> {
        doc(&[string("db", "d"), string("collection", "c")].concat())
    }

    #[test]
    fn crafted_archive_is_valid_when_not_tampered_with() {
        let s = validate(&archive(&good_header(), &good_metadata(), &doc(&string("k", "v"))), 5).unwrap();
        assert_eq!(s.documents.get("d.c"), Some(&1));
        assert_eq!(s.server_version, "7.0.0");
    }

    #[test]
    fn crafted_lengths_are_malformed_never_a_loop() {
        let body = doc(&string("k", "v"));
        let (h, m) = (good_header(), good_metadata());
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        // -3 and -8 step a field named "x" (type, name, NUL) back onto itself.
        for n in [i32::MIN, -1000, -40, -8, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 0x7fff_ffff] {
            let short = with_len(&string("k", "v"), n);
            cases.push((format!("header length {n}"), archive(&short, &m, &body)));
            cases.push((format!("metadata length {n}"), archive(&h, &short, &body)));
            cases.push((format!("body length {n}"), archive(&h, &m, &short)));
            for ty in [0x02, 0x03, 0x04, 0x05] {
                let nested = doc(&[string("version", "0.1"), sized(ty, n)].concat());
                cases.push((format!("header field 0x{ty:02x} length {n}"), archive(&nested, &m, &body)));
                cases.push((format!("metadata field 0x{ty:02x} length {n}"), archive(&h, &nested, &body)));
            }
        }
        for (what, bytes) in cases {
            let r = guarded(&what, move || validate(&bytes, 64));
            assert!(matches!(r, Err(ArchiveError::Malformed { .. })), "{what}: {r:?}");
        }
        // A document longer than what follows is, at the end of the stream, a truncation.
        let long = with_len(&string("k", "v"), 1000);
        let r = guarded("body longer than the stream", move || validate(&archive(&h, &m, &long), 64));
        assert!(matches!(r, Err(ArchiveError::Truncated(_))), "{r:?}");
    }

    #[test]
    fn mutated_real_archives_end_in_ok_or_a_clean_error() {
        guarded("mutations", || {
            for name in ["test.bar.archive", "dump-w-oplog.archive", "timeseries.archive", "bad-format.archive"] {
                let full = fixture(name);
                let step = (full.len() / 1500).max(1);
                for at in (0..full.len()).step_by(step) {
                    // Small negative lengths (which step a cursor back onto a
                    // field) where header and metadata documents are parsed.
                    let lengths = if at < 2048 { -16..4 } else { 3..4 };
                    for m in (-3i32..0).chain(lengths) {
                        let mut bad = full.clone();
                        match m {
                            -3 => bad[at] ^= 0x80,
                            -2 => bad[at] = 0xff,
                            -1 => bad[at] = 0,
                            v if at + 4 <= bad.len() => bad[at..at + 4].copy_from_slice(&v.to_le_bytes()),
                            _ => continue,
                        }
                        // Ok or Err both fine: what matters is that it returns.
                        let _ = validate(&bad, 512);
                    }
                }
            }
        });
    }
}
