//! `drtool run POLICY`: hooks, backup, retention, metrics, notification.
//!
//! One run of a policy at a time: a per-policy `flock` in the state
//! directory. The kernel drops it when the process dies, so a crashed run never
//! blocks the next one, and a second run while one is going fails at once.

use super::backup::{self, BackupRequest, BackupSource};
use super::forget::{ForgetRequest, forget};
use super::{JobError, notify};
use crate::engine::{DbUrl, Password};
use crate::policy::file::{PasswordSource, Policy, Source};
use crate::repo::writer::WriterOptions;
use crate::repo::{RepoError, Repository};
use crate::source::SourceError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Where run locks and last-run state live: DRTOOL_STATE_DIR, else
/// /var/lib/drtool for root, else ~/.local/state/drtool.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DRTOOL_STATE_DIR") {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/drtool");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".local/state/drtool")
}

/// Held for the whole run; released (closed) on drop or process death.
pub struct RunLock {
    _file: std::fs::File,
}

pub fn lock_policy(name: &str) -> Result<RunLock, JobError> {
    let dir = state_dir().join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| RepoError::io(dir.display().to_string(), e))?;
    let path = dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RepoError::io(path.display().to_string(), e))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(JobError::Repo(RepoError::Locked {
            holder: format!("another run of policy {name:?}"),
            lock: path.display().to_string(),
        }));
    }
    Ok(RunLock { _file: file })
}

/// What the last runs of a policy did, kept in the state directory for metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyState {
    pub last_run: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_ok: bool,
    pub last_duration_ms: u64,
    pub last_bytes_added: u64,
    pub last_bytes_read: u64,
    pub snapshots: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub policy: String,
    pub started: DateTime<Utc>,
    pub duration_ms: u64,
    pub ok: bool,
    pub error: Option<String>,
    pub snapshot_id: Option<String>,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub forgotten: Vec<String>,
    pub snapshots: u64,
}

/// The repository password named by the policy.
pub fn repository_password(p: &PasswordSource) -> Result<Zeroizing<Vec<u8>>, JobError> {
    let bad = |m: String| JobError::Usage(m);
    let mut v = match p {
        PasswordSource::File(f) => {
            std::fs::read(f).map_err(|e| bad(format!("cannot read password_file {}: {e}", f.display())))?
        }
        PasswordSource::Env(var) => {
            std::env::var(var).map_err(|_| bad(format!("password_env: {var} is not set")))?.into_bytes()
        }
        PasswordSource::Command(argv) => {
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| bad(format!("password_command {}: {e}", argv[0])))?;
            if !out.status.success() {
                return Err(bad(format!("password_command {} failed ({})", argv[0], out.status)));
            }
            out.stdout
        }
    };
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    if v.is_empty() {
        return Err(bad("the repository password is empty".into()));
    }
    Ok(Zeroizing::new(v))
}

fn source_password(url: &DbUrl, env: Option<&str>, file: Option<&Path>) -> Result<Password, JobError> {
    if let Some(var) = env.filter(|_| file.is_none()) {
        return std::env::var(var)
            .map(Password::new)
            .map_err(|_| JobError::Usage(format!("source.password_env: {var} is not set")));
    }
    Password::load(url.engine, file, "DRTOOL_SOURCE_PASSWORD").map_err(|e| JobError::Usage(e.to_string()))
}

/// Build the backup request a policy describes.
pub fn backup_request(p: &Policy) -> Result<BackupRequest, JobError> {
    let source = match &p.source {
        Source::Database { url, password_env, password_file } => {
            let url = DbUrl::parse(url).map_err(|e| JobError::Usage(e.to_string()))?;
            let pw = source_password(&url, password_env.as_deref(), password_file.as_deref())?;
            BackupSource::Database(url, pw)
        }
        Source::Command(argv) => BackupSource::Command(argv.clone()),
        Source::Paths(paths, options) => BackupSource::Paths(paths.clone(), options.clone()),
        Source::Device(device) => BackupSource::Device(device.clone()),
    };
    Ok(BackupRequest {
        name: p.name.clone(),
        source,
        tags: p.tags.clone(),
        time: None,
        writer: WriterOptions { compression_level: p.compression, ..WriterOptions::default() },
        force: false,
        snapshot: p.snapshot.clone(),
    })
}

/// Run one hook; `Err` carries its failure as a source error (no snapshot).
pub fn run_hook(p: &Policy, argv: &[String], result: Option<&str>) -> Result<(), JobError> {
    let timeout = Duration::from_secs(p.hooks.timeout_seconds.unwrap_or(600));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("DRTOOL_POLICY", &p.name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(r) = result {
        cmd.env("DRTOOL_RESULT", r);
    }
    let display = format!("hook {}", argv.join(" "));
    let mut child = cmd.spawn().map_err(|source| SourceError::Spawn { command: display.clone(), source })?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| SourceError::Io { path: display.clone(), source: e })? {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SourceError::Failed {
                command: display,
                status: format!("killed after {} s (hooks.timeout_seconds)", timeout.as_secs()),
                stderr: String::new(),
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if status.success() {
        return Ok(());
    }
    Err(SourceError::Failed { command: display, status: status.to_string(), stderr }.into())
}

/// The whole run. `repo` opens the policy's repository (the CLI knows how).
pub async fn run(p: &Policy, repo: Arc<Repository>) -> (RunReport, Option<JobError>) {
    let started = Utc::now();
    let clock = Instant::now();
    let mut report = RunReport {
        policy: p.name.clone(),
        started,
        duration_ms: 0,
        ok: false,
        error: None,
        snapshot_id: None,
        bytes_read: 0,
        bytes_added: 0,
        forgotten: vec![],
        snapshots: 0,
    };
    let result = run_steps(p, &repo, &mut report).await;
    let outcome = if result.is_ok() { "success" } else { "failure" };
    // Post hooks run whatever happened; their failure is reported but does not undo the backup.
    let mut post_error = None;
    for argv in &p.hooks.post {
        if let Err(e) = tokio::task::block_in_place(|| run_hook(p, argv, Some(outcome))) {
            tracing::error!("post hook failed: {e}");
            post_error.get_or_insert(e);
        }
    }
    let error = result.err().or(post_error);
    report.ok = error.is_none();
    report.error = error.as_ref().map(|e| crate::repo::error::chain(e));
    report.duration_ms = clock.elapsed().as_millis() as u64;
    report.snapshots = count_named(&repo, &p.name).await;
    finish(p, &report).await;
    (report, error)
}


async fn count_named(repo: &Repository, name: &str) -> u64 {
    repo.list_snapshots().await.map(|v| v.iter().filter(|s| s.manifest.name == name).count() as u64).unwrap_or(0)
}

async fn run_steps(p: &Policy, repo: &Arc<Repository>, report: &mut RunReport) -> Result<(), JobError> {
    for argv in &p.hooks.pre {
        tokio::task::block_in_place(|| run_hook(p, argv, None))?;
    }
    let req = backup_request(p)?;
    let out = backup::run(repo.clone(), req, &|_| {}).await?;
    report.snapshot_id = Some(out.id.to_string());
    report.bytes_read = out.manifest.summary.bytes_read;
    report.bytes_added = out.manifest.summary.bytes_stored;
    tracing::info!(snapshot = %out.id.short(), bytes_read = report.bytes_read, bytes_added = report.bytes_added, "backup saved");
    if let Some(rules) = &p.retention {
        let req = ForgetRequest { rules: Some(rules.clone()), name: Some(p.name.clone()), ..ForgetRequest::default() };
        let f = forget(repo.clone(), &req).await?;
        tracing::info!(forgotten = f.removed.len(), "retention applied");
        report.forgotten = f.removed;
    }
    Ok(())
}

/// Update the state file, the Prometheus textfile and send the notification.
async fn finish(p: &Policy, report: &RunReport) {
    let path = state_dir().join("policies").join(format!("{}.json", p.name));
    let mut state: PolicyState =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    state.last_run = Some(report.started);
    state.last_ok = report.ok;
    state.last_duration_ms = report.duration_ms;
    if report.ok {
        state.last_success = Some(report.started);
        state.last_bytes_added = report.bytes_added;
        state.last_bytes_read = report.bytes_read;
    }
    state.snapshots = report.snapshots;
    if let Err(e) = write_atomic(&path, &serde_json::to_vec_pretty(&state).unwrap_or_default()) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
    if let Some(m) = &p.metrics {
        let file = Path::new(&m.textfile_dir).join(format!("drtool_{}.prom", p.name));
        if let Err(e) = write_atomic(&file, prometheus_text(&p.name, &state).as_bytes()) {
            tracing::warn!("cannot write metrics {}: {e}", file.display());
        }
    }
    if let Some(n) = &p.notify {
        if !report.ok || n.on_success {
            let body = serde_json::json!({
                "event": if report.ok { "backup_succeeded" } else { "backup_failed" },
                "host": crate::repo::lock::hostname(),
                "report": report,
            });
            if let Err(e) = notify::post_json(n.webhook.get_ref(), &body).await {
                tracing::warn!("notification to {} failed: {e}", n.webhook.get_ref());
            }
        }
    }
}

/// node_exporter textfile collector format.
pub fn prometheus_text(name: &str, s: &PolicyState) -> String {
    let label = name.replace('\\', "\\\\").replace('"', "\\\"");
    let ts = |t: Option<DateTime<Utc>>| t.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0);
    let metrics: [(&str, &str, f64); 7] = [
        ("drtool_last_run_timestamp_seconds", "Start time of the last run.", ts(s.last_run)),
        (
            "drtool_last_success_timestamp_seconds",
            "Start time of the last successful run (0: never).",
            ts(s.last_success),
        ),
        ("drtool_last_run_success", "1 if the last run succeeded, else 0.", if s.last_ok { 1.0 } else { 0.0 }),
        ("drtool_last_run_duration_seconds", "Duration of the last run.", s.last_duration_ms as f64 / 1000.0),
        (
            "drtool_last_backup_added_bytes",
            "Bytes the last successful backup added to the repository.",
            s.last_bytes_added as f64,
        ),
        (
            "drtool_last_backup_read_bytes",
            "Bytes the last successful backup read from its source.",
            s.last_bytes_read as f64,
        ),
        ("drtool_snapshots", "Snapshots of this policy in the repository.", s.snapshots as f64),
    ];
    let mut out = String::new();
    for (metric, help, value) in metrics {
        out.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric}{{policy=\"{label}\"}} {value}\n"
        ));
    }
    out
}

/// Write via a temporary file and rename, so readers never see half a file.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
