//! PostgreSQL write-ahead log as files: names, LSNs, segment headers and
//! timeline history files (docs/PITR.md). Pure parsing, no I/O.

use std::fmt;

/// A log sequence number (byte position in the WAL stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `X/Y` with hexadecimal halves, as PostgreSQL prints it.
    pub fn parse(s: &str) -> Option<Lsn> {
        let (hi, lo) = s.trim().split_once('/')?;
        let ok = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return None;
        }
        Some(Lsn((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// What an archived WAL file is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFile {
    /// A complete segment: timeline, then the 64-bit `log`/`seg` pair.
    Segment { tli: u32, log: u32, seg: u32 },
    /// The last, incomplete segment of a timeline left by a promotion.
    Partial { tli: u32, log: u32, seg: u32 },
    /// `TTTTTTTT.history`: a timeline's ancestry.
    History { tli: u32 },
    /// `<segment>.XXXXXXXX.backup`: a base backup's start/stop record.
    Backup { tli: u32, log: u32, seg: u32, offset: u32 },
}

fn hex32(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn triple(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 {
        return None;
    }
    Some((hex32(&s[..8])?, hex32(&s[8..16])?, hex32(&s[16..])?))
}

impl WalFile {
    /// Parse a file name as PostgreSQL writes it (upper-case hex); anything
    /// else, including paths, is not a WAL file name.
    pub fn parse(name: &str) -> Option<WalFile> {
        if let Some((tli, log, seg)) = triple(name) {
            return Some(WalFile::Segment { tli, log, seg });
        }
        if let Some(base) = name.strip_suffix(".partial") {
            let (tli, log, seg) = triple(base)?;
            return Some(WalFile::Partial { tli, log, seg });
        }
        if let Some(t) = name.strip_suffix(".history") {
            return Some(WalFile::History { tli: hex32(t)? });
        }
        let base = name.strip_suffix(".backup")?;
        let (seg_part, off) = base.split_once('.')?;
        let (tli, log, seg) = triple(seg_part)?;
        Some(WalFile::Backup { tli, log, seg, offset: hex32(off)? })
    }

    pub fn tli(&self) -> u32 {
        match *self {
            WalFile::Segment { tli, .. }
            | WalFile::Partial { tli, .. }
            | WalFile::History { tli }
            | WalFile::Backup { tli, .. } => tli,
        }
    }

    /// The segment number for segment-bearing files (`log`, `seg` folded).
    pub fn segno(&self, seg_size: u64) -> Option<u64> {
        match *self {
            WalFile::Segment { log, seg, .. }
            | WalFile::Partial { log, seg, .. }
            | WalFile::Backup { log, seg, .. } => Some(u64::from(log) * segs_per_log(seg_size) + u64::from(seg)),
            WalFile::History { .. } => None,
        }
    }
}

impl fmt::Display for WalFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WalFile::Segment { tli, log, seg } => write!(f, "{tli:08X}{log:08X}{seg:08X}"),
            WalFile::Partial { tli, log, seg } => write!(f, "{tli:08X}{log:08X}{seg:08X}.partial"),
            WalFile::History { tli } => write!(f, "{tli:08X}.history"),
            WalFile::Backup { tli, log, seg, offset } => write!(f, "{tli:08X}{log:08X}{seg:08X}.{offset:08X}.backup"),
        }
    }
}

fn segs_per_log(seg_size: u64) -> u64 {
    0x1_0000_0000 / seg_size.max(1)
}

/// The segment file name holding `segno` on timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let per = segs_per_log(seg_size);
    WalFile::Segment { tli, log: (segno / per) as u32, seg: (segno % per) as u32 }.to_string()
}

/// The segment that holds the byte at `lsn`.
pub fn segno_of(lsn: Lsn, seg_size: u64) -> u64 {
    lsn.0 / seg_size.max(1)
}

/// The facts in a segment's first page header (XLogLongPageHeaderData).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// XLOG_PAGE_MAGIC: changes with every major version that changes WAL.
    pub magic: u16,
    pub tli: u32,
    pub pageaddr: u64,
    pub system_identifier: u64,
    pub seg_size: u32,
    pub block_size: u32,
}

const XLP_LONG_HEADER: u16 = 0x0002;

/// Parse and sanity-check the long page header at the start of a segment.
pub fn segment_header(data: &[u8]) -> Result<SegmentHeader, String> {
    if data.len() < 40 {
        return Err(format!("{} bytes is too short for a WAL segment", data.len()));
    }
    let u16le = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]);
    let u32le = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
    let u64le = |o: usize| u64::from(u32le(o)) | (u64::from(u32le(o + 4)) << 32);
    if u16le(2) & XLP_LONG_HEADER == 0 {
        return Err("the first page has no long header (not a WAL segment)".into());
    }
    let h = SegmentHeader {
        magic: u16le(0),
        tli: u32le(4),
        pageaddr: u64le(8),
        system_identifier: u64le(24),
        seg_size: u32le(32),
        block_size: u32le(36),
    };
    let pow2 = |v: u32| v.is_power_of_two();
    if !pow2(h.seg_size) || !(1 << 20..=1 << 30).contains(&h.seg_size) || !pow2(h.block_size) || h.block_size < 1024 {
        return Err(format!("implausible segment size {} or block size {}", h.seg_size, h.block_size));
    }
    Ok(h)
}

/// The major version a page magic belongs to, where known.
pub fn major_of_magic(magic: u16) -> Option<u32> {
    Some(match magic {
        0xD093 => 9,
        0xD097 => 10,
        0xD098 => 11,
        0xD101 => 12,
        0xD106 => 13,
        0xD10D => 14,
        0xD110 => 15,
        0xD113 => 16,
        0xD116 => 17,
        _ => return None,
    })
}

/// One line of a timeline history file: `parent` ended where `switch` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSwitch {
    pub parent: u32,
    pub switch: Lsn,
}

/// Parse `N.history`: one `parentTLI <tab> switchpoint <tab> reason` line per ancestor.
pub fn parse_history(text: &str) -> Result<Vec<TimelineSwitch>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let parent = parts.next().and_then(|p| p.parse().ok());
        let switch = parts.next().and_then(Lsn::parse);
        match (parent, switch) {
            (Some(parent), Some(switch)) => out.push(TimelineSwitch { parent, switch }),
            _ => return Err(format!("malformed timeline history line {line:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for n in [
            "000000010000000000000003",
            "00000002000000010000000A.partial",
            "00000002.history",
            "000000010000000000000002.00000028.backup",
        ] {
            assert_eq!(WalFile::parse(n).unwrap().to_string(), n);
        }
        for bad in ["00000001000000000000000", "000000010000000000000003x", "0000000100000000000000ab", "../x", ""] {
            assert!(WalFile::parse(bad).is_none(), "{bad}");
        }
        let seg = WalFile::parse("000000010000000100000002").unwrap();
        assert_eq!(seg.segno(16 << 20), Some(256 + 2));
        assert_eq!(segment_name(1, 258, 16 << 20), "000000010000000100000002");
    }

    #[test]
    fn lsns_and_history() {
        let l = Lsn::parse("1/2000028").unwrap();
        assert_eq!(l.0, 0x1_0200_0028);
        assert_eq!(l.to_string(), "1/2000028");
        assert_eq!(segno_of(l, 16 << 20), 0x102);
        assert!(Lsn::parse("zz/1").is_none());
        let h =
            parse_history("1\t0/5000000\tbefore 2026-01-01\n\n2\t0/7000A0\tno recovery target specified\n").unwrap();
        assert_eq!(h[1], TimelineSwitch { parent: 2, switch: Lsn(0x7000A0) });
        assert!(parse_history("x y").is_err());
    }
}
