//! Streaming inspection of mysqldump / mariadb-dump SQL output.
//!
//! The bytes pass through unchanged while a small scanner reads what the dump
//! says about itself: the tool and server versions in the header comments,
//! the binary log coordinates and GTID position written by `--master-data=2`
//! / `--gtid`, the rows each table's INSERT statements carry (counted from the
//! stream itself, so they match the dump exactly, not a later state of the
//! server), and the `-- Dump completed` trailer that only a dump that ran to
//! its end writes. A stream without the trailer is truncated and fails the
//! backup even when the tool exited 0.

use std::collections::BTreeMap;
use std::io::{self, Read};

/// Longest line prefix kept for recognising header and statement lines.
const LINE_KEEP: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DumpSummary {
    /// e.g. "MariaDB dump 10.19  Distrib 10.11.14-MariaDB, for debian-linux-gnu (x86_64)".
    pub tool: Option<String>,
    pub server_version: Option<String>,
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    /// MariaDB `gtid_slave_pos` or MySQL `GTID_PURGED` at the dump's snapshot.
    pub gtid: Option<String>,
    /// Rows per table as dumped; tables without rows are present with 0.
    pub tables: BTreeMap<String, u64>,
    pub completed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    In(u8),
    Escape(u8),
}

#[derive(Debug)]
enum Mode {
    /// Collecting a line (its first LINE_KEEP bytes).
    Line,
    /// Skipping the rest of an uninteresting long line.
    SkipLine,
    /// Inside `INSERT INTO t VALUES ...;` counting top-level tuples.
    Insert { table: String, depth: u32, quote: Quote },
}

/// Pass-through reader that inspects a SQL dump as it goes.
pub struct DumpInspector<R> {
    inner: R,
    mode: Mode,
    line: Vec<u8>,
    summary: DumpSummary,
}

impl<R: Read> DumpInspector<R> {
    pub fn new(inner: R) -> Self {
        DumpInspector { inner, mode: Mode::Line, line: Vec::with_capacity(256), summary: DumpSummary::default() }
    }

    /// What was seen; an error if the dump did not end with its trailer.
    /// A last line without its newline is not looked at: a trailer cut short
    /// is a truncated dump.
    pub fn finish(self) -> Result<DumpSummary, String> {
        if !self.summary.completed {
            return Err("the dump ended without its \"-- Dump completed\" trailer: it is truncated".into());
        }
        Ok(self.summary)
    }

    fn scan(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match &mut self.mode {
                Mode::SkipLine => match data[i..].iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        i += p + 1;
                        self.mode = Mode::Line;
                    }
                    None => return,
                },
                Mode::Line => {
                    let b = data[i];
                    i += 1;
                    if b == b'\n' {
                        self.end_line();
                        continue;
                    }
                    self.line.push(b);
                    if let Some(table) = insert_prefix(&self.line) {
                        self.line.clear();
                        self.summary.tables.entry(table.clone()).or_insert(0);
                        self.mode = Mode::Insert { table, depth: 0, quote: Quote::None };
                    } else if self.line.len() >= LINE_KEEP || !could_matter(&self.line) {
                        self.line.clear();
                        self.mode = Mode::SkipLine;
                        // The newline that ends the skipped line may be this very byte's successor.
                    }
                }
                Mode::Insert { table, depth, quote } => {
                    let mut rows = 0u64;
                    let mut end = None;
                    for (k, &b) in data[i..].iter().enumerate() {
                        match *quote {
                            Quote::Escape(q) => *quote = Quote::In(q),
                            Quote::In(q) if b == b'\\' => *quote = Quote::Escape(q),
                            Quote::In(q) if b == q => *quote = Quote::None,
                            Quote::In(_) => {}
                            Quote::None => match b {
                                b'\'' | b'"' => *quote = Quote::In(b),
                                b'(' => {
                                    if *depth == 0 {
                                        rows += 1;
                                    }
                                    *depth += 1;
                                }
                                b')' => *depth = depth.saturating_sub(1),
                                b';' if *depth == 0 => {
                                    end = Some(k);
                                    break;
                                }
                                _ => {}
                            },
                        }
                    }
                    if let Some(n) = self.summary.tables.get_mut(table.as_str()) {
                        *n += rows;
                    }
                    match end {
                        Some(k) => {
                            i += k + 1;
                            // The statement's line ends right after the semicolon.
                            self.mode = Mode::SkipLine;
                        }
                        None => return,
                    }
                }
            }
        }
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        self.mode = Mode::Line;
        let s = &mut self.summary;
        if let Some(rest) =
            line.strip_prefix("-- ").filter(|r| r.starts_with("MariaDB dump") || r.starts_with("MySQL dump"))
        {
            s.tool.get_or_insert_with(|| rest.trim().to_string());
        } else if let Some(v) = line.strip_prefix("-- Server version") {
            s.server_version.get_or_insert_with(|| v.trim().to_string());
        } else if line.starts_with("-- Dump completed") {
            s.completed = true;
        } else if let Some(t) = line.strip_prefix("CREATE TABLE ").and_then(backtick_ident) {
            s.tables.entry(t).or_insert(0);
        } else if line.contains("CHANGE MASTER TO MASTER_LOG_FILE=") || line.contains("CHANGE REPLICATION SOURCE TO") {
            s.binlog_file = quoted_after(&line, "_LOG_FILE='");
            s.binlog_position = number_after(&line, "_LOG_POS=");
        } else if line.contains("gtid_slave_pos=") || line.contains("GTID_PURGED=") {
            s.gtid = line.rsplit_once("'").and_then(|(head, _)| head.rsplit_once('\'')).map(|(_, g)| g.to_string());
        }
    }
}

impl<R: Read> Read for DumpInspector<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n]);
        Ok(n)
    }
}

/// Whether a line that starts like `line` can be one we look at: comments,
/// CREATE TABLE, INSERT and (MySQL 8's) SET @@GLOBAL.GTID_PURGED.
fn could_matter(line: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[b"-- ", b"CREATE TABLE `", b"INSERT INTO `", b"SET @@GLOBAL.GTID_PURGED", b"--\t"];
    line.len() < 2 || PREFIXES.iter().any(|p| p.starts_with(line) || line.starts_with(p))
}

/// `INSERT INTO `name` VALUES` complete at the end of `line`: the table name.
fn insert_prefix(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"INSERT INTO ")?;
    let (name, used) = parse_backtick(rest)?;
    let after = &rest[used..];
    // Both "VALUES (" on one line (MySQL) and "VALUES\n(" (MariaDB 10.11+) occur;
    // the tuple counter takes over right after the keyword.
    (after == b" VALUES").then_some(name)
}

fn backtick_ident(s: &str) -> Option<String> {
    parse_backtick(s.as_bytes()).map(|(n, _)| n)
}

/// A backtick-quoted identifier at the start of `b` (doubled backticks escape one).
fn parse_backtick(b: &[u8]) -> Option<(String, usize)> {
    if b.first() != Some(&b'`') {
        return None;
    }
    let mut name = Vec::new();
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'`' {
            if b.get(i + 1) == Some(&b'`') {
                name.push(b'`');
                i += 2;
                continue;
            }
            return Some((String::from_utf8_lossy(&name).into_owned(), i + 1));
        }
        name.push(b[i]);
        i += 1;
    }
    None
}

fn quoted_after(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split('\'').next().map(str::to_string)
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real mariadb-dump 10.11 output (trimmed), with awkward strings.
    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n\
-- MariaDB dump 10.19  Distrib 10.11.14-MariaDB, for debian-linux-gnu (x86_64)\n\
--\n\
-- Host: 127.0.0.1    Database: app\n\
-- ------------------------------------------------------\n\
-- Server version\t10.11.14-MariaDB-0+deb12u2-log\n\
\n\
-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=2940;\n\
DROP TABLE IF EXISTS `empty_t`;\n\
CREATE TABLE `empty_t` (\n  `x` int(11) DEFAULT NULL\n) ENGINE=InnoDB;\n\
CREATE TABLE `t` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB;\n\
LOCK TABLES `t` WRITE;\n\
INSERT INTO `t` VALUES\n\
(4,'h\u{e9}llo \\'q\\' \\\\ ),(',0x00FF27,NULL),\n\
(5,'\u{1F600}',NULL,5),\n\
(6,'a;b','',0);\n\
INSERT INTO `t` VALUES (7,'x\"y',NULL,1),(8,\"dq ) ( ;\",NULL,2);\n\
CREATE TABLE `we``ird` (\n  `x` int\n);\n\
INSERT INTO `we``ird` VALUES (1);\n\
-- SET GLOBAL gtid_slave_pos='0-1-14';\n\
-- Dump completed on 2026-11-22  8:23:42\n";

    fn inspect_in_pieces(data: &[u8], piece: usize) -> Result<DumpSummary, String> {
        let mut insp = DumpInspector::new(data);
        let mut out = Vec::new();
        let mut buf = vec![0u8; piece];
        loop {
            let n = insp.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data, "bytes pass through unchanged");
        insp.finish()
    }

    #[test]
    fn reads_versions_positions_and_row_counts() {
        // Every read size, down to one byte, gives the same answer.
        for piece in [1, 2, 3, 7, 64, 4096] {
            let s = inspect_in_pieces(DUMP.as_bytes(), piece).unwrap();
            assert_eq!(
                s.tool.as_deref(),
                Some("MariaDB dump 10.19  Distrib 10.11.14-MariaDB, for debian-linux-gnu (x86_64)")
            );
            assert_eq!(s.server_version.as_deref(), Some("10.11.14-MariaDB-0+deb12u2-log"));
            assert_eq!(s.binlog_file.as_deref(), Some("mysql-bin.000001"));
            assert_eq!(s.binlog_position, Some(2940));
            assert_eq!(s.gtid.as_deref(), Some("0-1-14"));
            let want: BTreeMap<String, u64> =
                [("empty_t", 0), ("t", 5), ("we`ird", 1)].iter().map(|(k, v)| (k.to_string(), *v)).collect();
            assert_eq!(s.tables, want, "piece {piece}");
        }
    }

    #[test]
    fn truncated_dumps_are_rejected() {
        let full = DUMP.as_bytes();
        for cut in [0, 10, full.len() / 2, full.len() - 5] {
            let e = inspect_in_pieces(&full[..cut], 64).unwrap_err();
            assert!(e.contains("truncated"), "{e}");
        }
    }

    #[test]
    fn mysql_8_single_line_inserts_and_gtid_purged() {
        let dump = "-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)\n\
-- Server version\t8.0.36\n\
SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5';\n\
CREATE TABLE `a` (`x` int);\n\
INSERT INTO `a` VALUES (1),(2),(3);\n\
-- Dump completed on 2026-01-01 10:00:00\n";
        let s = inspect_in_pieces(dump.as_bytes(), 5).unwrap();
        assert_eq!(s.gtid.as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"));
        assert_eq!(s.tables.get("a"), Some(&3));
    }
}
