//! MariaDB/MySQL binary log files (format v4), read incrementally.
//!
//! A binlog file is a 4-byte magic followed by events, each with a 19-byte
//! header: timestamp (u32), type (u8), server id (u32), event size (u32),
//! end position (u32), flags (u16), all little-endian. The scanner reads only
//! what point-in-time recovery needs: event boundaries, times, the server id,
//! MariaDB GTIDs (GTID_EVENT 162, GTID_LIST 163 at the start of each file),
//! where transactions end (XID, COMMIT, a standalone statement), and whether
//! the file is finished (ROTATE or STOP at its end). It never needs the
//! server: the same code checks a file being captured and one fetched back.

pub use crate::repo::binlogcat::{Gtid, GtidState, format_list, list_to_state, state_to_list};
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
pub const HEADER_LEN: usize = 19;
/// Larger than any event a server writes (max_allowed_packet is at most 1 GiB).
const MAX_EVENT: u32 = 1 << 30;

const QUERY: u8 = 2;
const STOP: u8 = 3;
const ROTATE: u8 = 4;
const FORMAT_DESCRIPTION: u8 = 15;
const XID: u8 = 16;
const GTID: u8 = 162;
const GTID_LIST: u8 = 163;
/// GTID event flag: the transaction is one statement without BEGIN/COMMIT (DDL).
const FL_STANDALONE: u8 = 1;

/// One event's header and what was read from its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Offset of the event's first byte in the file.
    pub pos: u64,
    pub end: u64,
    pub timestamp: u32,
    pub kind: u8,
    pub server_id: u32,
    /// For GTID events.
    pub gtid: Option<Gtid>,
    /// Start of the transaction this event belongs to (its GTID event), or
    /// its own position when outside one.
    pub trx_start: u64,
    /// The transaction is complete after this event.
    pub ends_trx: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BinlogError {
    #[error("not a binary log: the file does not start with the binlog magic bytes")]
    NoMagic,
    #[error("damaged binary log at position {pos}: {reason}")]
    Damaged { pos: u64, reason: String },
}

/// What is known about a file from its events so far. Serialisable so a
/// capture resumes scanning where its last stored version ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileScan {
    /// Offset after the last complete event read (0 before the magic).
    pub end: u64,
    /// End of the last complete transaction: a restore may stop here.
    pub safe_end: u64,
    pub first_time: Option<u32>,
    pub last_time: Option<u32>,
    pub server_id: Option<u32>,
    /// The state the file started with (its GTID_LIST event).
    pub gtid_start: Option<Vec<Gtid>>,
    /// The state after the last event read.
    pub gtid_end: Vec<Gtid>,
    /// First and last GTID written in this file.
    pub first_gtid: Option<Gtid>,
    pub last_gtid: Option<Gtid>,
    /// A ROTATE or STOP event was read: nothing follows in this file.
    pub complete: bool,
    /// The file a ROTATE event names next.
    pub next_file: Option<String>,
    /// Events end with a 4-byte CRC32 (from the format description event).
    pub checksum: bool,
    /// Inside a transaction: its GTID event's position and whether it is standalone.
    pub open_trx: Option<(u64, bool)>,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]])
}

impl FileScan {
    /// Read the complete events in `data`, which are the file's bytes from
    /// offset `self.end`. Returns the events; `self.end` moves past the last
    /// complete one (a partial event at the end is left for the next call).
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>, BinlogError> {
        let mut i = 0usize;
        let mut out = Vec::new();
        if self.end == 0 {
            if data.len() < 4 {
                return Ok(out);
            }
            if data[..4] != MAGIC {
                return Err(BinlogError::NoMagic);
            }
            i = 4;
            self.end = 4;
            self.safe_end = 4;
        }
        while !self.complete && data.len() - i >= HEADER_LEN {
            let h = &data[i..i + HEADER_LEN];
            let pos = self.end;
            let size = u32_at(h, 9);
            if !(HEADER_LEN as u32..=MAX_EVENT).contains(&size) {
                return Err(BinlogError::Damaged { pos, reason: format!("impossible event size {size}") });
            }
            let size = size as usize;
            if data.len() - i < size {
                break;
            }
            let ev = self.event(pos, &data[i..i + size])?;
            i += size;
            self.end = pos + size as u64;
            out.push(ev);
        }
        Ok(out)
    }

    fn event(&mut self, pos: u64, e: &[u8]) -> Result<Event, BinlogError> {
        let (timestamp, kind, server_id) = (u32_at(e, 0), e[4], u32_at(e, 5));
        let end = pos + e.len() as u64;
        let log_pos = u64::from(u32_at(e, 13));
        if log_pos != 0 && log_pos != end {
            return Err(BinlogError::Damaged { pos, reason: format!("event says it ends at {log_pos}, not {end}") });
        }
        let crc = if self.checksum { 4 } else { 0 };
        let body = &e[HEADER_LEN..e.len().saturating_sub(crc).max(HEADER_LEN)];
        let short = || BinlogError::Damaged { pos, reason: format!("event type {kind} too short") };
        let mut ev = Event { pos, end, timestamp, kind, server_id, gtid: None, trx_start: pos, ends_trx: false };
        match kind {
            FORMAT_DESCRIPTION => {
                // The checksum algorithm is the byte before the event's own CRC.
                self.checksum = e.len() >= HEADER_LEN + 5 && e[e.len() - 5] == 1;
                self.server_id.get_or_insert(server_id);
            }
            GTID => {
                if body.len() < 13 {
                    return Err(short());
                }
                let g = Gtid { domain: u32_at(body, 8), server: server_id, seq: u64_at(body, 0) };
                ev.gtid = Some(g);
                self.open_trx = Some((pos, body[12] & FL_STANDALONE != 0));
                self.safe_end = pos;
                let mut state = list_to_state(&self.gtid_end);
                state.insert((g.domain, g.server), g.seq);
                self.gtid_end = state_to_list(&state);
                self.first_gtid.get_or_insert(g);
                self.last_gtid = Some(g);
            }
            GTID_LIST => {
                if body.len() < 4 {
                    return Err(short());
                }
                let n = (u32_at(body, 0) & 0x0fff_ffff) as usize;
                if body.len() < 4 + 16 * n {
                    return Err(short());
                }
                let list: Vec<Gtid> = (0..n)
                    .map(|k| {
                        let b = &body[4 + 16 * k..];
                        Gtid { domain: u32_at(b, 0), server: u32_at(b, 4), seq: u64_at(b, 8) }
                    })
                    .collect();
                if self.gtid_start.is_none() {
                    self.gtid_end = list.clone();
                    self.gtid_start = Some(list);
                }
            }
            ROTATE | STOP => {
                if kind == ROTATE && body.len() > 8 {
                    self.next_file = Some(String::from_utf8_lossy(&body[8..]).into_owned());
                }
                self.complete = true;
            }
            _ => {}
        }
        if let Some((start, standalone)) = self.open_trx {
            ev.trx_start = start;
            let ends = kind == XID || (kind == QUERY && (standalone || is_commit(body)));
            if ends {
                ev.ends_trx = true;
                self.open_trx = None;
                self.safe_end = end;
            }
        } else if kind != GTID {
            ev.ends_trx = true;
            self.safe_end = end;
        }
        if timestamp != 0 {
            self.first_time.get_or_insert(timestamp);
            self.last_time = Some(timestamp);
        }
        Ok(ev)
    }
}

/// Whether a QUERY event's statement is COMMIT (the end of a non-XA transaction).
fn is_commit(body: &[u8]) -> bool {
    // Post-header: thread id 4, exec time 4, db length 1, error 2, status vars length 2.
    if body.len() < 13 {
        return false;
    }
    let db_len = body[8] as usize;
    let status_len = u16::from_le_bytes([body[11], body[12]]) as usize;
    let start = 13 + status_len + db_len + 1;
    body.get(start..).is_some_and(|q| q.eq_ignore_ascii_case(b"COMMIT"))
}

/// The numeric suffix of a binlog file name (`mysql-bin.000042` -> 42) and its base.
pub fn split_name(name: &str) -> Option<(&str, u64)> {
    let (base, num) = name.rsplit_once('.')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, num.parse().ok()?))
}

/// The name of the file after `name` (same base, next number, same width).
pub fn next_name(name: &str) -> Option<String> {
    let (base, n) = split_name(name)?;
    let width = name.len() - base.len() - 1;
    Some(format!("{base}.{:0width$}", n + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u8, ts: u32, pos: u64, body: &[u8]) -> Vec<u8> {
        let size = (HEADER_LEN + body.len()) as u32;
        let mut e = Vec::new();
        e.extend(ts.to_le_bytes());
        e.push(kind);
        e.extend(7u32.to_le_bytes());
        e.extend(size.to_le_bytes());
        e.extend(((pos + u64::from(size)) as u32).to_le_bytes());
        e.extend(0u16.to_le_bytes());
        e.extend(body);
        e
    }

    #[test]
    fn scans_gtids_transactions_and_rotation_across_partial_feeds() {
        let mut file = MAGIC.to_vec();
        let mut list = 1u32.to_le_bytes().to_vec();
        list.extend(0u32.to_le_bytes());
        list.extend(7u32.to_le_bytes());
        list.extend(9u64.to_le_bytes());
        for (kind, ts, body) in [
            (GTID_LIST, 100, list),
            (GTID, 101, [10u64.to_le_bytes().as_slice(), &0u32.to_le_bytes(), &[0u8]].concat()),
            (XID, 101, 5u64.to_le_bytes().to_vec()),
            (GTID, 103, [11u64.to_le_bytes().as_slice(), &0u32.to_le_bytes(), &[0u8]].concat()),
        ] {
            let pos = file.len() as u64;
            file.extend(event(kind, ts, pos, &body));
        }
        let pos = file.len() as u64;
        file.extend(event(ROTATE, 104, pos, b"\x04\0\0\0\0\0\0\0mysql-bin.000008"));
        let mut scan = FileScan::default();
        let mut events = scan.feed(&file[..30]).unwrap();
        let cut = scan.end as usize;
        events.extend(scan.feed(&file[cut..]).unwrap());
        assert_eq!(events.len(), 5);
        assert_eq!(scan.gtid_start.as_deref(), Some(&[Gtid { domain: 0, server: 7, seq: 9 }][..]));
        assert_eq!(format_list(&scan.gtid_end), "0-7-11");
        assert_eq!((scan.first_time, scan.last_time), (Some(100), Some(104)));
        assert!(scan.complete && scan.end == file.len() as u64);
        assert_eq!(scan.next_file.as_deref(), Some("mysql-bin.000008"));
        // The second transaction never committed: a restore stops before its GTID event.
        assert_eq!(scan.safe_end, events[3].pos);
        assert!(events[2].ends_trx && !events[3].ends_trx);
        assert_eq!(events[4].trx_start, events[3].pos);
    }

    #[test]
    fn rejects_garbage_and_parses_names() {
        assert_eq!(FileScan::default().feed(b"nope"), Err(BinlogError::NoMagic));
        assert_eq!(split_name("mysql-bin.000042"), Some(("mysql-bin", 42)));
        assert_eq!(next_name("mysql-bin.000042").as_deref(), Some("mysql-bin.000043"));
        assert_eq!("0-1-42".parse::<Gtid>(), Ok(Gtid { domain: 0, server: 1, seq: 42 }));
        assert!("0-1".parse::<Gtid>().is_err());
    }
}
