//! Restoring a database snapshot into a server: plan, then load.
//!
//! The plan is computed before anything is touched and shown to the user
//! (who confirms, or passes --yes, or only looks with --dry-run). A database
//! that holds objects is never overwritten without --clean, and --clean
//! replaces it so that a failed restore leaves it as it was (where the engine
//! allows: see `Replacement`).

use super::{JobError, shutdown_signal};
use crate::engine::DbUrl;
use crate::repo::reader::read_stream;
use crate::repo::snapshot::{Item, Snapshot};
use crate::repo::{Repository, lock};
use crate::source::db::StreamFormat;
use crate::target::db::{DatabaseTarget, Replacement, RestoreError, StreamLoad, TargetState};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct DbRestoreOptions {
    /// `NEW` (one database selected) or `OLD=NEW`, repeatable.
    pub renames: Vec<String>,
    pub clean: bool,
    /// Also apply accounts / roles streams.
    pub with_globals: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The database does not exist: create it, then load.
    Create,
    /// It exists and is empty.
    Load,
    /// It exists with objects; --clean: they are replaced, as `how` says.
    Replace { objects: u64, how: Replacement },
    /// Nothing is known of the target (MongoDB): load, keeping or dropping per --clean.
    LoadUnknown { drop_collections: bool },
    /// Global objects (accounts, roles).
    Globals,
    /// Not restored, with the reason.
    Skip { reason: String },
    /// Would overwrite without --clean.
    Refuse { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedLoad {
    pub stream: String,
    pub size: u64,
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(flatten)]
    pub action: Action,
    /// Databases left on the target by an earlier interrupted restore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leftovers: Vec<String>,
    #[serde(skip)]
    item: usize,
    #[serde(skip)]
    load: StreamLoad,
}

#[derive(Debug, Clone, Serialize)]
pub struct DbRestorePlan {
    pub snapshot: String,
    pub name: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub size: u64,
    pub source: String,
    pub target: String,
    pub streams: Vec<PlannedLoad>,
}

impl DbRestorePlan {
    /// Reasons the restore cannot go ahead as asked.
    pub fn refusals(&self) -> Vec<String> {
        self.streams
            .iter()
            .filter_map(|s| match &s.action {
                Action::Refuse { reason } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct DbRestoreSummary {
    pub streams: u64,
    pub bytes: u64,
    pub duration_ms: u64,
}

fn usage(msg: impl Into<String>) -> JobError {
    JobError::Usage(msg.into())
}

/// Work out what restoring `snap` into `target` (addressed by `to`) would do.
pub fn plan(
    snap: &Snapshot,
    target: &dyn DatabaseTarget,
    to: &DbUrl,
    opts: &DbRestoreOptions,
) -> Result<DbRestorePlan, JobError> {
    let m = &snap.manifest;
    if m.source.kind != to.engine.as_str() {
        return Err(usage(format!(
            "snapshot {} holds a {} backup, not {}: restore it with --to {}://... (or --target DIR for the raw files)",
            snap.id.short(),
            m.source.kind,
            to.engine,
            if ["mysql", "postgres", "mongodb"].contains(&m.source.kind.as_str()) {
                &m.source.kind
            } else {
                "<engine>"
            }
        )));
    }
    let details = &m.source.details;
    let whole_archive =
        |i: &Item| matches!(i, Item::Stream { database: None, format: Some(f), .. } if f == "mongodb-archive");
    let in_snapshot: Vec<String> = m
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Stream { database: Some(db), .. } => Some(db.clone()),
            _ => None,
        })
        .collect();
    let has_whole = m.items.iter().any(whole_archive);
    // The databases to restore: the --to URL's list, else all of them.
    for db in &to.databases {
        if !has_whole && !in_snapshot.contains(db) {
            return Err(usage(format!(
                "database {db:?} is not in snapshot {} (it holds: {})",
                snap.id.short(),
                in_snapshot.join(", ")
            )));
        }
    }
    let selected: Vec<String> = if to.databases.is_empty() { in_snapshot.clone() } else { to.databases.clone() };
    let renames = parse_renames(&opts.renames, &selected, has_whole)?;
    let renamed = |db: &str| renames.iter().find(|(f, _)| f == db).map_or(db.to_string(), |(_, t)| t.clone());
    let oplog = details.get("oplog").and_then(|v| v.as_bool()).unwrap_or(false);
    let run = run_id();
    let mut streams = Vec::new();
    for (idx, item) in m.items.iter().enumerate() {
        let Item::Stream { name, size, database, format, .. } = item else {
            return Err(usage("snapshot holds a file tree, not a database dump"));
        };
        let format = format.as_deref().and_then(StreamFormat::parse).ok_or_else(|| {
            usage(format!("stream {name:?} has no database format; restore it with --target DIR or --stdout"))
        })?;
        let settings = database
            .as_ref()
            .and_then(|db| details.get("databases").and_then(|d| d.get(db)))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let mut load = StreamLoad {
            format,
            from: database.clone(),
            to: database.as_deref().map(renamed),
            clean: opts.clean,
            create: false,
            settings,
            include: vec![],
            renames: vec![],
            oplog_replay: false,
            replace: None,
        };
        let mut leftovers = Vec::new();
        let action = match (format, database) {
            (StreamFormat::MysqlUsers | StreamFormat::PgGlobals, _) if !opts.with_globals => {
                Action::Skip { reason: "accounts and roles: add --with-globals to apply them".into() }
            }
            (StreamFormat::MysqlUsers | StreamFormat::PgGlobals, _) => Action::Globals,
            (_, Some(db)) if !selected.contains(db) => Action::Skip { reason: "not selected".into() },
            (StreamFormat::MongoArchive, None) => {
                load.include = to.databases.clone();
                load.renames = renames.clone();
                load.oplog_replay = oplog && to.databases.is_empty() && renames.is_empty();
                Action::LoadUnknown { drop_collections: opts.clean }
            }
            (_, Some(_)) => {
                let to_db = load.to.clone().unwrap_or_default();
                leftovers = target.leftovers(&to_db).map_err(RestoreError::from)?;
                match target.state(&to_db).map_err(RestoreError::from)? {
                    TargetState::Missing => {
                        load.create = true;
                        Action::Create
                    }
                    TargetState::Exists(0) => Action::Load,
                    TargetState::Exists(n) if opts.clean => {
                        let how = target.replacement(&to_db, &run);
                        load.replace = Some(how.clone());
                        Action::Replace { objects: n, how }
                    }
                    TargetState::Exists(n) => Action::Refuse {
                        reason: format!(
                            "database {to_db:?} on {} exists and holds {n} objects: add --clean to replace it \
                             with the snapshot's copy, or --rename to restore beside it",
                            target.server()
                        ),
                    },
                    TargetState::Unknown => Action::LoadUnknown { drop_collections: opts.clean },
                }
            }
            (_, None) => Action::Skip { reason: "stream without a database".into() },
        };
        streams.push(PlannedLoad {
            stream: name.clone(),
            size: *size,
            from: load.from.clone(),
            to: load.to.clone(),
            action,
            leftovers,
            item: idx,
            load,
        });
    }
    // Globals first: the databases' owners must exist before their objects.
    streams.sort_by_key(|s| !matches!(s.action, Action::Globals));
    Ok(DbRestorePlan {
        snapshot: snap.id.to_string(),
        name: m.name.clone(),
        time: m.time,
        size: m.size(),
        source: details.get("url").and_then(|u| u.as_str()).unwrap_or(&m.source.kind).to_string(),
        target: target.server(),
        streams,
    })
}

/// A short id unique to one restore (names its staging databases).
fn run_id() -> String {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        // Unique enough for a name that must not collide with a concurrent run's.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b = (t.subsec_nanos() ^ std::process::id()).to_be_bytes();
    }
    hex::encode(b)
}

fn parse_renames(raw: &[String], selected: &[String], whole: bool) -> Result<Vec<(String, String)>, JobError> {
    let mut out = Vec::new();
    for r in raw {
        let (from, to) = match r.split_once('=') {
            Some((f, t)) => (f.to_string(), t.to_string()),
            None if selected.len() == 1 => (selected[0].clone(), r.clone()),
            None => {
                return Err(usage(format!(
                    "--rename {r:?} is ambiguous with {} databases selected: use --rename OLD=NEW",
                    selected.len()
                )));
            }
        };
        if to.is_empty() || to.contains('/') || to.contains('\0') {
            return Err(usage(format!("--rename: invalid database name {to:?}")));
        }
        if !selected.contains(&from) && !whole {
            return Err(usage(format!("--rename: database {from:?} is not being restored")));
        }
        out.push((from, to));
    }
    Ok(out)
}

/// Carry out a plan that has no refusals.
pub async fn execute(
    repo: Arc<Repository>,
    snap: &Snapshot,
    plan: &DbRestorePlan,
    target: &mut dyn DatabaseTarget,
) -> Result<DbRestoreSummary, JobError> {
    if let Some(r) = plan.refusals().first() {
        return Err(JobError::Refused(r.clone()));
    }
    let guard = lock::acquire(&repo, false, "restore").await?;
    let result = execute_locked(&repo, snap, plan, target).await;
    let released = guard.release().await;
    let summary = result?;
    released?;
    Ok(summary)
}

async fn execute_locked(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    plan: &DbRestorePlan,
    target: &mut dyn DatabaseTarget,
) -> Result<DbRestoreSummary, JobError> {
    let started = Instant::now();
    let index = Arc::new(repo.load_index().await?);
    let mut summary = DbRestoreSummary::default();
    for p in plan.streams.iter().filter(|p| !matches!(p.action, Action::Skip { .. } | Action::Refuse { .. })) {
        let Some(Item::Stream { chunks, .. }) = snap.manifest.items.get(p.item) else { continue };
        tracing::info!(stream = %p.stream, to = ?p.to, "restoring");
        let mut running = match tokio::task::block_in_place(|| target.start(&p.load)) {
            Ok(r) => r,
            // The database (or staging one) was created, but the tool did not start.
            Err(e @ RestoreError::Spawn { .. }) => {
                let _ = tokio::task::block_in_place(|| target.abandon(&p.load));
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let fed = tokio::select! {
            r = read_stream(repo, &index, chunks, |d| running.write(d)) => r.map_err(JobError::from),
            sig = shutdown_signal() => Err(JobError::RestoreInterrupted(sig)),
        };
        let done = match fed {
            // Only a load the tool finished is committed (a staged database swapped in).
            Ok(n) => tokio::task::block_in_place(|| running.finish().and_then(|()| target.commit(&p.load)))
                .map(|_| n)
                .map_err(JobError::from),
            Err(e) if running.input_closed() => {
                // The tool quit early: its failure is the real story.
                match tokio::task::block_in_place(|| running.finish()) {
                    Err(tool) => Err(tool.into()),
                    Ok(()) => Err(e),
                }
            }
            Err(e) => {
                running.kill();
                Err(e)
            }
        };
        match done {
            Ok(n) => {
                summary.bytes += n;
                summary.streams += 1;
            }
            Err(e) => {
                // A database this run created, or a staging one, holds only part of the dump.
                if let Err(cleanup) = tokio::task::block_in_place(|| target.abandon(&p.load)) {
                    tracing::error!(stream = %p.stream, "cleaning up after the failed restore: {cleanup}");
                }
                return Err(e);
            }
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}
