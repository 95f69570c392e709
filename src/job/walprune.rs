//! WAL retention (docs/PITR.md): archived WAL that no kept base backup needs
//! goes at `prune`; WAL a kept base backup needs never does.
//!
//! A restore from base B reads only segments at or after B's stop segment
//! (on whatever timeline), so everything before the oldest kept base's stop
//! segment is unreachable. History files are always kept (they are tiny and
//! every later timeline needs its ancestry). An archive with no kept base
//! backup keeps everything, and so does every archive when a snapshot
//! manifest could not be read (it might be a base backup).

use super::JobError;
use super::pitr::{Base, archive_err, seg_size_of, sysid_of};
use super::wal::KIND;
use crate::engine::pg_wal::{WalFile, segno_of};
use crate::repo::Repository;
use crate::repo::walcat::list_archives;

#[derive(Debug, Default, serde::Serialize)]
pub struct WalPruneReport {
    /// Files removed (or, in a dry run, that would be).
    pub removed: Vec<String>,
    /// Archives left whole, with the reason.
    pub kept_whole: Vec<String>,
}

pub async fn prune_wal(repo: &Repository, dry_run: bool) -> Result<WalPruneReport, JobError> {
    let mut report = WalPruneReport::default();
    let archives = list_archives(repo.store(), &repo.log_archive_secret(), KIND).await.map_err(archive_err)?;
    if archives.is_empty() {
        return Ok(report);
    }
    let ids = repo.snapshot_ids().await?.len();
    let snaps = repo.list_snapshots().await?;
    if snaps.len() != ids {
        report.kept_whole.push("all WAL archives: a snapshot manifest could not be read".into());
        return Ok(report);
    }
    let bases: Vec<Base> = snaps.iter().filter_map(Base::of).collect();
    for a in archives {
        let name = a.info().name.clone();
        let seg = seg_size_of(&a);
        let sysid = sysid_of(&a);
        let oldest = bases
            .iter()
            .filter(|b| Some(&b.system_identifier) == sysid.as_ref())
            .map(|b| segno_of(b.stop_lsn, seg))
            .min();
        let Some(oldest) = oldest else {
            report.kept_whole.push(format!("WAL archive {name:?}: no kept base backup of its server"));
            continue;
        };
        for file in a.list_files().await.map_err(archive_err)? {
            let Some(segno) = WalFile::parse(&file).and_then(|f| f.segno(seg)) else { continue };
            if segno < oldest {
                if !dry_run {
                    a.delete_file(&file).await.map_err(archive_err)?;
                }
                report.removed.push(file);
            }
        }
    }
    Ok(report)
}
