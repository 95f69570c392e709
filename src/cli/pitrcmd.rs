//! `restore --at...` of physical PostgreSQL base backups (docs/PITR.md).

use super::Global;
use super::exit::{self, Failure};
use super::output::print_json;
use crate::engine::pg_wal::Lsn;
use crate::job::pitr::{self, Point};
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use std::path::Path;
use std::sync::Arc;

/// Where point-in-time recovery stops (physical PostgreSQL base backups only).
#[derive(Args, Debug, Default, Clone)]
#[group(multiple = false)]
pub struct PointArgs {
    /// Recover to this moment: 'YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]' or RFC 3339 (no zone: UTC).
    /// With --target DIR a PostgreSQL physical restore; with --to mysql://... a dump plus the
    /// captured binlog replayed up to it.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Recover to this WAL position (e.g. 0/3000148).
    #[arg(long, value_name = "LSN")]
    pub at_lsn: Option<String>,
    /// Recover to the commit of this transaction id.
    #[arg(long, value_name = "XID")]
    pub at_xid: Option<u64>,
    /// Recover to this restore point (pg_create_restore_point).
    #[arg(long, value_name = "RESTORE_POINT")]
    pub at_name: Option<String>,
}

impl PointArgs {
    pub fn any(&self) -> bool {
        self.at.is_some() || self.at_lsn.is_some() || self.at_xid.is_some() || self.at_name.is_some()
    }

    fn point(&self) -> Result<Point, Failure> {
        if let Some(t) = &self.at {
            return parse_time(t).map(Point::Time);
        }
        if let Some(l) = &self.at_lsn {
            return Lsn::parse(l)
                .map(Point::Lsn)
                .ok_or_else(|| Failure::usage(format!("--at-lsn {l:?} is not an LSN like 0/3000148")));
        }
        if let Some(x) = self.at_xid {
            return Ok(Point::Xid(x));
        }
        if let Some(n) = &self.at_name {
            if n.is_empty() || n.len() > 63 {
                return Err(Failure::usage("--at-name must be 1 to 63 bytes (PostgreSQL's limit)"));
            }
            return Ok(Point::Name(n.clone()));
        }
        Ok(Point::End)
    }
}

pub(super) fn parse_time(s: &str) -> Result<DateTime<Utc>, Failure> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(Failure::usage(format!("--at {s:?} is not a time like '2026-01-31 14:05:00+01' (no zone means UTC)")))
}

/// Whether a restore goes this way: a point was asked for, or the snapshot is a base backup.
pub fn wanted(snap: &Snapshot, point: &PointArgs) -> bool {
    point.any() || snap.manifest.source.kind == crate::job::pgbase::KIND
}

pub async fn restore(
    g: &Global,
    repo: Arc<Repository>,
    given: Option<Snapshot>,
    name: Option<&str>,
    target: &Path,
    point: &PointArgs,
) -> Result<u8, Failure> {
    let point = point.point()?;
    if let Some(s) = &given
        && pitr::Base::of(s).is_none()
    {
        return Err(Failure::usage(format!(
            "snapshot {} is not a physical PostgreSQL base backup; --at, --at-lsn, --at-xid and --at-name need one",
            s.id.short()
        )));
    }
    let all = if given.is_none() { repo.list_snapshots().await? } else { Vec::new() };
    let base = pitr::choose_base(&all, given.as_ref(), name, &point)?;
    let addr = g.repo.clone().ok_or_else(|| Failure::usage("no repository: use --repo or set DRTOOL_REPO"))?;
    let addr = if addr.contains("://") {
        addr
    } else {
        std::path::absolute(&addr).map_err(|e| Failure::usage(e.to_string()))?.display().to_string()
    };
    let secret = repo.log_archive_secret();
    let bin = std::env::current_exe().map_err(|e| Failure::new(exit::ERROR, e))?;
    let fetch = vec![bin.display().to_string(), "wal-fetch".to_string()];
    let started = std::time::Instant::now();
    let out = pitr::restore(repo, &base, target, &point, &fetch, |a| {
        crate::job::wal::config_text(&addr, &a.info().name, &secret)
    })
    .await?;
    let ms = started.elapsed().as_millis() as u64;
    if g.json {
        print_json(&serde_json::json!({ "restore": out, "data_directory": target, "duration_ms": ms }))?;
    } else {
        eprintln!(
            "restored base backup {} (ended {}) into {} in {:.1} s; recovery target {}, timeline {}, archived WAL continuous to {}",
            out.base,
            out.base_time.format("%Y-%m-%d %H:%M:%S UTC"),
            target.display(),
            ms as f64 / 1000.0,
            out.target,
            out.timeline,
            out.wal_until.as_deref().unwrap_or("(base backup only)")
        );
        eprintln!("start PostgreSQL on it: it replays WAL to the target and promotes");
    }
    Ok(exit::OK)
}
