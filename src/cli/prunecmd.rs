//! `drtool prune`: run the repository's prune and report what it did.

use super::commands::open_repo;
use super::exit::{self, Failure};
use super::output::{bytes, outln, print_json};
use super::{Global, PruneArgs};
use crate::repo::prune::records::Stage;
use crate::repo::prune::{self, PruneOptions, PruneReport};

pub async fn run(g: &Global, a: PruneArgs) -> Result<u8, Failure> {
    let repo = open_repo(g).await?;
    let opts = PruneOptions { dry_run: a.dry_run, ..PruneOptions::default() };
    let started = std::time::Instant::now();
    let report = prune::prune(&repo, &opts).await?;
    let wal = crate::job::walprune::prune_wal(&repo, a.dry_run).await?;
    let ms = started.elapsed().as_millis() as u64;
    if g.json {
        let mut v = serde_json::to_value(&report).map_err(|e| Failure::new(exit::ERROR, e))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("freed_bytes".into(), report.freed_bytes().into());
            o.insert("pending_packs".into(), report.pending_packs().into());
            o.insert("pending_bytes".into(), report.pending_bytes().into());
            o.insert("duration_ms".into(), ms.into());
            o.insert("wal".into(), serde_json::to_value(&wal).map_err(|e| Failure::new(exit::ERROR, e))?);
        }
        print_json(&v)?;
    } else {
        human(&report, ms)?;
        let verb = if a.dry_run { "would remove" } else { "removed" };
        if !wal.removed.is_empty() {
            outln!("WAL: {verb} {} archived files no kept base backup needs", wal.removed.len());
        }
        for k in &wal.kept_whole {
            outln!("WAL: kept {k}");
        }
    }
    Ok(if report.damaged.is_empty() { exit::OK } else { exit::DAMAGED })
}

fn human(r: &PruneReport, ms: u64) -> Result<(), Failure> {
    let (copy, delete, free) =
        if r.dry_run { ("would be copied", "would delete", "would free") } else { ("copied", "deleted", "freed") };
    outln!(
        "{} snapshots; {} packs ({}) stored, of which snapshots use {}",
        r.snapshots,
        r.packs,
        bytes(r.bytes),
        bytes(r.used_bytes)
    );
    let c = &r.condemned;
    if c.unused + c.repacked + c.unindexed > 0 {
        outln!(
            "marked for deletion: {} unused, {} repacked, {} unindexed packs ({})",
            c.unused,
            c.repacked,
            c.unindexed,
            bytes(c.bytes)
        );
    }
    if r.repacked_packs > 0 {
        outln!(
            "repacking {} packs ({}): {} blobs still in use {copy} into new packs ({})",
            r.repacked_packs,
            bytes(r.repacked_bytes),
            r.repacked_blobs,
            bytes(r.new_bytes)
        );
    }
    if r.rescued_packs > 0 {
        outln!("kept {} marked packs that a backup committed or referenced meanwhile", r.rescued_packs);
    }
    outln!(
        "{delete} {} packs ({}); {free} {} in {:.1} s",
        r.deleted_packs,
        bytes(r.deleted_bytes),
        bytes(r.freed_bytes()),
        ms as f64 / 1000.0
    );
    for p in &r.pending {
        let step = match p.stage {
            Stage::Condemned => "to leave the index",
            Stage::Retired => "to be deleted",
        };
        let waiting =
            if p.waiting_for.is_empty() { "runs that have ended".to_string() } else { p.waiting_for.join("; ") };
        outln!(
            "pending: {} packs ({}) {step}, marked {}, waiting for {waiting}; the next prune after that continues",
            p.packs,
            bytes(p.bytes),
            p.since.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    for d in &r.damaged {
        outln!("DAMAGED {d} (not repacked; run `drtool check --read-data`)");
    }
    Ok(())
}
