//! Volume options of `backup` (--snapshot and friends) and `restore --to-device`.

use super::commands::open_repo;
use super::exit::{self, Failure};
use super::output::{bytes, outln, print_json, rate};
use super::{BackupArgs, Global, RestoreArgs};
use crate::job::devrestore::{self, DevicePlan};
use crate::source::snapshot::{SnapshotKind, SnapshotSpec};
use std::time::Duration;

/// The snapshot settings of a backup, checked against its source.
pub fn snapshot_spec(a: &BackupArgs) -> Result<SnapshotSpec, Failure> {
    let kind = a.snapshot;
    let ok = match kind {
        SnapshotKind::None => true,
        SnapshotKind::Btrfs | SnapshotKind::Zfs => !a.paths.is_empty(),
        SnapshotKind::Lvm | SnapshotKind::Fsfreeze => !a.paths.is_empty() || a.device.is_some(),
    };
    if !ok {
        return Err(Failure::usage(format!(
            "--snapshot {kind} applies to {}",
            if matches!(kind, SnapshotKind::Btrfs | SnapshotKind::Zfs) { "paths" } else { "paths and --device" }
        )));
    }
    if a.snapshot_size.is_some() && kind != SnapshotKind::Lvm {
        return Err(Failure::usage("--snapshot-size applies to --snapshot lvm"));
    }
    if a.freeze_timeout.is_some() && kind != SnapshotKind::Fsfreeze {
        return Err(Failure::usage("--freeze-timeout applies to --snapshot fsfreeze"));
    }
    Ok(SnapshotSpec { kind, size: a.snapshot_size.clone(), freeze_timeout: a.freeze_timeout.map(Duration::from_secs) })
}

/// `restore SNAPSHOT --to-device DEVICE`: plan, refuse or write.
pub async fn restore_to_device(g: &Global, a: RestoreArgs) -> Result<u8, Failure> {
    let device = a.to_device.clone().unwrap_or_default();
    let repo = open_repo(g).await?;
    let snap = repo.find_snapshot(&a.snapshot, a.name.as_deref()).await?;
    let (plan, dev) = devrestore::plan(&snap, &device)?;
    if g.json && a.dry_run {
        print_json(&plan)?;
    } else {
        show_plan(&plan);
    }
    let Some(dev) = dev else {
        let why = plan.refusal.unwrap_or_default();
        return Err(Failure::new(exit::REFUSED, anyhow::anyhow!("{why}; nothing was written")));
    };
    if a.dry_run {
        return Ok(exit::OK);
    }
    if !a.yes {
        return Err(Failure::new(
            exit::REFUSED,
            anyhow::anyhow!("writing onto {} needs --yes; nothing was written", device.display()),
        ));
    }
    let s = devrestore::execute(repo, &snap, dev).await?;
    if g.json {
        print_json(&serde_json::json!({ "snapshot_id": snap.id, "device": plan.device, "summary": s }))?;
    } else {
        outln!(
            "restored snapshot {} onto {}: {} in {:.1} s, {}",
            snap.id.short(),
            plan.device,
            bytes(s.bytes),
            s.duration_ms as f64 / 1000.0,
            rate(s.bytes, s.duration_ms)
        );
    }
    Ok(exit::OK)
}

/// The plan goes to stderr: it is a warning before a destructive write.
fn show_plan(p: &DevicePlan) {
    eprintln!("Restore plan for snapshot {} ({})", &p.snapshot[..p.snapshot.len().min(8)], p.name);
    eprintln!("  taken   {}", p.time.format("%Y-%m-%d %H:%M:%S UTC"));
    eprintln!("  stream  {} ({})", p.stream, bytes(p.size));
    eprintln!("  device  {} ({})", p.device, bytes(p.device_size));
    match &p.refusal {
        Some(r) => eprintln!("  REFUSED: {r}"),
        None => eprintln!("  OVERWRITE: the first {} of {} are replaced", bytes(p.size), p.device),
    }
}
