//! Point-in-time restore for MySQL/MariaDB: the newest dump before the target
//! plus the captured binlog from the dump's coordinates to the stopping point.
//!
//! Every target (a time, a GTID, a position) becomes one stopping point: a
//! file and the position of the first event not replayed, always at a
//! transaction boundary. It is found by reading the captured file itself, so
//! the plan shows exactly where replay ends before anything is touched.

use super::JobError;
use super::binlog::base_coords;
use crate::repo::Repository;
use crate::repo::binlogcat::{self, BinlogRecord, Gtid, Stored};
use crate::repo::index::Index;
use crate::repo::reader::read_stream;
use crate::repo::snapshot::Snapshot;
use crate::source::binlog::{Event, FileScan, split_name};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum At {
    Time(DateTime<Utc>),
    Gtid(Gtid),
    Position(String, u64),
}

impl At {
    pub fn describe(&self) -> String {
        match self {
            At::Time(t) => format!("time {}", t.to_rfc3339()),
            At::Gtid(g) => format!("GTID {g} (inclusive)"),
            At::Position(f, p) => format!("position {f}:{p} (events before it)"),
        }
    }
}

/// Where replay stops, and what the last replayed transaction was.
#[derive(Debug, Clone, Serialize)]
pub struct StopPoint {
    pub file: String,
    /// The first byte not replayed.
    pub position: u64,
    pub last_event_time: Option<DateTime<Utc>>,
    pub last_gtid: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PitrPlan {
    pub target: String,
    pub base_snapshot: String,
    pub base_time: DateTime<Utc>,
    pub base_file: String,
    pub base_position: u64,
    pub base_gtid: Option<String>,
    pub database: String,
    pub files: Vec<String>,
    pub bytes: u64,
    pub stop: StopPoint,
    #[serde(skip)]
    pub base: Option<Snapshot>,
    #[serde(skip)]
    records: Vec<BinlogRecord>,
}

fn refuse(m: impl Into<String>) -> JobError {
    JobError::Refused(m.into())
}

fn seq(file: &str) -> u64 {
    split_name(file).map_or(0, |(_, n)| n)
}

/// Work out base, files and stopping point; refuse what cannot be done.
pub async fn plan(repo: &Arc<Repository>, name: &str, at: &At, database: Option<&str>) -> Result<PitrPlan, JobError> {
    let all = binlogcat::load_all(repo).await?;
    let (files, _) = binlogcat::current(&all, name);
    let (Some(first), Some(last)) = (files.first(), files.last()) else {
        return Err(refuse(format!("no binlog is captured for {name:?}: run `drtool binlog POLICY` to capture it")));
    };
    let span = format!("{} .. {} position {}", first.record.file, last.record.file, last.record.size);
    let index = Arc::new(repo.load_index().await?);
    let stop = stop_point(repo, &index, &files, at, &span).await?;
    let snaps = repo.list_snapshots().await?;
    let mut candidates: Vec<(&Snapshot, String, String, u64, Option<String>)> = Vec::new();
    for s in snaps.iter().filter(|s| s.manifest.name == name && s.manifest.source.kind == "mysql") {
        let coords = base_coords(s);
        let pick = match database {
            Some(db) => coords.into_iter().find(|c| c.0.as_deref() == Some(db)),
            None if coords.len() == 1 => coords.into_iter().next(),
            None => None,
        };
        if let Some((Some(db), f, p, g)) = pick {
            candidates.push((s, db, f, p, g));
        }
    }
    if candidates.is_empty() {
        return Err(refuse(match database {
            Some(db) => format!("no dump of database {db:?} named {name:?} records binlog coordinates"),
            None => format!(
                "no single-database dump named {name:?} with binlog coordinates: name the database in the --to URL"
            ),
        }));
    }
    let stop_key = (seq(&stop.file), stop.position);
    let Some((snap, db, bfile, bpos, bgtid)) = candidates
        .iter()
        .filter(|c| (seq(&c.2), c.3) <= stop_key)
        .max_by_key(|c| ((seq(&c.2), c.3), c.0.manifest.time))
        .cloned()
    else {
        let oldest = candidates.iter().min_by_key(|c| (seq(&c.2), c.3)).map(|c| (c.2.clone(), c.3, c.0.manifest.time));
        let (f, p, t) = oldest.unwrap_or_default();
        return Err(refuse(format!(
            "the target ({}, stopping at {}:{}) is before the oldest base backup of {name:?} ({f}:{p}, taken {}): \
             nothing to start from",
            at.describe(),
            stop.file,
            stop.position,
            t.format("%Y-%m-%d %H:%M:%S UTC")
        )));
    };
    let range: Vec<Stored> =
        files.iter().filter(|s| s.record.seq >= seq(&bfile) && s.record.seq <= seq(&stop.file)).cloned().collect();
    if range.first().map(|s| &s.record.file) != Some(&bfile) {
        return Err(refuse(format!(
            "the base backup {} starts at {bfile}:{bpos}, which the binlog capture of {name:?} does not hold \
             (captured: {span})",
            snap.id.short()
        )));
    }
    if let Some(g) = binlogcat::gaps(&range).first() {
        return Err(refuse(format!(
            "the binlog between the base backup ({bfile}:{bpos}) and the target has a gap after {}: {}; \
             a restore cannot cross it",
            g.after, g.reason
        )));
    }
    Ok(PitrPlan {
        target: at.describe(),
        base_snapshot: snap.id.to_string(),
        base_time: snap.manifest.time,
        base_file: bfile,
        base_position: bpos,
        base_gtid: bgtid,
        database: db,
        files: range.iter().map(|s| s.record.file.clone()).collect(),
        bytes: range.iter().map(|s| s.record.size).sum(),
        stop,
        base: Some(snap.clone()),
        records: range.into_iter().map(|s| s.record).collect(),
    })
}

async fn events_of(repo: &Arc<Repository>, index: &Arc<Index>, r: &BinlogRecord) -> Result<Vec<Event>, JobError> {
    let mut scan = FileScan::default();
    let mut events = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut bad = None;
    read_stream(repo, index, &r.chunks, |d| {
        carry.extend_from_slice(d);
        let before = scan.end;
        match scan.feed(&carry) {
            Ok(ev) => events.extend(ev),
            Err(e) => bad = Some(e.to_string()),
        }
        carry.drain(..(scan.end - before) as usize);
        Ok(())
    })
    .await?;
    if let Some(b) = bad {
        return Err(JobError::Repo(crate::repo::RepoError::corrupt(format!("binlog {}", r.file), b)));
    }
    Ok(events)
}

fn time(ts: u32) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(i64::from(ts), 0).single()
}

/// The stop point for `at`, from the captured files.
async fn stop_point(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    files: &[Stored],
    at: &At,
    span: &str,
) -> Result<StopPoint, JobError> {
    let point = |r: &BinlogRecord, position: u64, events: &[Event]| {
        let done: Vec<&Event> = events.iter().filter(|e| e.end <= position).collect();
        StopPoint {
            file: r.file.clone(),
            position,
            last_event_time: done.iter().rev().find(|e| e.timestamp != 0).and_then(|e| time(e.timestamp)),
            last_gtid: done.iter().rev().find_map(|e| e.gtid).map(|g| g.to_string()),
        }
    };
    match at {
        At::Position(file, pos) => {
            let Some(s) = files.iter().find(|s| &s.record.file == file) else {
                return Err(refuse(format!("{file} is not in the captured binlog ({span})")));
            };
            let events = events_of(repo, index, &s.record).await?;
            let boundary = *pos == s.record.safe_end || events.iter().any(|e| e.pos == *pos && e.trx_start == *pos);
            if *pos > s.record.safe_end {
                return Err(refuse(format!(
                    "position {file}:{pos} is past the end of the captured binlog ({span}; complete transactions \
                     end at {})",
                    s.record.safe_end
                )));
            }
            if !boundary {
                return Err(refuse(format!(
                    "position {file}:{pos} is not the start of a transaction: use a position SHOW MASTER STATUS \
                     or the binlog shows between transactions"
                )));
            }
            Ok(point(&s.record, *pos, &events))
        }
        At::Time(t) => {
            if *t > Utc::now() {
                return Err(refuse(format!("--at {} is in the future", t.to_rfc3339())));
            }
            match files.iter().find(|s| s.record.last_time.is_some_and(|l| l >= *t)) {
                Some(s) => {
                    let events = events_of(repo, index, &s.record).await?;
                    // Binlog times are whole seconds: an event stamped S happened in [S, S+1).
                    // It is replayed when S is before TIME; with a fractional TIME that
                    // includes the events of TIME's own second.
                    let first = events.iter().find(|e| e.timestamp != 0 && time(e.timestamp).is_some_and(|s| s >= *t));
                    let pos = first.map_or(s.record.safe_end, |e| e.trx_start).min(s.record.safe_end);
                    Ok(point(&s.record, pos, &events))
                }
                None => {
                    let last = &files[files.len() - 1].record;
                    if last.verified_at.is_some_and(|v| v >= *t) {
                        let events = events_of(repo, index, last).await?;
                        return Ok(point(last, last.safe_end, &events));
                    }
                    Err(refuse(format!(
                        "--at {} is past the end of the captured binlog: the newest captured event is at {}, and \
                         the capture last confirmed it was complete at {} ({span})",
                        t.to_rfc3339(),
                        last.last_time.map_or("-".into(), |x| x.to_rfc3339()),
                        last.verified_at.map_or("never".into(), |x| x.to_rfc3339())
                    )))
                }
            }
        }
        At::Gtid(g) => {
            let holds = |r: &BinlogRecord| {
                let start =
                    r.gtid_start.iter().find(|x| (x.domain, x.server) == (g.domain, g.server)).map_or(0, |x| x.seq);
                let end = r.gtid_end.iter().find(|x| (x.domain, x.server) == (g.domain, g.server)).map_or(0, |x| x.seq);
                start < g.seq && g.seq <= end
            };
            for s in files.iter().filter(|s| holds(&s.record)) {
                let events = events_of(repo, index, &s.record).await?;
                let Some(ge) = events.iter().find(|e| e.gtid == Some(*g)) else { continue };
                return match events.iter().find(|e| e.trx_start == ge.pos && e.ends_trx) {
                    Some(end) => Ok(point(&s.record, end.end, &events)),
                    None => Err(refuse(format!("transaction {g} is not completely captured yet ({span})"))),
                };
            }
            Err(refuse(format!("GTID {g} is not in the captured binlog ({span})")))
        }
    }
}

/// Copy the plan's binlog files out of the repository into `dir` (private).
pub async fn fetch(repo: &Arc<Repository>, plan: &PitrPlan, dir: &Path) -> Result<Vec<PathBuf>, JobError> {
    let index = Arc::new(repo.load_index().await?);
    let mut out = Vec::new();
    for r in &plan.records {
        let path = dir.join(&r.file);
        let mut f =
            std::fs::File::create(&path).map_err(|e| crate::repo::RepoError::io(path.display().to_string(), e))?;
        read_stream(repo, &index, &r.chunks, |d| std::io::Write::write_all(&mut f, d)).await?;
        out.push(path);
    }
    Ok(out)
}
