//! `policy check`, `run`, `schedule` and `daemon`.

use super::commands::store_at;
use super::exit::{self, Failure};
use super::output::{bytes, outln, print_json};
use super::{Global, ScheduleArgs};
use crate::job::policyrun::{self, lock_policy};
use crate::policy::file::{self, Policy, PolicyError};
use crate::repo::Repository;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The policies directory: --policies / DRTOOL_POLICIES, ./policies, /etc/drtool/policies.
pub fn policies_dir(g: &Global) -> PathBuf {
    if let Some(d) = &g.policies {
        return d.clone();
    }
    let local = PathBuf::from("policies");
    if local.is_dir() { local } else { PathBuf::from("/etc/drtool/policies") }
}

fn print_errors(errors: &[PolicyError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

/// Every policy file under the given paths (files as given, directories' *.toml).
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(file::policy_files(p).map_err(|e| Failure::usage(format!("cannot read {}: {e}", p.display())))?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn check(g: &Global, paths: &[PathBuf]) -> Result<u8, Failure> {
    let paths = if paths.is_empty() { vec![policies_dir(g)] } else { paths.to_vec() };
    let files = expand(&paths)?;
    if files.is_empty() {
        return Err(Failure::usage(format!("no policy files (*.toml) in {}", paths[0].display())));
    }
    let mut bad = 0;
    let mut results = Vec::new();
    for f in &files {
        match file::load(f) {
            Ok(p) => results.push(serde_json::json!({ "file": f, "name": p.name, "ok": true })),
            Err(errors) => {
                bad += 1;
                print_errors(&errors);
                results.push(serde_json::json!({ "file": f, "ok": false, "errors": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>() }));
            }
        }
    }
    if g.json {
        print_json(&results)?;
    } else {
        outln!("{} policies checked, {} invalid", files.len(), bad);
    }
    Ok(if bad == 0 { exit::OK } else { exit::USAGE })
}

/// Load all valid policies of the directory; invalid ones are reported.
fn load_all(dir: &Path) -> Result<(Vec<Policy>, usize), Failure> {
    let files = file::policy_files(dir)
        .map_err(|e| Failure::usage(format!("cannot read policies directory {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    let mut invalid = 0;
    for f in files {
        match file::load(&f) {
            Ok(p) => out.push(p),
            Err(errors) => {
                invalid += 1;
                print_errors(&errors);
            }
        }
    }
    Ok((out, invalid))
}

/// A policy by file path or by name in the policies directory.
pub fn find_policy(g: &Global, spec: &str) -> Result<Policy, Failure> {
    let as_path = Path::new(spec);
    if as_path.is_file() || spec.ends_with(".toml") {
        return file::load(as_path).map_err(|errors| {
            print_errors(&errors);
            Failure::usage(format!("policy {} is invalid", as_path.display()))
        });
    }
    let dir = policies_dir(g);
    let (all, invalid) = load_all(&dir)?;
    all.into_iter().find(|p| p.name == spec).ok_or_else(|| {
        let hint = if invalid > 0 { format!(" ({invalid} policy files there are invalid)") } else { String::new() };
        Failure::new(exit::NOT_FOUND, anyhow::anyhow!("no policy named {spec:?} in {}{hint}", dir.display()))
    })
}

pub async fn run(g: &Global, spec: &str) -> Result<u8, Failure> {
    let p = find_policy(g, spec)?;
    policyrun::register_policy_secrets(&p);
    let _lock = lock_policy(&p.name)?;
    let span = tracing::info_span!("policy", name = %p.name);
    let _enter = span.enter();
    tracing::info!("run started");
    let password = policyrun::repository_password(&p.password)?;
    let store = store_at(&p.repository).await?;
    let repo = Arc::new(Repository::open(store, &password).await?);
    let (report, error) = policyrun::run(&p, repo).await;
    tracing::info!(ok = report.ok, duration_ms = report.duration_ms, "run finished");
    if g.json {
        print_json(&report)?;
    } else if report.ok {
        outln!(
            "policy {}: snapshot {} (read {}, added {}), {} forgotten, {} snapshots, {:.1} s",
            p.name,
            report.snapshot_id.as_deref().map_or("-", |s| &s[..8.min(s.len())]),
            bytes(report.bytes_read),
            bytes(report.bytes_added),
            report.forgotten.len(),
            report.snapshots,
            report.duration_ms as f64 / 1000.0
        );
    }
    match error {
        None => Ok(exit::OK),
        Some(e) => Err(Failure::from(e)),
    }
}

fn exe() -> String {
    std::env::current_exe().map_or_else(|_| "drtool".into(), |p| p.display().to_string())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn schedule(g: &Global, a: ScheduleArgs) -> Result<u8, Failure> {
    if let Some(spec) = &a.next {
        let p = find_policy(g, spec)?;
        let s = p.schedule.as_ref().ok_or_else(|| Failure::usage(format!("policy {} has no schedule", p.name)))?;
        let now = chrono::Local::now();
        let times = s.upcoming(&now, 5);
        if g.json {
            print_json(&times.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>())?;
        } else {
            for t in times {
                outln!("{}", t.format("%Y-%m-%d %H:%M %Z (%a)"));
            }
        }
        return Ok(exit::OK);
    }
    let dir = absolute(&policies_dir(g));
    let (all, invalid) = load_all(&dir)?;
    if invalid > 0 {
        return Err(Failure::usage(format!(
            "{invalid} invalid policies in {}: fix them first (drtool policy check)",
            dir.display()
        )));
    }
    let jobs = crate::job::daemon::jobs(&all);
    let exe = exe();
    // Unit and crontab names: drtool-NAME for backups, drtool-drill-NAME for drills.
    let unit = |j: &crate::job::daemon::Job| {
        if j.command == "run" { format!("drtool-{}", j.policy) } else { format!("drtool-drill-{}", j.policy) }
    };
    if a.crontab {
        outln!("# drtool policies from {} (install with: crontab -e, or copy into a user crontab)", dir.display());
        for j in &jobs {
            outln!(
                "{} {} --policies {} {} {} >/dev/null",
                j.schedule.crontab(),
                exe,
                dir.display(),
                j.command,
                j.policy
            );
        }
        return Ok(exit::OK);
    }
    if let Some(out) = &a.systemd {
        std::fs::create_dir_all(out).map_err(|e| Failure::new(exit::ERROR, e))?;
        let mut written = Vec::new();
        for j in &jobs {
            let what = if j.command == "run" { "backup" } else { "restore drill" };
            let service = format!(
                "[Unit]\nDescription=drtool {what} of policy {name}\nWants=network-online.target\nAfter=network-online.target\n\n\
                 [Service]\nType=oneshot\nExecStart={exe} --policies {dir} {cmd} {name}\nNice=10\nIOSchedulingClass=best-effort\nIOSchedulingPriority=7\n",
                name = j.policy,
                cmd = j.command,
                dir = dir.display()
            );
            let calendars: String = j.schedule.on_calendar().iter().map(|c| format!("OnCalendar={c}\n")).collect();
            let timer = format!(
                "[Unit]\nDescription=drtool schedule of {what} {name} ({cron})\n\n[Timer]\n{calendars}Persistent=true\nUnit={unit}.service\n\n\
                 [Install]\nWantedBy=timers.target\n",
                name = j.policy,
                cron = j.schedule.as_str(),
                unit = unit(j)
            );
            for (ext, body) in [("service", service), ("timer", timer)] {
                let f = out.join(format!("{}.{ext}", unit(j)));
                std::fs::write(&f, body)
                    .map_err(|e| Failure::new(exit::ERROR, anyhow::anyhow!("{}: {e}", f.display())))?;
                written.push(f);
            }
        }
        if g.json {
            print_json(&written)?;
        } else {
            for f in &written {
                outln!("wrote {}", f.display());
            }
            outln!("enable with: systemctl daemon-reload && systemctl enable --now drtool-NAME.timer");
        }
        return Ok(exit::OK);
    }
    Err(Failure::usage("choose --systemd DIR, --crontab or --next POLICY"))
}

pub async fn daemon(g: &Global) -> Result<u8, Failure> {
    let dir = absolute(&policies_dir(g));
    let (all, invalid) = load_all(&dir)?;
    if invalid > 0 {
        return Err(Failure::usage(format!(
            "{invalid} invalid policies in {}: fix them first (drtool policy check)",
            dir.display()
        )));
    }
    if crate::job::daemon::jobs(&all).is_empty() {
        return Err(Failure::usage(format!("no policy in {} has a schedule", dir.display())));
    }
    crate::job::daemon::run(&all, &dir, &exe()).await.map_err(|e| Failure::new(exit::ERROR, e))?;
    // Stopped by SIGTERM/SIGINT after its runs finished: a clean shutdown.
    Ok(exit::OK)
}
