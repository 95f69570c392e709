//! PostgreSQL WAL archiving: `wal-push` (archive_command) and `wal-fetch`
//! (restore_command), one file per call (docs/PITR.md).
//!
//! Per call: read the small archive configuration, read the segment, check
//! its name and header, one small read of the archive record, one existence
//! check, one durable `put` of the sealed segment. No Argon2id (the
//! configuration holds the log archive secret, not the password) and no
//! index (archived files are addressed by name), so a call costs about what
//! compressing and writing 16 MiB costs.

use crate::engine::pg_wal::{WalFile, major_of_magic, segment_header};
use crate::repo::walcat::{ArchiveError, ArchiveSecret, LogArchive, Stored};
use crate::store::DynStore;
use serde::Deserialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The archive kind of PostgreSQL WAL.
pub const KIND: &str = "postgres-wal";
/// The archive name when the configuration names none.
pub const DEFAULT_ARCHIVE: &str = "main";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{0:?} is not a WAL file name (24 hex digits, optionally .partial; TTTTTTTT.history; or a .backup file)")]
    BadName(String),
    #[error("{path} is not a WAL segment: {reason}")]
    NotWal { path: String, reason: String },
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// WAL of another server, or a conflicting file: never archived.
    #[error("{0}")]
    Refused(String),
    #[error("{0} is not in the WAL archive")]
    Missing(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// `wal.toml`: where the archive is and the secret that opens it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    pub repository: String,
    #[serde(default = "default_archive")]
    pub archive: String,
    /// The log archive secret (hex), written by `drtool wal-config`.
    #[serde(default)]
    pub key: Option<String>,
    /// Instead of `key`: the repository password (slow: Argon2id on every call).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_archive() -> String {
    DEFAULT_ARCHIVE.to_string()
}

impl WalConfig {
    /// Read a configuration file, refusing one that others can read (it holds a secret).
    pub fn load(path: &Path) -> Result<Self, WalError> {
        let bad = |m: String| WalError::Config(format!("{}: {m}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(bad(format!(
                "mode {:o} lets other users read the archive secret; chmod 600 it",
                meta.permissions().mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let cfg: WalConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if cfg.key.is_some() == cfg.password_file.is_some() {
            return Err(bad("give exactly one of `key` and `password_file`".into()));
        }
        Ok(cfg)
    }

    /// The secret in `key`, if that is how this configuration opens the archive.
    pub fn secret(&self) -> Result<Option<ArchiveSecret>, WalError> {
        match &self.key {
            None => Ok(None),
            Some(k) => ArchiveSecret::from_hex(k)
                .map(Some)
                .ok_or_else(|| WalError::Config("`key` is not 64 hex digits".into())),
        }
    }
}

/// The configuration text `wal-config` writes.
pub fn config_text(repository: &str, archive: &str, secret: &ArchiveSecret) -> String {
    format!(
        "# drtool WAL archive access (docs/PITR.md). Keep it mode 0600, owned by the\n\
         # user PostgreSQL runs as: `key` archives and fetches WAL, and opens nothing else.\n\
         repository = {}\narchive = {}\nkey = \"{}\"\n",
        toml_str(repository),
        toml_str(archive),
        secret.to_hex().as_str()
    )
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// What `wal-push` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub name: String,
    pub size: u64,
    pub already: bool,
}

fn file_name(path: &Path) -> Result<(String, WalFile), WalError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let kind = WalFile::parse(&name).ok_or_else(|| WalError::BadName(path.display().to_string()))?;
    Ok((name, kind))
}

/// Archive one WAL file. Returns only once it is durably stored.
pub async fn push(store: DynStore, secret: &ArchiveSecret, archive: &str, path: &Path) -> Result<Pushed, WalError> {
    let (name, kind) = file_name(path)?;
    let io = |source| WalError::Io { path: path.display().to_string(), source };
    let meta = tokio::fs::metadata(path).await.map_err(io)?;
    let data = tokio::fs::read(path).await.map_err(io)?;
    let identity = match kind {
        WalFile::Segment { .. } | WalFile::Partial { .. } => Some(segment_identity(path, &name, kind, &data)?),
        _ => None,
    };
    let mut a = LogArchive::open(store, secret, KIND, archive).await?;
    match (&a.info().identity, identity) {
        (Some(have), Some(new)) if !same_server(have, &new) => {
            return Err(WalError::Refused(format!(
                "refusing {name}: it is WAL of {}, but archive {archive:?} holds WAL of {}; \
                 archive another server (or a new major version) under another archive name",
                describe(&new),
                describe(have)
            )));
        }
        (None, Some(new)) => a.bind(secret, new).await?,
        _ => {}
    }
    let mtime_ns = meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec());
    let stored = a.put_file(&name, &data, mtime_ns).await.map_err(|e| match e {
        ArchiveError::Conflict { file } => WalError::Refused(format!(
            "{file} is already archived with different content; refusing to replace it \
             (is another server archiving under the same archive name?)"
        )),
        e => e.into(),
    })?;
    Ok(Pushed { name, size: data.len() as u64, already: stored == Stored::AlreadyIdentical })
}

/// The server a segment belongs to, after checking that its header matches its name.
fn segment_identity(path: &Path, name: &str, kind: WalFile, data: &[u8]) -> Result<serde_json::Value, WalError> {
    let not_wal = |reason: String| WalError::NotWal { path: path.display().to_string(), reason };
    let h = segment_header(data).map_err(not_wal)?;
    let seg_size = u64::from(h.seg_size);
    let segno = kind.segno(seg_size).unwrap_or_default();
    if h.pageaddr != segno * seg_size {
        return Err(not_wal(format!("its header says it starts at {:X}, its name {name} says otherwise", h.pageaddr)));
    }
    if h.tli > kind.tli() {
        return Err(not_wal(format!("its header is of timeline {}, newer than its name {name}", h.tli)));
    }
    if matches!(kind, WalFile::Segment { .. }) && data.len() as u64 != seg_size {
        return Err(not_wal(format!("{} bytes, but segments of this server have {seg_size}", data.len())));
    }
    Ok(serde_json::json!({
        "system_identifier": h.system_identifier.to_string(),
        "page_magic": h.magic,
        "major_version": major_of_magic(h.magic),
        "segment_size": h.seg_size,
    }))
}

fn same_server(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    ["system_identifier", "page_magic", "segment_size"].iter().all(|k| a.get(k) == b.get(k))
}

fn describe(id: &serde_json::Value) -> String {
    let version = match id.get("major_version").and_then(|v| v.as_u64()) {
        Some(v) => format!("PostgreSQL {v}"),
        None => format!("WAL page magic {}", id.get("page_magic").unwrap_or(&serde_json::Value::Null)),
    };
    format!("system {} ({version})", id.get("system_identifier").and_then(|v| v.as_str()).unwrap_or("?"))
}

/// Fetch one archived WAL file into `dest` (written whole, then renamed into place).
pub async fn fetch(
    store: DynStore,
    secret: &ArchiveSecret,
    archive: &str,
    name: &str,
    dest: &Path,
) -> Result<u64, WalError> {
    WalFile::parse(name).ok_or_else(|| WalError::BadName(name.to_string()))?;
    let a = LogArchive::open(store, secret, KIND, archive).await?;
    let (_, data) = a.get_file(name).await?.ok_or_else(|| WalError::Missing(name.to_string()))?;
    let io = |source| WalError::Io { path: dest.display().to_string(), source };
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{name}.drtool-fetch"));
    tokio::fs::write(&tmp, &data).await.map_err(io)?;
    if let Err(e) = tokio::fs::rename(&tmp, dest).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io(e));
    }
    Ok(data.len() as u64)
}
