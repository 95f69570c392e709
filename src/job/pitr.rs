//! Point-in-time recovery of PostgreSQL (docs/PITR.md): pick the newest base
//! backup that precedes the target, check that the archived WAL covers the
//! way from it to the target without a gap, restore the base into a fresh
//! data directory and configure recovery to stop at the target.

use super::JobError;
use super::pgbase::KIND as BASE_KIND;
use super::restore::{self, RestoreOptions, RestoreTarget};
use super::wal::KIND as WAL_KIND;
use crate::engine::pg_wal::{Lsn, TimelineSwitch, WalFile, parse_history, segment_name, segno_of};
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::repo::walcat::{ArchiveError, LogArchive, list_archives};
use crate::target::pg_datadir::{self, RecoveryTarget};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    End,
    Time(DateTime<Utc>),
    Lsn(Lsn),
    Xid(u64),
    Name(String),
}

/// Facts of a physical base backup, from its manifest.
#[derive(Debug, Clone)]
pub struct Base {
    pub snapshot: Snapshot,
    pub system_identifier: String,
    pub timeline: u32,
    pub stop_lsn: Lsn,
    pub stop_time: DateTime<Utc>,
    pub seg_size: u64,
}

impl Base {
    pub fn of(s: &Snapshot) -> Option<Base> {
        let d = &s.manifest.source.details;
        if s.manifest.source.kind != BASE_KIND {
            return None;
        }
        Some(Base {
            system_identifier: d.get("system_identifier")?.as_str()?.to_string(),
            timeline: d.get("stop_timeline").or(d.get("timeline"))?.as_u64()? as u32,
            stop_lsn: Lsn::parse(d.get("stop_lsn")?.as_str()?)?,
            stop_time: d
                .get("stop_time")
                .and_then(|t| serde_json::from_value(t.clone()).ok())
                .unwrap_or(s.manifest.time),
            seg_size: d.get("wal_segment_size").and_then(|v| v.as_u64()).unwrap_or(16 << 20),
            snapshot: s.clone(),
        })
    }
}

/// What the archive holds, by timeline.
#[derive(Debug, Default)]
pub struct Catalog {
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    pub histories: BTreeMap<u32, Vec<TimelineSwitch>>,
}

/// The WAL reachable from a base without a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Timeline recovery follows (the newest one the base can reach).
    pub timeline: u32,
    /// Last segment (timeline, segno) reachable without a gap, if any beyond the base.
    pub last: Option<(u32, u64)>,
    /// The first missing segment, when segments exist after it (a real gap).
    pub gap: Option<String>,
}

pub async fn load_catalog(archive: &LogArchive, seg_size: u64) -> Result<Catalog, JobError> {
    let mut c = Catalog::default();
    for name in archive.list_files().await.map_err(archive_err)? {
        match WalFile::parse(&name) {
            Some(f @ WalFile::Segment { tli, .. }) => {
                c.segments.entry(tli).or_default().insert(f.segno(seg_size).unwrap_or_default());
            }
            Some(WalFile::History { tli }) => {
                let Some((_, data)) = archive.get_file(&name).await.map_err(archive_err)? else { continue };
                let h = parse_history(&String::from_utf8_lossy(&data))
                    .map_err(|e| JobError::Refused(format!("{name}: {e}")))?;
                c.histories.insert(tli, h);
            }
            _ => {}
        }
    }
    Ok(c)
}

pub fn archive_err(e: ArchiveError) -> JobError {
    JobError::Refused(e.to_string())
}

/// The path of timelines from `base_tli` to `tli`: (timeline, switch LSN out of it) pairs.
fn path_to(c: &Catalog, base_tli: u32, stop: Lsn, tli: u32) -> Result<Vec<(u32, Option<Lsn>)>, String> {
    if tli == base_tli {
        return Ok(vec![(tli, None)]);
    }
    let hist = c.histories.get(&tli).ok_or_else(|| format!("timeline {tli} has no history file in the archive"))?;
    let from = hist
        .iter()
        .position(|s| s.parent == base_tli)
        .ok_or_else(|| format!("timeline {tli} does not descend from timeline {base_tli}"))?;
    if hist[from].switch < stop {
        return Err(format!(
            "timeline {tli} forked from timeline {base_tli} at {}, before this base backup ends ({stop}); \
             it is not a child of this base backup's history",
            hist[from].switch
        ));
    }
    let mut path: Vec<(u32, Option<Lsn>)> = hist[from..].iter().map(|s| (s.parent, Some(s.switch))).collect();
    path.push((tli, None));
    Ok(path)
}

/// The newest timeline reachable from the base, and how far WAL reaches on it without a gap.
pub fn window(c: &Catalog, base: &Base) -> Window {
    let candidates = c.histories.keys().rev().copied().chain(std::iter::once(base.timeline));
    let (timeline, path) = candidates
        .filter_map(|t| path_to(c, base.timeline, base.stop_lsn, t).ok().map(|p| (t, p)))
        .next()
        .unwrap_or((base.timeline, vec![(base.timeline, None)]));
    let seg = base.seg_size;
    let mut next = segno_of(base.stop_lsn, seg);
    let mut last = None;
    let empty = BTreeSet::new();
    for (tli, switch) in path {
        let have = c.segments.get(&tli).unwrap_or(&empty);
        // The segment holding the switch point is read from the child timeline.
        let end = switch.map(|s| segno_of(s, seg));
        while end.is_none_or(|e| next < e) {
            if !have.contains(&next) {
                let beyond = have.range(next..).next().is_some();
                let gap = beyond.then(|| segment_name(tli, next, seg));
                if gap.is_some() || switch.is_some() {
                    return Window { timeline, last, gap: gap.or_else(|| Some(segment_name(tli, next, seg))) };
                }
                return Window { timeline, last, gap: None };
            }
            last = Some((tli, next));
            next += 1;
        }
    }
    Window { timeline, last, gap: None }
}

/// Choose the base: the given one, or the newest physical one of `name` that precedes `point`.
pub fn choose_base(
    all: &[Snapshot],
    given: Option<&Snapshot>,
    name: Option<&str>,
    point: &Point,
) -> Result<Base, JobError> {
    let precedes = |b: &Base| match point {
        Point::Time(t) => b.stop_time <= *t,
        Point::Lsn(l) => b.stop_lsn <= *l,
        _ => true,
    };
    if let Some(s) = given {
        let b = Base::of(s).ok_or_else(|| {
            JobError::Usage(format!("snapshot {} is not a physical PostgreSQL base backup", s.id.short()))
        })?;
        if !precedes(&b) {
            return Err(JobError::Refused(format!(
                "base backup {} ends at {} ({}), after the recovery target; choose an older one",
                s.id.short(),
                b.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
                b.stop_lsn
            )));
        }
        return Ok(b);
    }
    let bases: Vec<Base> =
        all.iter().filter(|s| name.is_none_or(|n| s.manifest.name == n)).filter_map(Base::of).collect();
    let first = bases.iter().min_by_key(|b| b.stop_time).ok_or_else(|| {
        JobError::Refused(format!(
            "no physical PostgreSQL base backup{} in the repository",
            name.map(|n| format!(" named {n:?}")).unwrap_or_default()
        ))
    })?;
    bases.iter().filter(|b| precedes(b)).max_by_key(|b| (b.stop_time, b.stop_lsn)).cloned().ok_or_else(|| {
        JobError::Refused(format!(
            "the recovery target is before the first base backup ({} ended at {}, {}): nothing to recover from",
            first.snapshot.id.short(),
            first.stop_time.format("%Y-%m-%d %H:%M:%S UTC"),
            first.stop_lsn
        ))
    })
}

/// The archive holding WAL of the base's server.
pub async fn find_archive(repo: &Repository, base: &Base) -> Result<Option<LogArchive>, JobError> {
    let secret = repo.log_archive_secret();
    let all = list_archives(repo.store(), &secret, WAL_KIND).await.map_err(archive_err)?;
    Ok(all.into_iter().find(|a| {
        a.info().identity.as_ref().and_then(|i| i.get("system_identifier")).and_then(|v| v.as_str())
            == Some(base.system_identifier.as_str())
    }))
}

/// Refuse a target the archive does not cover (exact reasons).
async fn check_covered(archive: &LogArchive, base: &Base, w: &Window, point: &Point) -> Result<(), JobError> {
    let gap = |what: &str| match &w.gap {
        Some(g) => format!("{what} lies past a gap in the WAL archive: segment {g} is missing"),
        None => format!("{what} lies past the end of the archived WAL"),
    };
    let Some((tli, segno)) = w.last else {
        return match point {
            Point::End => Ok(()),
            _ => Err(JobError::Refused(gap("the recovery target"))),
        };
    };
    let last_name = segment_name(tli, segno, base.seg_size);
    match point {
        Point::Lsn(l) if segno_of(*l, base.seg_size) > segno => Err(JobError::Refused(format!(
            "{} (WAL is continuous up to segment {last_name})",
            gap(&format!("LSN {l}"))
        ))),
        Point::Time(t) => {
            let rec = archive.record(&last_name).await.map_err(archive_err)?;
            let until = DateTime::<Utc>::from_timestamp_nanos(rec.map_or(0, |r| r.mtime_ns));
            if *t > until {
                return Err(JobError::Refused(format!(
                    "{} (WAL is continuous until {}, segment {last_name})",
                    gap(&format!("time {}", t.format("%Y-%m-%d %H:%M:%S UTC"))),
                    until.format("%Y-%m-%d %H:%M:%S UTC")
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What a point-in-time restore did.
#[derive(Debug, serde::Serialize)]
pub struct PitrOutcome {
    pub base: String,
    pub base_time: DateTime<Utc>,
    pub timeline: u32,
    pub archive: Option<String>,
    pub wal_until: Option<String>,
    pub target: String,
}

fn recovery_target(point: &Point) -> RecoveryTarget {
    match point {
        Point::End => RecoveryTarget::End,
        Point::Time(t) => RecoveryTarget::Time(t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()),
        Point::Lsn(l) => RecoveryTarget::Lsn(l.to_string()),
        Point::Xid(x) => RecoveryTarget::Xid(x.to_string()),
        Point::Name(n) => RecoveryTarget::Name(n.clone()),
    }
}

/// Restore `base` into `target` and configure recovery to `point`.
/// `fetch` is restore_command's program and arguments before `%f %p`, and
/// `config` the archive configuration text it needs (written 0600 into the target).
pub async fn restore(
    repo: Arc<Repository>,
    base: &Base,
    target: &Path,
    point: &Point,
    fetch: &[String],
    config: impl FnOnce(&LogArchive) -> String,
) -> Result<PitrOutcome, JobError> {
    pg_datadir::check_empty_target(target).map_err(JobError::Refused)?;
    let archive = find_archive(&repo, base).await?;
    let (w, archive_name) = match &archive {
        Some(a) => {
            let c = load_catalog(a, base.seg_size).await?;
            let w = window(&c, base);
            check_covered(a, base, &w, point).await?;
            (w, Some(a.info().name.clone()))
        }
        None if *point == Point::End => (Window { timeline: base.timeline, last: None, gap: None }, None),
        None => {
            return Err(JobError::Refused(
                "no WAL archive holds WAL of this server: only the base backup itself can be restored".into(),
            ));
        }
    };
    let tmp = staging_dir(target)?;
    let result = async {
        restore::run_with(repo.clone(), &base.snapshot, &RestoreTarget::Dir(tmp.clone()), &RestoreOptions::default())
            .await?;
        place(&tmp.join(crate::source::pg_physical::ROOT), target)?;
        if let Some(a) = &archive {
            let conf = target.join("drtool-wal.toml");
            pg_datadir::write_private(&conf, config(a).as_bytes(), None).map_err(io_err(&conf))?;
            let mut argv = fetch.to_vec();
            argv.extend(["--config".to_string(), conf.display().to_string()]);
            pg_datadir::configure_recovery(target, &argv, &recovery_target(point)).map_err(io_err(target))?;
        }
        let owner = if pg_datadir::is_root() { pg_datadir::os_user("postgres") } else { None };
        pg_datadir::chown_tree(target, owner).map_err(io_err(target))
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    Ok(PitrOutcome {
        base: base.snapshot.id.short(),
        base_time: base.stop_time,
        timeline: w.timeline,
        archive: archive_name,
        wal_until: w.last.map(|(t, s)| segment_name(t, s, base.seg_size)),
        target: format!("{point:?}"),
    })
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Source(crate::source::SourceError::Io { path: p.display().to_string(), source })
}

/// A fresh directory beside the target (same file system, so the data directory can be renamed into place).
fn staging_dir(target: &Path) -> Result<PathBuf, JobError> {
    let abs = std::path::absolute(target).map_err(io_err(target))?;
    let parent = abs.parent().ok_or_else(|| JobError::Usage("the target has no parent directory".into()))?;
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = tempfile::Builder::new().prefix(".drtool-restore-").tempdir_in(parent).map_err(io_err(parent))?;
    Ok(tmp.keep())
}

fn place(restored: &Path, target: &Path) -> Result<(), JobError> {
    if target.exists() {
        // Checked empty before; rmdir fails (safely) if something appeared since.
        std::fs::remove_dir(target).map_err(io_err(target))?;
    }
    std::fs::rename(restored, target).map_err(io_err(target))
}

pub fn seg_size_of(a: &LogArchive) -> u64 {
    a.info().identity.as_ref().and_then(|i| i.get("segment_size")).and_then(|v| v.as_u64()).unwrap_or(16 << 20)
}

pub fn sysid_of(a: &LogArchive) -> Option<String> {
    a.info().identity.as_ref()?.get("system_identifier")?.as_str().map(str::to_string)
}

/// Every hole in every WAL archive, per timeline, from the oldest kept base
/// backup (or the first archived segment) to the newest archived segment.
pub async fn wal_gaps(repo: &Repository, snapshots: &[Snapshot]) -> Result<Vec<String>, JobError> {
    let secret = repo.log_archive_secret();
    let bases: Vec<Base> = snapshots.iter().filter_map(Base::of).collect();
    let mut out = Vec::new();
    for a in list_archives(repo.store(), &secret, WAL_KIND).await.map_err(archive_err)? {
        let (seg, sysid) = (seg_size_of(&a), sysid_of(&a));
        let c = load_catalog(&a, seg).await?;
        for (tli, segs) in &c.segments {
            let (Some(&first), Some(&last)) = (segs.first(), segs.last()) else { continue };
            let need = bases
                .iter()
                .filter(|b| Some(&b.system_identifier) == sysid.as_ref() && b.timeline == *tli)
                .map(|b| segno_of(b.stop_lsn, seg))
                .min();
            let mut n = need.unwrap_or(first);
            while n < last {
                if segs.contains(&n) {
                    n += 1;
                    continue;
                }
                let start = n;
                while n < last && !segs.contains(&n) {
                    n += 1;
                }
                let (from, to) = (segment_name(*tli, start, seg), segment_name(*tli, n - 1, seg));
                let what = if n - start == 1 {
                    format!("segment {from} is missing")
                } else {
                    format!("segments {from} to {to} ({} segments) are missing", n - start)
                };
                out.push(format!("WAL archive {:?} timeline {tli}: {what}", a.info().name));
            }
        }
    }
    Ok(out)
}

/// The recoverable window of a physical base backup and the archive's lag, for `show`.
pub async fn window_json(repo: &Repository, snap: &Snapshot) -> Result<Option<serde_json::Value>, JobError> {
    let Some(base) = Base::of(snap) else { return Ok(None) };
    let Some(a) = find_archive(repo, &base).await? else {
        return Ok(Some(
            serde_json::json!({ "from_lsn": base.stop_lsn.to_string(), "from_time": base.stop_time, "archive": null }),
        ));
    };
    let c = load_catalog(&a, base.seg_size).await?;
    let w = window(&c, &base);
    let until = match w.last {
        Some((t, s)) => a.record(&segment_name(t, s, base.seg_size)).await.map_err(archive_err)?,
        None => None,
    };
    let newest = c.segments.iter().flat_map(|(t, s)| s.iter().map(move |n| (*n, *t))).max();
    let newest = match newest {
        Some((n, t)) => a.record(&segment_name(t, n, base.seg_size)).await.map_err(archive_err)?,
        None => None,
    };
    Ok(Some(serde_json::json!({
        "archive": a.info().name,
        "from_lsn": base.stop_lsn.to_string(),
        "from_time": base.stop_time,
        "timeline": w.timeline,
        "until_segment": until.as_ref().map(|r| r.name.clone()),
        "until_time": until.as_ref().map(|r| DateTime::<Utc>::from_timestamp_nanos(r.mtime_ns)),
        "gap": w.gap,
        "archive_lag": newest.map(|r| serde_json::json!({
            "newest_segment": r.name,
            "archived_at": r.stored,
            "age_seconds": (Utc::now() - r.stored).num_seconds().max(0),
        })),
    })))
}
