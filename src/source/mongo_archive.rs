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

/// Top-level string, int, bool fields of a BSON document, as text.
fn bson_fields(doc: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if doc.len() < 5 || doc[doc.len() - 1] != 0 {
        return Err("document not terminated".into());
    }
    let mut i = 4;
    let end = doc.len() - 1;
    let le32 = |d: &[u8], at: usize| -> Result<usize, String> {
        d.get(at..at + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("short field".to_string())
    };
    while i < end {
        let ty = doc[i];
        i += 1;
        let name_end = doc[i..end].iter().position(|&b| b == 0).ok_or("unterminated field name")? + i;
        let name = String::from_utf8_lossy(&doc[i..name_end]).into_owned();
        i = name_end + 1;
        let (value, size) = match ty {
            0x02 => {
                let n = le32(doc, i)?;
                let s = doc.get(i + 4..i + 4 + n.saturating_sub(1)).ok_or("short string")?;
                (Some(String::from_utf8_lossy(s).into_owned()), 4 + n)
            }
            0x10 => (Some(le32(doc, i)?.to_string()), 4),
            0x08 => (Some((doc.get(i).copied().ok_or("short bool")? != 0).to_string()), 1),
            0x01 | 0x09 | 0x11 | 0x12 => (None, 8),
            0x03 | 0x04 => (None, le32(doc, i)?),
            0x05 => (None, 5 + le32(doc, i)?),
            0x07 => (None, 12),
            0x0A | 0x06 | 0xFF | 0x7F => (None, 0),
            0x13 => (None, 16),
            other => return Err(format!("unsupported BSON type 0x{other:02x} in a header document")),
        };
        if let Some(v) = value {
            out.insert(name, v);
        }
        i += size;
    }
    if i != end {
        return Err("field runs past the end of its document".into());
    }
    Ok(out)
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
}
