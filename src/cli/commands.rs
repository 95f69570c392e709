//! Command handlers: parse arguments into requests, call the job and repo layers, print.

use super::exit::{self, Failure};
use super::output::outln;
use super::output::{bytes, print_json, rate};
use super::{BackupArgs, CheckArgs, Cli, Command, Global, RestoreArgs, secrets};
use crate::engine::{DbUrl, Password};
use crate::job::backup::{self, BackupRequest, BackupSource};
use crate::job::restore::{self, RestoreOptions, RestoreSummary, RestoreTarget};
use crate::repo::check::{ReadData, check};
use crate::repo::snapshot::Snapshot;
use crate::repo::writer::{WriteStats, WriterOptions};
use crate::repo::{InitOptions, Repository, lock};
use crate::source::exclude::{Exclusions, TreeOptions};
use crate::store::{AddressError, DynStore};
use std::io::IsTerminal;
use std::sync::Arc;

pub async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let g = cli.global;
    match cli.command {
        Command::Init => init(&g).await,
        Command::Backup(a) => backup_cmd(&g, a).await,
        Command::Snapshots { name } => snapshots(&g, name.as_deref()).await,
        Command::Show { snapshot, name } => show(&g, &snapshot, name.as_deref()).await,
        Command::Restore(a) => restore_cmd(&g, a).await,
        Command::Check(a) => check_cmd(&g, a).await,
        Command::Key(k) => super::keycmd::run(&g, k).await,
        Command::Forget(a) => super::forget::run(&g, a).await,
        Command::Prune(a) => super::prunecmd::run(&g, a).await,
        Command::Policy(super::PolicyCommand::Check { paths }) => super::policycmd::check(&g, &paths),
        Command::Run { policy } => super::policycmd::run(&g, &policy).await,
        Command::Schedule(a) => super::policycmd::schedule(&g, a),
        Command::Daemon => super::policycmd::daemon(&g).await,
        Command::Drill(a) => super::drillcmd::drill(&g, a).await,
        Command::Binlog(a) => super::binlogcmd::run(&g, a).await,
        Command::Drills { policy } => super::drillcmd::list(&g, policy.as_deref()).await,
        Command::WalPush(a) => super::walcmd::push(&g, a).await,
        Command::WalFetch(a) => super::walcmd::fetch(&g, a).await,
        Command::WalConfig(a) => super::walcmd::config(&g, a).await,
    }
}

/// The store named by --repo / DRTOOL_REPO.
pub async fn store_for(g: &Global) -> Result<DynStore, Failure> {
    let addr = g.repo.as_deref().ok_or_else(|| Failure::usage("no repository: use --repo or set DRTOOL_REPO"))?;
    store_at(addr).await
}

pub async fn store_at(addr: &str) -> Result<DynStore, Failure> {
    match crate::store::open_address(addr).await {
        Ok(s) => Ok(s),
        Err(AddressError::Invalid(m)) => Err(Failure::usage(m)),
        Err(AddressError::Store(e)) => Err(e.into()),
    }
}

pub async fn open_repo(g: &Global) -> Result<Arc<Repository>, Failure> {
    let store = store_for(g).await?;
    // Fail on a missing repository before asking for a password.
    match store.size("config").await {
        Err(e) if e.is_not_found() => {
            return Err(crate::repo::RepoError::NoRepository { location: store.location() }.into());
        }
        _ => {}
    }
    let pw = secrets::repo_password(g.password_file.as_deref(), false)?;
    Ok(Arc::new(Repository::open(store, &pw).await?))
}

async fn init(g: &Global) -> Result<u8, Failure> {
    let store = store_for(g).await?;
    let pw = secrets::repo_password(g.password_file.as_deref(), true)?;
    let repo = Repository::init(store.clone(), &pw, InitOptions::default()).await?;
    if g.json {
        print_json(
            &serde_json::json!({ "repository": store.location(), "id": repo.id(), "key": repo.current_slot() }),
        )?;
    } else {
        outln!("created repository {} at {}", &repo.id()[..8], store.location());
    }
    Ok(exit::OK)
}

fn backup_request(a: BackupArgs) -> Result<BackupRequest, Failure> {
    let kinds = usize::from(a.stdin)
        + usize::from(!a.command.is_empty())
        + usize::from(!a.paths.is_empty())
        + usize::from(a.source.is_some())
        + usize::from(a.device.is_some());
    if kinds != 1 {
        return Err(Failure::usage(
            "give exactly one source: PATH..., --device DEVICE, --stdin, --source URL, or -- COMMAND [ARGS...]",
        ));
    }
    let snapshot = super::volume::snapshot_spec(&a)?;
    let tree =
        TreeOptions { excludes: a.excludes, exclude_caches: a.exclude_caches, one_file_system: a.one_file_system };
    if tree != TreeOptions::default() && a.paths.is_empty() {
        return Err(Failure::usage("--exclude, --exclude-caches and --one-file-system apply to paths only"));
    }
    // Bad patterns are usage errors before the repository is opened.
    Exclusions::new(&tree).map_err(|e| Failure::usage(e.to_string()))?;
    let (source, name) = if let Some(url) = &a.source {
        let url = DbUrl::parse(url).map_err(|e| Failure::usage(e.to_string()))?;
        let pw = Password::load(url.engine, a.source_password_file.as_deref(), "DRTOOL_SOURCE_PASSWORD")
            .map_err(|e| Failure::usage(e.to_string()))?;
        let name = a.name.unwrap_or_else(|| crate::job::dbbackup::default_name(&url));
        if a.physical {
            if url.engine != crate::engine::Engine::Postgres {
                return Err(Failure::usage("--physical applies to postgres:// sources"));
            }
            (BackupSource::PgPhysical(url, pw), name)
        } else {
            (BackupSource::Database(url, pw), name)
        }
    } else if a.stdin {
        (BackupSource::Stdin, a.name.ok_or_else(|| Failure::usage("--stdin needs --name"))?)
    } else if !a.command.is_empty() {
        (BackupSource::Command(a.command), a.name.ok_or_else(|| Failure::usage("a command backup needs --name"))?)
    } else if let Some(device) = a.device {
        let name = a.name.unwrap_or_else(|| device.display().to_string());
        let device = std::path::absolute(&device).map_err(|e| Failure::usage(format!("{}: {e}", device.display())))?;
        (BackupSource::Device(device), name)
    } else {
        let default = a.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
        (BackupSource::Paths(a.paths, tree), a.name.unwrap_or(default))
    };
    let writer = WriterOptions { compression_level: a.compression, ..WriterOptions::default() };
    if a.host.as_ref().is_some_and(|h| h.trim().is_empty() || h.chars().any(char::is_control)) {
        return Err(Failure::usage("--host: expected a host name, e.g. web1"));
    }
    Ok(BackupRequest { name, source, tags: a.tags, host: a.host, time: a.time, writer, force: a.force, snapshot })
}

/// A progress line on stderr while the backup runs, only on a terminal.
fn progress(stats: Arc<WriteStats>) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
        bar.set_style(style);
    }
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        // Stops when the backup drops its counters (only this task holds them then).
        while Arc::strong_count(&stats) > 1 {
            let read = WriteStats::get(&stats.bytes_read);
            let ms = started.elapsed().as_millis() as u64;
            bar.set_message(format!(
                "read {}  new {}  stored {}  {}",
                bytes(read),
                bytes(WriteStats::get(&stats.bytes_new)),
                bytes(WriteStats::get(&stats.bytes_stored)),
                rate(read, ms)
            ));
            bar.tick();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        bar.finish_and_clear();
    });
}

async fn backup_cmd(g: &Global, a: BackupArgs) -> Result<u8, Failure> {
    let req = backup_request(a)?;
    // Database errors name the server and the databases being dumped.
    let what = match &req.source {
        BackupSource::Database(url, _) => Some(format!("backup of {url}")),
        _ => None,
    };
    let repo = open_repo(g).await?;
    let show = !g.json;
    let out = backup::run(repo, req, &|s| {
        if show {
            progress(s)
        }
    })
    .await
    .map_err(|e| {
        let mut f = Failure::from(e);
        if let (Some(w), true) = (&what, f.code == exit::SOURCE_FAILED) {
            f.error = f.error.context(w.clone());
        }
        f
    })?;
    let m = &out.manifest;
    let s = &m.summary;
    for w in &out.warnings {
        eprintln!("drtool: warning: could not read {w}");
    }
    if g.json {
        print_json(&serde_json::json!({
            "snapshot_id": out.id, "short_id": out.id.short(), "name": m.name, "time": m.time,
            "partial": m.partial, "warnings": out.warnings, "summary": s,
        }))?;
    } else {
        outln!(
            "snapshot {} saved ({}): read {}, new {}, stored {}, {} chunks ({} new) in {:.1} s, {}",
            out.id.short(),
            m.name,
            bytes(s.bytes_read),
            bytes(s.bytes_new),
            bytes(s.bytes_stored),
            s.chunks,
            s.chunks_new,
            s.duration_ms as f64 / 1000.0,
            rate(s.bytes_read, s.duration_ms)
        );
    }
    // A signal after the source was read let the commit finish (job::interrupt).
    if let Some(signal) = crate::job::interrupt::since(crate::job::interrupt::Mark::START) {
        let phase = format!("after snapshot {} was saved", out.id.short());
        return Err(crate::job::JobError::Stopped { signal, phase }.into());
    }
    Ok(if m.partial { exit::PARTIAL } else { exit::OK })
}

fn snapshot_json(s: &Snapshot) -> serde_json::Value {
    let m = &s.manifest;
    serde_json::json!({
        "id": s.id, "short_id": s.id.short(), "time": m.time, "host": m.host, "name": m.name,
        "source": m.source.kind, "size": m.size(), "tags": m.tags, "partial": m.partial, "summary": m.summary,
    })
}

/// The manifest without chunk lists (they are long and say nothing to a reader).
fn manifest_json(s: &Snapshot) -> Result<serde_json::Value, Failure> {
    let mut v = serde_json::to_value(&s.manifest).map_err(|e| Failure::new(exit::ERROR, e))?;
    if let Some(items) = v.get_mut("items").and_then(|i| i.as_array_mut()) {
        for item in items.iter_mut().filter_map(|i| i.as_object_mut()) {
            for key in ["chunks", "meta_chunks"] {
                if let Some(n) = item.remove(key).and_then(|c| c.as_array().map(Vec::len)) {
                    item.insert(format!("{key}_count"), n.into());
                }
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), s.id.to_string().into());
    }
    Ok(v)
}

async fn show(g: &Global, snapshot: &str, name: Option<&str>) -> Result<u8, Failure> {
    let repo = open_repo(g).await?;
    let snap = repo.find_snapshot(snapshot, name).await?;
    let mut v = manifest_json(&snap)?;
    // The recoverable window after this base: the binlog captured under its name.
    let logs = crate::repo::binlogcat::load_all(&repo).await?;
    let (files, _) = crate::repo::binlogcat::current(&logs, &snap.manifest.name);
    if let (Some(o), Some(sum)) = (v.as_object_mut(), crate::repo::binlogcat::summary(&files, chrono::Utc::now())) {
        o.insert("binlog".into(), serde_json::to_value(sum).map_err(|e| Failure::new(exit::ERROR, e))?);
    }
    if let (Some(w), Some(o)) = (crate::job::pitr::window_json(&repo, &snap).await?, v.as_object_mut()) {
        o.insert("recoverable_window".into(), w);
    }
    if g.json {
        print_json(&v)?;
    } else {
        let text = serde_json::to_string_pretty(&v).map_err(|e| Failure::new(exit::ERROR, e))?;
        outln!("{text}");
    }
    Ok(exit::OK)
}

async fn snapshots(g: &Global, name: Option<&str>) -> Result<u8, Failure> {
    let repo = open_repo(g).await?;
    let all: Vec<Snapshot> =
        repo.list_snapshots().await?.into_iter().filter(|s| name.is_none_or(|n| s.manifest.name == n)).collect();
    if g.json {
        print_json(&all.iter().map(snapshot_json).collect::<Vec<_>>())?;
        return Ok(exit::OK);
    }
    outln!("{:<8}  {:<19}  {:<16}  {:<8}  {:>11}  name", "id", "time (UTC)", "host", "source", "size");
    for s in &all {
        let m = &s.manifest;
        outln!(
            "{:<8}  {:<19}  {:<16}  {:<8}  {:>11}  {}{}",
            s.id.short(),
            m.time.format("%Y-%m-%d %H:%M:%S"),
            m.host,
            m.source.kind,
            bytes(m.size()),
            m.name,
            if m.partial { " (partial)" } else { "" }
        );
    }
    outln!("{} snapshots", all.len());
    Ok(exit::OK)
}

async fn restore_cmd(g: &Global, a: RestoreArgs) -> Result<u8, Failure> {
    if a.to.is_some() {
        return super::dbrestore::run(g, a).await;
    }
    if a.to_device.is_some() {
        return super::volume::restore_to_device(g, a).await;
    }
    if a.yes {
        return Err(Failure::usage("--yes applies to --to URL and --to-device DEVICE"));
    }
    let target = match (a.target, a.stdout) {
        (Some(dir), false) => RestoreTarget::Dir(dir),
        (None, true) => RestoreTarget::Stdout,
        _ => {
            return Err(Failure::usage("choose where to restore: --target DIR, --stdout or --to URL"));
        }
    };
    if a.dry_run && a.stdout {
        return Err(Failure::usage("--dry-run needs --target DIR (or --to URL)"));
    }
    let opts = RestoreOptions { include: a.include, dry_run: a.dry_run, stream: a.stream };
    let repo = open_repo(g).await?;
    let snap = repo.find_snapshot(&a.snapshot, a.name.as_deref()).await?;
    if let RestoreTarget::Dir(dir) = &target
        && !opts.dry_run
        && opts.include.is_empty()
        && super::pitrcmd::wanted(&snap, &a.point)
    {
        let given = (a.snapshot != "latest").then_some(snap);
        return super::pitrcmd::restore(g, repo, given, a.name.as_deref(), dir, &a.point).await;
    }
    if a.point.any() {
        return Err(Failure::usage(
            "--at, --at-lsn, --at-xid and --at-name apply to --target DIR without --dry-run or --include",
        ));
    }
    let started = std::time::Instant::now();
    let summary = restore::run_with(repo, &snap, &target, &opts).await?;
    let ms = started.elapsed().as_millis() as u64;
    if opts.dry_run {
        return print_restore_plan(g, &snap, &summary);
    }
    for w in &summary.warnings {
        eprintln!("drtool: warning: {w}");
    }
    if !g.json {
        for t in summary.trees.iter().filter(|t| t.full_path) {
            eprintln!("drtool: {} restored as {} (another tree has the same name)", t.root, t.path);
        }
    }
    // Data may be on stdout: the report goes to stderr unless JSON was asked for a directory restore.
    if g.json && matches!(target, RestoreTarget::Dir(_)) {
        print_json(&serde_json::json!({ "snapshot_id": snap.id, "summary": summary, "duration_ms": ms }))?;
    } else {
        eprintln!(
            "restored snapshot {} ({}): {} in {} files, {} hard links, {} dirs, {} symlinks, {:.1} s, {}",
            snap.id.short(),
            snap.manifest.name,
            bytes(summary.bytes),
            summary.files,
            summary.hardlinks,
            summary.dirs,
            summary.symlinks,
            ms as f64 / 1000.0,
            rate(summary.bytes, ms)
        );
    }
    Ok(if summary.warnings.is_empty() { exit::OK } else { exit::PARTIAL })
}

/// `restore --target DIR --dry-run`: one line per entry that would be restored.
fn print_restore_plan(g: &Global, snap: &Snapshot, summary: &RestoreSummary) -> Result<u8, Failure> {
    if g.json {
        print_json(&serde_json::json!({ "snapshot_id": snap.id, "dry_run": true, "summary": summary }))?;
        return Ok(exit::OK);
    }
    for t in &summary.trees {
        let why = if t.full_path { "  (full path: another tree has the same name)" } else { "" };
        outln!("tree {} -> {}{why}", t.root, t.path);
    }
    for e in &summary.planned {
        let kind = serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        outln!("would restore {kind:<8} {:>10}  {}", bytes(e.size), e.path);
    }
    outln!(
        "dry run of snapshot {} ({}): {} in {} files, {} hard links, {} dirs, {} symlinks; nothing was written",
        snap.id.short(),
        snap.manifest.name,
        bytes(summary.bytes),
        summary.files,
        summary.hardlinks,
        summary.dirs,
        summary.symlinks
    );
    Ok(exit::OK)
}

async fn check_cmd(g: &Global, a: CheckArgs) -> Result<u8, Failure> {
    let read = match (a.read_data, a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) if p > 0.0 && p <= 100.0 => ReadData::Subset(p),
        (false, Some(p)) => {
            return Err(Failure::usage(format!("--read-data-subset must be in (0, 100], got {p}")));
        }
        (false, None) => ReadData::None,
    };
    let repo = open_repo(g).await?;
    let guard = lock::acquire(&repo, false, "check").await?;
    let result = check(&repo, read).await;
    guard.release().await?;
    let report = result?;
    // Point-in-time recovery needs unbroken logs: a hole is damage (docs/PITR.md).
    // Binlog continuity is checked from its catalog alone.
    let logs = crate::repo::binlogcat::load_all(&repo).await?;
    let mut binlog_gaps = Vec::new();
    for n in crate::repo::binlogcat::names(&logs) {
        let (files, _) = crate::repo::binlogcat::current(&logs, &n);
        binlog_gaps.extend(crate::repo::binlogcat::gaps(&files).into_iter().map(|gap| (n.clone(), gap)));
    }
    let wal_gaps = crate::job::pitr::wal_gaps(&repo, &repo.list_snapshots().await?).await?;
    let clean = report.is_clean() && binlog_gaps.is_empty() && wal_gaps.is_empty();
    if g.json {
        let mut v = serde_json::to_value(&report).map_err(|e| Failure::new(exit::ERROR, e))?;
        if let Some(o) = v.as_object_mut() {
            let gaps: Vec<_> =
                binlog_gaps.iter().map(|(n, gap)| serde_json::json!({ "name": n, "gap": gap })).collect();
            o.insert("binlog_gaps".into(), gaps.into());
            o.insert("wal_gaps".into(), wal_gaps.clone().into());
        }
        print_json(&v)?;
    } else {
        outln!(
            "{} snapshots, {} index files, {} packs indexed, {} packs read ({} blobs verified)",
            report.snapshots,
            report.index_files,
            report.packs_indexed,
            report.packs_read,
            report.blobs_read
        );
        if report.unindexed_packs > 0 {
            outln!("{} packs are not indexed (left by interrupted runs; prune removes them)", report.unindexed_packs);
        }
        for d in &report.damaged_packs {
            let snaps: Vec<String> = d.snapshots.iter().map(|s| s.short()).collect();
            outln!(
                "DAMAGED pack {}: {}; affects snapshots: {}",
                d.pack,
                d.reason,
                if snaps.is_empty() { "none".into() } else { snaps.join(", ") }
            );
        }
        for e in &report.errors {
            outln!("ERROR {e}");
        }
        for (n, gap) in &binlog_gaps {
            outln!("BINLOG GAP in {n} after {}: {}", gap.after, gap.reason);
        }
        for gap in &wal_gaps {
            outln!("WAL GAP {gap}");
        }
        outln!("{}", if clean { "no errors found" } else { "repository has errors" });
    }
    Ok(if clean { exit::OK } else { exit::DAMAGED })
}
