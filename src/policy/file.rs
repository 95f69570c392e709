//! Policy files: one TOML file per job, parsed strictly.
//!
//! Unknown keys, wrong types and invalid values are errors that name the file,
//! the line and column, and what was expected; nothing is silently ignored.

use super::retention::Retention;
use super::schedule::CronSchedule;
use crate::source::snapshot::{SnapshotKind, SnapshotSpec};
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A policy as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub name: Spanned<String>,
    pub repository: Spanned<String>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_command: Option<Spanned<Vec<String>>>,
    pub schedule: Option<Spanned<String>>,
    /// The host recorded in this policy's snapshots and whose snapshots its
    /// retention considers (default: this machine's host name).
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub source: Spanned<SourceSpec>,
    pub retention: Option<Spanned<Retention>>,
    pub hooks: Option<Spanned<Hooks>>,
    pub notify: Option<Notify>,
    pub metrics: Option<Metrics>,
    /// Used by restore drills.
    pub drill: Option<Spanned<DrillSpec>>,
    /// zstd level, as `backup --compression`.
    pub compression: Option<Spanned<i32>>,
    /// Continuous binlog capture (`drtool binlog`).
    pub binlog: Option<Spanned<super::binlog::BinlogSpec>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub kind: Spanned<String>,
    /// mysql, postgres, mongodb: the server URL (as `backup --source`).
    pub url: Option<Spanned<String>>,
    /// Database password: from this environment variable, or this file.
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    /// postgres: "dump" (pg_dump, the default) or "physical" (base backups for PITR, docs/PITR.md).
    pub method: Option<Spanned<String>>,
    /// command: argv; its stdout is the stream.
    pub command: Option<Vec<String>>,
    /// paths: files and directories.
    pub paths: Option<Vec<String>>,
    /// device: a block device or disk image, backed up as one stream.
    pub device: Option<String>,
    /// paths, device: read from a snapshot: btrfs | lvm | zfs | fsfreeze | none (docs/VOLUMES.md).
    pub snapshot: Option<Spanned<String>>,
    /// lvm: copy-on-write space, "2G" or "20%ORIGIN".
    pub snapshot_size: Option<String>,
    /// fsfreeze: the hard limit on how long a file system stays frozen.
    pub freeze_timeout_seconds: Option<u64>,
    /// paths: glob patterns to leave out (as `backup --exclude`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// paths: leave out directories tagged with CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    /// paths: do not cross into other file systems.
    #[serde(default)]
    pub one_file_system: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Commands (argv lists) run before the backup; one failing stops the run.
    #[serde(default)]
    pub pre: Vec<Vec<String>>,
    /// Commands run after the run, success or not (DRTOOL_RESULT says which).
    #[serde(default)]
    pub post: Vec<Vec<String>>,
    /// Seconds each hook may take (default 600).
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Called with a JSON body (POST) when a run fails.
    pub webhook: Spanned<String>,
    /// Also call it when a run succeeds.
    #[serde(default)]
    pub on_success: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// node_exporter textfile collector directory; drtool writes drtool_<policy>.prom there.
    pub textfile_dir: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    /// mariadb | galera | postgres | mongodb | external
    pub scratch: String,
    /// When the drill runs (5-field cron).
    pub schedule: Option<String>,
    /// Recovery time objective: the drill fails if restore plus checks take longer.
    pub rto_seconds: Option<u64>,
    /// Recovery point objective: the drill fails if the restored snapshot is older.
    pub rpo_hours: Option<f64>,
    #[serde(default)]
    pub checks: Vec<DrillCheck>,
    /// external: the server to restore into (under temporary database names).
    pub url: Option<String>,
    /// external: its password, from this variable or file.
    pub password_env: Option<String>,
    pub password_file: Option<String>,
}

/// A user check: SQL whose first value is compared.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillCheck {
    pub name: String,
    pub sql: String,
    /// The database (as named in the snapshot) to run in; default: the first one restored.
    pub database: Option<String>,
    /// The first value must equal this text.
    pub expect: Option<String>,
    /// The first value must be a number at least this.
    pub min: Option<f64>,
    /// The query must return at least one row.
    pub rows: Option<bool>,
}

/// A policy error with its place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Where a policy's source data comes from, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Database { url: String, password_env: Option<String>, password_file: Option<PathBuf>, physical: bool },
    Command(Vec<String>),
    Paths(Vec<PathBuf>, crate::source::exclude::TreeOptions),
    Device(PathBuf),
}

/// How the repository password is obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
    Command(Vec<String>),
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub path: PathBuf,
    pub name: String,
    pub repository: String,
    pub password: PasswordSource,
    pub schedule: Option<CronSchedule>,
    /// Set in the file; `None`: the machine's host name at run time.
    pub host: Option<String>,
    pub tags: Vec<String>,
    pub source: Source,
    pub retention: Option<Retention>,
    pub hooks: Hooks,
    pub notify: Option<Notify>,
    pub metrics: Option<Metrics>,
    pub drill: Option<DrillSpec>,
    pub compression: i32,
    /// How paths and devices are read consistently (none: live).
    pub snapshot: SnapshotSpec,
    pub binlog: Option<super::binlog::BinlogSettings>,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Ctx<'a> {
    file: String,
    text: &'a str,
    errors: Vec<PolicyError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(PolicyError { file: self.file.clone(), line, column, message: message.into() });
    }
}

/// Parse and validate policy text; every problem found is returned.
pub fn parse(path: &Path, text: &str) -> Result<Policy, Vec<PolicyError>> {
    let mut cx = Ctx { file: path.display().to_string(), text, errors: Vec::new() };
    let raw: PolicyFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, e.message().trim().to_string());
            return Err(cx.errors);
        }
    };
    let name = raw.name.get_ref().clone();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.')
    {
        cx.err(
            raw.name.span(),
            format!("invalid name {name:?}: use letters, digits, '-', '_' and '.' (it names files and units)"),
        );
    }
    let repository = raw.repository.get_ref().clone();
    if repository.is_empty() {
        cx.err(raw.repository.span(), "repository is empty: expected a local path, file:///path or s3://bucket/prefix");
    } else if repository.contains("://") && !repository.starts_with("s3://") && !repository.starts_with("file://") {
        cx.err(
            raw.repository.span(),
            format!("unsupported repository {repository:?}: expected a local path, file:///path or s3://bucket/prefix"),
        );
    }
    let password = password_source(&raw, &mut cx);
    let schedule = raw.schedule.as_ref().and_then(|s| match CronSchedule::parse(s.get_ref()) {
        Ok(c) => Some(c),
        Err(e) => {
            cx.err(s.span(), e.to_string());
            None
        }
    });
    if let Some(h) = &raw.host
        && (h.get_ref().trim().is_empty() || h.get_ref().chars().any(char::is_control))
    {
        cx.err(h.span(), format!("invalid host {:?}: expected a host name, e.g. \"web1\"", h.get_ref()));
    }
    let source = source(&raw.source, &mut cx);
    let snapshot = snapshot_spec(&raw.source, &mut cx);
    let retention = raw.retention.as_ref().and_then(|r| match r.get_ref().validate() {
        Ok(()) => Some(r.get_ref().clone()),
        Err(e) => {
            cx.err(r.span(), e.to_string());
            None
        }
    });
    let hooks = raw.hooks.as_ref().map(|h| h.get_ref().clone()).unwrap_or_default();
    let hooks_span = raw.hooks.as_ref().map_or(0..0, |h| h.span());
    for (which, list) in [("pre", &hooks.pre), ("post", &hooks.post)] {
        if list.iter().any(|c| c.is_empty() || c[0].is_empty()) {
            cx.err(
                hooks_span.clone(),
                format!(
                    "hooks.{which}: every hook is a non-empty command list, e.g. [\"systemctl\", \"stop\", \"app\"]"
                ),
            );
        }
    }
    if let Some(n) = &raw.notify {
        let u = n.webhook.get_ref();
        if !(u.starts_with("http://") || u.starts_with("https://")) || ::url::Url::parse(u).is_err() {
            cx.err(n.webhook.span(), format!("invalid webhook {u:?}: expected an http:// or https:// URL"));
        }
    }
    if let Some(d) = &raw.drill {
        let kinds = ["mariadb", "galera", "postgres", "mongodb", "external"];
        if !kinds.contains(&d.get_ref().scratch.as_str()) {
            cx.err(d.span(), format!("drill.scratch {:?}: expected one of {}", d.get_ref().scratch, kinds.join(", ")));
        }
        let spec = d.get_ref();
        if let Some(s) = &spec.schedule {
            if let Err(e) = CronSchedule::parse(s) {
                cx.err(d.span(), format!("drill.schedule: {e}"));
            }
        }
        for c in &spec.checks {
            let given =
                usize::from(c.expect.is_some()) + usize::from(c.min.is_some()) + usize::from(c.rows == Some(true));
            if given != 1 || c.name.is_empty() || c.sql.trim().is_empty() {
                cx.err(d.span(), format!(
                    "drill check {:?}: needs a name, sql, and exactly one of expect = \"TEXT\", min = NUMBER, rows = true",
                    c.name
                ));
            }
        }
        match (spec.scratch.as_str(), &spec.url) {
            ("external", None) => {
                cx.err(d.span(), "drill.scratch = \"external\" needs drill.url, the server to restore into")
            }
            ("external", Some(u)) => {
                if let Err(e) = crate::engine::DbUrl::parse(u) {
                    cx.err(d.span(), format!("drill.url: {e}"));
                }
            }
            (_, Some(_)) => cx.err(d.span(), "drill.url applies only to scratch = \"external\""),
            _ => {}
        }
        if spec.rpo_hours.is_some_and(|h| !(h > 0.0)) {
            cx.err(d.span(), "drill.rpo_hours must be a positive number of hours");
        }
    }
    let compression = match &raw.compression {
        Some(c) if !(0..=19).contains(c.get_ref()) => {
            cx.err(c.span(), format!("compression {}: expected a zstd level from 0 (off) to 19", c.get_ref()));
            3
        }
        Some(c) => *c.get_ref(),
        None => 3,
    };
    let binlog = raw.binlog.as_ref().and_then(|b| match b.get_ref().validate(raw.source.get_ref().kind.get_ref()) {
        Ok(s) => Some(s),
        Err(errors) => {
            errors.into_iter().for_each(|e| cx.err(b.span(), e));
            None
        }
    });
    match (password, source) {
        (Some(password), Some(source)) if cx.errors.is_empty() => Ok(Policy {
            path: path.to_path_buf(),
            name,
            repository,
            password,
            schedule,
            host: raw.host.as_ref().map(|h| h.get_ref().clone()),
            tags: raw.tags.clone(),
            source,
            retention,
            hooks,
            notify: raw.notify.clone(),
            metrics: raw.metrics.clone(),
            drill: raw.drill.as_ref().map(|d| d.get_ref().clone()),
            compression,
            snapshot,
            binlog,
        }),
        _ => Err(cx.errors),
    }
}

fn password_source(raw: &PolicyFile, cx: &mut Ctx<'_>) -> Option<PasswordSource> {
    let given: Vec<(Range<usize>, PasswordSource)> = [
        raw.password_file.as_ref().map(|p| (p.span(), PasswordSource::File(PathBuf::from(p.get_ref())))),
        raw.password_env.as_ref().map(|p| (p.span(), PasswordSource::Env(p.get_ref().clone()))),
        raw.password_command.as_ref().map(|p| (p.span(), PasswordSource::Command(p.get_ref().clone()))),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Report a duplicate at the later of the two places.
    let mut given = given;
    given.sort_by_key(|(span, _)| span.start);
    match given.as_slice() {
        [] => {
            cx.err(
                raw.name.span(),
                "no repository password source: set one of password_file, password_env, password_command",
            );
            None
        }
        [(span, PasswordSource::Command(c))] if c.is_empty() => {
            cx.err(
                span.clone(),
                "password_command is empty: expected a command list, e.g. [\"pass\", \"show\", \"drtool\"]",
            );
            None
        }
        [(_, p)] => Some(p.clone()),
        [_, (span, _), ..] => {
            cx.err(
                span.clone(),
                "more than one repository password source: keep one of password_file, password_env, password_command",
            );
            None
        }
    }
}

fn source(spec: &Spanned<SourceSpec>, cx: &mut Ctx<'_>) -> Option<Source> {
    let s = spec.get_ref();
    let kind = s.kind.get_ref().as_str();
    let table = spec.span();
    let unexpected = |cx: &mut Ctx<'_>, field: &str, present: bool| {
        if present {
            cx.err(table.clone(), format!("source.{field} does not apply to kind {kind:?}"));
        }
    };
    match kind {
        "mysql" | "postgres" | "mongodb" => {
            unexpected(cx, "command", s.command.is_some());
            unexpected(cx, "paths", s.paths.is_some());
            unexpected(cx, "device", s.device.is_some());
            let Some(url) = &s.url else {
                cx.err(table, format!("source.url is missing: expected e.g. \"{kind}://user@host:port/db\""));
                return None;
            };
            match crate::engine::DbUrl::parse(url.get_ref()) {
                Ok(u) if u.engine.as_str() == kind => {}
                Ok(u) => cx.err(url.span(), format!("source.url is a {} URL but kind is {kind:?}", u.engine)),
                Err(e) => cx.err(url.span(), e.to_string()),
            }
            if s.password_env.is_some() && s.password_file.is_some() {
                cx.err(table, "source: give password_env or password_file, not both");
            }
            let physical = match s.method.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
                None | Some(("dump", _)) => false,
                Some(("physical", _)) if kind == "postgres" => true,
                Some((m, span)) => {
                    cx.err(
                        span,
                        format!("source.method {m:?} is not known for {kind}: use \"dump\" or (postgres) \"physical\""),
                    );
                    false
                }
            };
            Some(Source::Database {
                url: url.get_ref().clone(),
                password_env: s.password_env.clone(),
                password_file: s.password_file.as_ref().map(PathBuf::from),
                physical,
            })
        }
        "command" => {
            unexpected(cx, "url", s.url.is_some());
            unexpected(cx, "method", s.method.is_some());
            unexpected(cx, "paths", s.paths.is_some());
            unexpected(cx, "device", s.device.is_some());
            match &s.command {
                Some(c) if !c.is_empty() && !c[0].is_empty() => Some(Source::Command(c.clone())),
                _ => {
                    cx.err(table, "source.command is missing or empty: expected a command list, e.g. [\"sh\", \"-c\", \"pg_dumpall\"]");
                    None
                }
            }
        }
        "paths" => {
            unexpected(cx, "url", s.url.is_some());
            unexpected(cx, "method", s.method.is_some());
            unexpected(cx, "command", s.command.is_some());
            unexpected(cx, "device", s.device.is_some());
            match &s.paths {
                Some(p) if !p.is_empty() && p.iter().all(|p| p.starts_with('/')) => {
                    let options = crate::source::exclude::TreeOptions {
                        excludes: s.exclude.clone(),
                        exclude_caches: s.exclude_caches,
                        one_file_system: s.one_file_system,
                    };
                    Some(Source::Paths(p.iter().map(PathBuf::from).collect(), options))
                }
                _ => {
                    cx.err(table, "source.paths must be a non-empty list of absolute paths, e.g. [\"/srv/uploads\"]");
                    None
                }
            }
        }
        "device" => {
            unexpected(cx, "url", s.url.is_some());
            unexpected(cx, "method", s.method.is_some());
            unexpected(cx, "command", s.command.is_some());
            unexpected(cx, "paths", s.paths.is_some());
            match &s.device {
                Some(d) if d.starts_with('/') => Some(Source::Device(PathBuf::from(d))),
                _ => {
                    cx.err(table, "source.device must be an absolute path, e.g. \"/dev/vg0/data\" or \"/srv/vm.img\"");
                    None
                }
            }
        }
        other => {
            cx.err(
                s.kind.span(),
                format!("unknown source kind {other:?}: expected mysql, postgres, mongodb, command, paths or device"),
            );
            None
        }
    }
}

/// `source.snapshot` and its settings, checked against the source kind.
fn snapshot_spec(spec: &Spanned<SourceSpec>, cx: &mut Ctx<'_>) -> SnapshotSpec {
    let s = spec.get_ref();
    let kind_name = s.kind.get_ref().as_str();
    let mut out = SnapshotSpec::none();
    if let Some(k) = &s.snapshot {
        match k.get_ref().parse::<SnapshotKind>() {
            Ok(kind) => out.kind = kind,
            Err(e) => cx.err(k.span(), e),
        }
        let allowed: &[SnapshotKind] = match kind_name {
            "paths" => &[SnapshotKind::Btrfs, SnapshotKind::Lvm, SnapshotKind::Zfs, SnapshotKind::Fsfreeze],
            "device" => &[SnapshotKind::Lvm, SnapshotKind::Fsfreeze],
            _ => &[],
        };
        if out.kind != SnapshotKind::None && !allowed.contains(&out.kind) {
            cx.err(k.span(), format!("source.snapshot = \"{}\" does not apply to kind {kind_name:?}", out.kind));
        }
    }
    if let Some(size) = &s.snapshot_size {
        if out.kind != SnapshotKind::Lvm {
            cx.err(spec.span(), "source.snapshot_size applies only to snapshot = \"lvm\"");
        } else if size.is_empty() || size.starts_with('-') {
            cx.err(spec.span(), format!("source.snapshot_size {size:?}: expected e.g. \"2G\" or \"20%ORIGIN\""));
        }
        out.size = Some(size.clone());
    }
    if let Some(t) = s.freeze_timeout_seconds {
        if out.kind != SnapshotKind::Fsfreeze {
            cx.err(spec.span(), "source.freeze_timeout_seconds applies only to snapshot = \"fsfreeze\"");
        } else if t == 0 {
            cx.err(spec.span(), "source.freeze_timeout_seconds must be at least 1");
        }
        out.freeze_timeout = Some(std::time::Duration::from_secs(t));
    }
    out
}

/// Read and parse one policy file.
pub fn load(path: &Path) -> Result<Policy, Vec<PolicyError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![PolicyError { file: path.display().to_string(), line: 0, column: 0, message: format!("cannot read: {e}") }]
    })?;
    parse(path, &text)
}

/// Every `*.toml` file in `dir`, sorted.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    v.sort();
    Ok(v)
}
