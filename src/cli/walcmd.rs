//! `wal-push`, `wal-fetch` and `wal-config`: PostgreSQL's archive_command and
//! restore_command, and the file that gives them access (docs/PITR.md).

use super::Global;
use super::commands::{open_repo, store_at, store_for};
use super::exit::{self, Failure};
use super::output::{outln, print_json};
use crate::job::wal::{self, WalConfig, WalError};
use crate::repo::walcat::{ArchiveError, ArchiveSecret, LogArchive};
use crate::repo::{RepoError, Repository};
use crate::store::DynStore;
use clap::Args;
use std::path::{Path, PathBuf};

/// Where `wal-push` / `wal-fetch` find the archive.
#[derive(Args, Debug)]
pub struct WalAccess {
    /// Archive configuration (repository, archive name, key), mode 0600; default
    /// DRTOOL_WAL_CONFIG, else /etc/drtool/wal.toml if it exists, else --repo with
    /// DRTOOL_WAL_KEY or the repository password.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WalPushArgs {
    #[command(flatten)]
    pub access: WalAccess,
    /// The WAL file to archive (archive_command's %p).
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct WalFetchArgs {
    #[command(flatten)]
    pub access: WalAccess,
    /// WAL file name (restore_command's %f).
    pub name: String,
    /// Where to write it (restore_command's %p).
    pub dest: PathBuf,
}

#[derive(Args, Debug)]
pub struct WalConfigArgs {
    /// Write the configuration to FILE (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Archive name: one per PostgreSQL cluster.
    #[arg(long, default_value = wal::DEFAULT_ARCHIVE)]
    pub archive: String,
    /// Make FILE owned by this OS user (the one PostgreSQL runs as).
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
}

const DEFAULT_CONFIG: &str = "/etc/drtool/wal.toml";

fn wal_failure(e: WalError) -> Failure {
    let code = match &e {
        WalError::BadName(_) | WalError::Config(_) => exit::USAGE,
        WalError::NotWal { .. } | WalError::Refused(_) => exit::REFUSED,
        WalError::Missing(_) => exit::NOT_FOUND,
        WalError::Io { .. } => exit::ERROR,
        WalError::Archive(a) => archive_code(a),
    };
    Failure::new(code, e)
}

pub fn archive_code(e: &ArchiveError) -> u8 {
    match e {
        ArchiveError::NotFound { .. } => exit::NOT_FOUND,
        ArchiveError::WrongKey { .. } => exit::WRONG_PASSWORD,
        ArchiveError::Conflict { .. } => exit::REFUSED,
        ArchiveError::Corrupt { .. } => exit::DAMAGED,
        ArchiveError::Store(s) => exit::store_code(s),
    }
}

async fn require_repository(store: &DynStore) -> Result<(), Failure> {
    match store.size("config").await {
        Err(e) if e.is_not_found() => Err(RepoError::NoRepository { location: store.location() }.into()),
        _ => Ok(()),
    }
}

/// Store, secret and archive name, from the configuration or the environment.
async fn access(g: &Global, a: &WalAccess) -> Result<(DynStore, ArchiveSecret, String), Failure> {
    let path = a
        .config
        .clone()
        .or_else(|| std::env::var_os("DRTOOL_WAL_CONFIG").map(PathBuf::from))
        .or_else(|| Path::new(DEFAULT_CONFIG).is_file().then(|| PathBuf::from(DEFAULT_CONFIG)));
    if let Some(path) = path {
        let cfg = WalConfig::load(&path).map_err(wal_failure)?;
        let store = store_at(&cfg.repository).await?;
        require_repository(&store).await?;
        let secret = match cfg.secret().map_err(wal_failure)? {
            Some(s) => s,
            None => {
                let pw = super::secrets::repo_password(cfg.password_file.as_deref(), false)?;
                Repository::open(store.clone(), &pw).await?.log_archive_secret()
            }
        };
        return Ok((store, secret, cfg.archive));
    }
    let archive = std::env::var("DRTOOL_WAL_ARCHIVE").unwrap_or_else(|_| wal::DEFAULT_ARCHIVE.to_string());
    if let Ok(k) = std::env::var("DRTOOL_WAL_KEY") {
        let secret =
            ArchiveSecret::from_hex(&k).ok_or_else(|| Failure::usage("DRTOOL_WAL_KEY is not 64 hex digits"))?;
        let store = store_for(g).await?;
        require_repository(&store).await?;
        return Ok((store, secret, archive));
    }
    let repo = open_repo(g).await?;
    Ok((repo.store().clone(), repo.log_archive_secret(), archive))
}

pub async fn push(g: &Global, a: WalPushArgs) -> Result<u8, Failure> {
    // Checked before any access, so a bad %p never needs the secret.
    if crate::engine::pg_wal::WalFile::parse(a.path.file_name().and_then(|n| n.to_str()).unwrap_or_default()).is_none()
    {
        return Err(wal_failure(WalError::BadName(a.path.display().to_string())));
    }
    let (store, secret, archive) = access(g, &a.access).await?;
    let p = wal::push(store, &secret, &archive, &a.path).await.map_err(wal_failure)?;
    if g.json {
        print_json(&serde_json::json!({ "file": p.name, "size": p.size, "already_archived": p.already }))?;
    } else if g.verbose > 0 {
        eprintln!("archived {} ({} bytes){}", p.name, p.size, if p.already { ", already archived" } else { "" });
    }
    Ok(exit::OK)
}

pub async fn fetch(g: &Global, a: WalFetchArgs) -> Result<u8, Failure> {
    let (store, secret, archive) = access(g, &a.access).await?;
    wal::fetch(store, &secret, &archive, &a.name, &a.dest).await.map_err(wal_failure)?;
    Ok(exit::OK)
}

pub async fn config(g: &Global, a: WalConfigArgs) -> Result<u8, Failure> {
    let repo = open_repo(g).await?;
    let addr = g.repo.clone().ok_or_else(|| Failure::usage("no repository: use --repo or set DRTOOL_REPO"))?;
    // A relative local path would mean another place to PostgreSQL's archiver.
    let addr = if addr.contains("://") {
        addr
    } else {
        std::path::absolute(&addr).map_err(|e| Failure::usage(e.to_string()))?.display().to_string()
    };
    let secret = repo.log_archive_secret();
    LogArchive::create(repo.store().clone(), &secret, wal::KIND, &a.archive)
        .await
        .map_err(|e| Failure::new(archive_code(&e), e))?;
    let owner = match &a.owner {
        Some(u) => {
            Some(crate::target::pg_datadir::os_user(u).ok_or_else(|| Failure::usage(format!("no OS user {u:?}")))?)
        }
        None => None,
    };
    let text = wal::config_text(&addr, &a.archive, &secret);
    crate::target::pg_datadir::write_private(&a.out, text.as_bytes(), owner)
        .map_err(|e| Failure::new(exit::ERROR, anyhow::anyhow!("{}: {e}", a.out.display())))?;
    if g.json {
        print_json(&serde_json::json!({ "config": a.out, "archive": a.archive }))?;
    } else {
        outln!("wrote {} for WAL archive {:?}; in postgresql.conf:", a.out.display(), a.archive);
        let bin = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "drtool".into());
        outln!("  archive_mode = on");
        outln!("  archive_command = '{bin} wal-push --config {} %p'", a.out.display());
    }
    Ok(exit::OK)
}
