//! One restore drill: provision, restore the latest snapshot, check, measure,
//! tear down. Teardown always happens: on success, on failure, and when the
//! run is interrupted (the scratch server's guard cleans up when dropped).

use super::checks::{self, CheckResult, Sql, Status};
use super::report::{CheckRecord, DrillReport, Phases};
use super::scratch::{Scratch, ScratchKind};
use crate::engine::{DbUrl, Engine, Password};
use crate::job::JobError;
use crate::job::dbrestore::{self, DbRestoreOptions};
use crate::policy::file::{DrillSpec, Policy, Source};
use crate::repo::Repository;
use crate::repo::snapshot::{Item, Snapshot};
use crate::target::db;
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Where the drill restores: a scratch server it owns, or an external one.
enum Place {
    Scratch(Scratch),
    External { url: String, password: Password, created: Vec<String> },
}

impl Place {
    fn url(&self) -> String {
        match self {
            Place::Scratch(s) => s.url(),
            Place::External { url, .. } => url.clone(),
        }
    }

    fn nodes(&self) -> Vec<String> {
        match self {
            Place::Scratch(s) => s.node_urls(),
            Place::External { url, .. } => vec![url.clone()],
        }
    }

    fn password(&self) -> Password {
        match self {
            Place::Scratch(s) => Password::new(s.password()),
            Place::External { password, .. } => password.clone(),
        }
    }

    /// Stop the scratch server, or drop the temporary databases on an external one.
    fn teardown(&mut self) -> Result<(), String> {
        match self {
            Place::Scratch(s) => s.teardown().map_err(|e| e.to_string()),
            Place::External { url, password, created } => {
                let u = DbUrl::parse(url).map_err(|e| e.to_string())?;
                let target = db::connect(&u, password).map_err(|e| e.to_string())?;
                for d in created.drain(..) {
                    target.drop_database(&d).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!("drill teardown failed: {e}");
        }
    }
}

fn kind_of(spec: &DrillSpec, engine: Engine) -> Result<Option<ScratchKind>, JobError> {
    let k = match (spec.scratch.as_str(), engine) {
        ("external", _) => return Ok(None),
        ("mariadb", Engine::Mysql) => ScratchKind::Mariadb,
        ("galera", Engine::Mysql) => ScratchKind::Galera,
        ("postgres", Engine::Postgres) => ScratchKind::Postgres,
        ("mongodb", Engine::Mongodb) => ScratchKind::Mongodb,
        (s, e) => return Err(JobError::Usage(format!("drill.scratch = {s:?} cannot restore a {e} backup"))),
    };
    Ok(Some(k))
}

/// The databases a snapshot restores.
fn databases(snap: &Snapshot) -> Vec<String> {
    snap.manifest
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Stream { database: Some(d), .. } => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Run the drill for `policy`. Errors before a report exists (no drill table,
/// no snapshot) are returned; everything after is in the report.
pub async fn run(policy: &Policy, repo: Arc<Repository>) -> Result<DrillReport, JobError> {
    let spec = policy
        .drill
        .clone()
        .ok_or_else(|| JobError::Usage(format!("policy {} has no [drill] table (see docs/DRILLS.md)", policy.name)))?;
    let Source::Database { url, .. } = &policy.source else {
        return Err(JobError::Usage(format!("policy {} backs up no database: drills restore databases", policy.name)));
    };
    let engine = DbUrl::parse(url).map_err(|e| JobError::Usage(e.to_string()))?.engine;
    let kind = kind_of(&spec, engine)?;
    let snap = repo.find_snapshot("latest", Some(&policy.name)).await?;
    let started = Utc::now();
    let mut report = DrillReport {
        policy: policy.name.clone(),
        host: crate::repo::lock::hostname(),
        started,
        snapshot_id: Some(snap.id.to_string()),
        snapshot_time: Some(snap.manifest.time),
        scratch: spec.scratch.clone(),
        nodes: vec![],
        phases: Phases::default(),
        rto_seconds: None,
        rpo_seconds: Some((started - snap.manifest.time).num_milliseconds() as f64 / 1000.0),
        rto_target_seconds: spec.rto_seconds,
        rpo_target_hours: spec.rpo_hours,
        bytes_restored: 0,
        checks: vec![],
        ok: false,
        error: None,
        drtool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let t = Instant::now();
    let place = match kind {
        Some(k) => tokio::task::spawn_blocking(move || Scratch::start(k))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map(Place::Scratch),
        None => external(&spec),
    };
    report.phases.provision_ms = t.elapsed().as_millis() as u64;
    let mut place = match place {
        Ok(p) => p,
        Err(e) => {
            report.error = Some(format!("provisioning the {} scratch failed: {e}", spec.scratch));
            return Ok(report);
        }
    };
    report.nodes = place.nodes();
    let mut results = Vec::new();
    let outcome = restore_and_check(&repo, &snap, &spec, &mut place, &mut report, &mut results).await;
    if let Err(e) = outcome {
        report.error = Some(e);
    }
    let t = Instant::now();
    let torn = tokio::task::block_in_place(|| place.teardown());
    report.phases.teardown_ms = t.elapsed().as_millis() as u64;
    if let Err(e) = torn {
        results.push(CheckResult::new("teardown", false, e));
    }
    drop(place);
    report.checks = results.iter().map(CheckRecord::from).collect();
    report.ok = report.error.is_none() && results.iter().all(|c| c.status != Status::Failed);
    Ok(report)
}

fn external(spec: &DrillSpec) -> Result<Place, String> {
    let url = spec.url.clone().ok_or("drill.url is missing")?;
    let u = DbUrl::parse(&url).map_err(|e| e.to_string())?;
    let password = match (&spec.password_file, &spec.password_env) {
        (Some(f), _) => Password::load(u.engine, Some(std::path::Path::new(f)), "DRTOOL_TARGET_PASSWORD"),
        (None, Some(v)) => {
            crate::child::register_secret_var(v);
            std::env::var(v)
                .map(Password::new)
                .map_err(|_| crate::engine::EngineError::Usage(format!("{v} is not set")))
        }
        (None, None) => Password::load(u.engine, None, "DRTOOL_TARGET_PASSWORD"),
    }
    .map_err(|e| e.to_string())?;
    // The server part only: databases are created under temporary names.
    let server = format!("{}/", u.server_url());
    Ok(Place::External { url: server, password, created: vec![] })
}

async fn restore_and_check(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    spec: &DrillSpec,
    place: &mut Place,
    report: &mut DrillReport,
    results: &mut Vec<CheckResult>,
) -> Result<(), String> {
    let dbs = databases(snap);
    let suffix = &snap.id.to_string()[..8];
    let renames: BTreeMap<String, String> = match place {
        Place::External { .. } => dbs.iter().map(|d| (d.clone(), format!("drtool_drill_{suffix}_{d}"))).collect(),
        Place::Scratch(_) => dbs.iter().map(|d| (d.clone(), d.clone())).collect(),
    };
    let target_url = DbUrl::parse(&place.url()).map_err(|e| e.to_string())?;
    let password = place.password();
    let restore_started = Instant::now();
    let mut target = tokio::task::block_in_place(|| db::connect(&target_url, &password)).map_err(|e| e.to_string())?;
    let opts = DbRestoreOptions {
        renames: renames.iter().filter(|(a, b)| a != b).map(|(a, b)| format!("{a}={b}")).collect(),
        clean: false,
        // Roles and accounts make owners and DEFINERs resolve on a fresh server.
        with_globals: matches!(place, Place::Scratch(_)),
    };
    let plan = tokio::task::block_in_place(|| dbrestore::plan(snap, target.as_ref(), &target_url, &opts))
        .map_err(|e| format!("restore plan: {e}"))?;
    if let Place::External { created, .. } = place {
        created.extend(renames.values().cloned());
    }
    let restored = dbrestore::execute(repo.clone(), snap, &plan, target.as_mut()).await;
    report.phases.restore_ms = restore_started.elapsed().as_millis() as u64;
    match restored {
        Ok(s) => {
            report.bytes_restored = s.bytes;
            results.push(CheckResult::new("restore", true, format!("{} streams, {} bytes", s.streams, s.bytes)));
        }
        Err(e) => {
            let msg = crate::repo::error::chain(&e);
            results.push(CheckResult::new("restore", false, msg.clone()));
            return Err(format!("restore failed: {msg}"));
        }
    }
    let checks_started = Instant::now();
    let counts: BTreeMap<String, u64> = snap
        .manifest
        .fingerprints
        .get("counts")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let nodes = place.nodes();
    let rename = |d: &str| renames.get(d).cloned().unwrap_or_else(|| d.to_string());
    let mut more = tokio::task::block_in_place(|| {
        let mut out = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            let tag = if nodes.len() > 1 { format!(" [node {}]", n + 1) } else { String::new() };
            let sql = match Sql::connect(node, &password) {
                Ok(s) => s,
                Err(e) => {
                    out.push(CheckResult::new(format!("connect{tag}"), false, e.to_string()));
                    continue;
                }
            };
            if nodes.len() > 1 {
                out.push(galera_state(&sql, &tag, nodes.len()));
            }
            out.extend(checks::row_counts(&sql, &counts, &rename, &tag));
            for d in &dbs {
                match &sql {
                    Sql::Mysql(_) => out.push(checks::check_tables(&sql, &rename(d), d, &tag)),
                    // amcheck changes the database it checks (CREATE EXTENSION): scratch only.
                    Sql::Postgres(_) if n == 0 && renames.get(d) == Some(d) => out.push(checks::amcheck(&sql, d, d)),
                    Sql::Postgres(_) => {}
                }
            }
            for c in &spec.checks {
                let db = c.database.clone().or_else(|| dbs.first().cloned()).unwrap_or_default();
                out.push(checks::user_check(&sql, c, &rename(&db), &tag));
            }
        }
        out
    });
    results.append(&mut more);
    report.phases.checks_ms = checks_started.elapsed().as_millis() as u64;
    let rto = restore_started.elapsed().as_secs_f64();
    report.rto_seconds = Some(rto);
    if let Some(t) = spec.rto_seconds {
        results.push(CheckResult::new("RTO target", rto <= t as f64, format!("{rto:.1} s, target {t} s")));
    }
    if let (Some(h), Some(rpo)) = (spec.rpo_hours, report.rpo_seconds) {
        results.push(CheckResult::new(
            "RPO target",
            rpo <= h * 3600.0,
            format!("snapshot {:.2} h old, target {h} h", rpo / 3600.0),
        ));
    }
    Ok(())
}

/// Galera: the node sees the whole cluster and is synced.
fn galera_state(sql: &Sql, tag: &str, size: usize) -> CheckResult {
    let name = format!("cluster{tag}");
    let q = |v: &str| {
        sql.first_row("mysql", &format!("SHOW STATUS LIKE {}", crate::engine::quote_literal(v)))
            .ok()
            .flatten()
            .and_then(|r| r.get(1).cloned().flatten())
            .unwrap_or_default()
    };
    let (n, state) = (q("wsrep_cluster_size"), q("wsrep_local_state_comment"));
    let ok = n == size.to_string() && state == "Synced";
    CheckResult::new(name, ok, format!("cluster size {n}, state {state}; expected {size}, Synced"))
}
