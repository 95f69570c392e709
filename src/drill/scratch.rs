//! Throw-away database servers ("scratches") that a drill restores into.
//!
//! A scratch is a private server, or a three-node Galera cluster, in a new
//! temporary directory on free loopback ports, with an administrative account
//! whose password is random. It ignores the machine's own configuration and
//! servers (never the default ports 3306, 5432, 27017). `teardown` (or drop)
//! stops every process and removes the directory; a watchdog process does the
//! same if drtool dies first, even by SIGKILL.
//!
//! Provisioning blocks for seconds (a Galera cluster: tens of seconds); async
//! callers run it on a blocking thread.

use super::scratch_proc::{Site, account, is_root};
use crate::engine::EngineError;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a server gets to shut down cleanly before SIGKILL. Throw-away
/// data: a clean stop only avoids noise, so this need not be generous.
const TEARDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// This machine cannot provide the kind (a package is missing): the drill
    /// fails with this message; it must never count as passed.
    #[error("{0}")]
    Unavailable(String),
    #[error("unknown scratch kind {0:?} (expected mariadb, galera, postgres or mongodb)")]
    UnknownKind(String),
    /// A server did not come up; `cause` ends with the tail of its logs.
    #[error("could not start the {kind} scratch: {cause}")]
    Start { kind: String, cause: String },
    /// A query through the engine's client failed after the scratch was up.
    #[error("{kind} scratch")]
    Engine {
        kind: String,
        #[source]
        source: EngineError,
    },
    /// The nodes of a cluster disagree or are not all synced.
    #[error("galera scratch is not healthy: {0}")]
    Cluster(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ScratchError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ScratchError::Io { what: what.into(), source }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScratchKind {
    Mariadb,
    Galera,
    Postgres,
    Mongodb,
}

impl ScratchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScratchKind::Mariadb => "mariadb",
            ScratchKind::Galera => "galera",
            ScratchKind::Postgres => "postgres",
            ScratchKind::Mongodb => "mongodb",
        }
    }

    /// The engine drtool talks to the scratch with.
    pub fn engine(self) -> crate::engine::Engine {
        use crate::engine::Engine;
        match self {
            ScratchKind::Mariadb | ScratchKind::Galera => Engine::Mysql,
            ScratchKind::Postgres => Engine::Postgres,
            ScratchKind::Mongodb => Engine::Mongodb,
        }
    }
}

impl std::fmt::Display for ScratchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ScratchKind {
    type Err = ScratchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mariadb" | "mysql" => Ok(ScratchKind::Mariadb),
            "galera" => Ok(ScratchKind::Galera),
            "postgres" | "postgresql" => Ok(ScratchKind::Postgres),
            "mongodb" | "mongo" => Ok(ScratchKind::Mongodb),
            other => Err(ScratchError::UnknownKind(other.to_string())),
        }
    }
}

/// One server of a scratch as drtool reaches it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The port clients connect to.
    pub port: u16,
    /// Every port the node listens on (Galera: also replication, IST, SST).
    pub ports: Vec<u16>,
}

/// A running scratch. Dropping it tears it down.
pub struct Scratch {
    kind: ScratchKind,
    user: &'static str,
    password: Zeroizing<String>,
    nodes: Vec<Node>,
    site: Site,
    provision_time: Duration,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("kind", &self.kind)
            .field("url", &self.url())
            .field("dir", &self.site.dir())
            .field("password", &"***")
            .finish()
    }
}

impl Scratch {
    /// Provision a private server (or cluster) of `kind` in a new temporary
    /// directory on free loopback ports.
    pub fn start(kind: ScratchKind) -> Result<Scratch, ScratchError> {
        let started = Instant::now();
        let password = Zeroizing::new(super::scratch_proc::random_password()?);
        // The site (directory and watchdog) exists before any server does, and
        // cleans up whatever a failed start leaves when dropped.
        let (user, site, nodes) = match kind {
            ScratchKind::Mariadb => {
                let mut site = Site::create(kind.as_str(), server_account("mysql", false)?)?;
                let node = super::scratch_mariadb::start_single(&mut site, &password)?;
                ("drtool", site, vec![node])
            }
            ScratchKind::Galera => {
                super::galera::check_installed()?;
                let mut site = Site::create(kind.as_str(), server_account("mysql", true)?)?;
                let nodes = super::galera::start_cluster(&mut site, &password)?;
                ("drtool", site, nodes)
            }
            ScratchKind::Postgres => {
                let bin = super::scratch_postgres::bin_dir()?;
                let mut site = Site::create(kind.as_str(), server_account("postgres", true)?)?;
                let node = super::scratch_postgres::start(&mut site, &bin, &password)?;
                ("postgres", site, vec![node])
            }
            ScratchKind::Mongodb => {
                let bins = super::scratch_mongodb::bins()?;
                let mut site = Site::create(kind.as_str(), server_account("mongodb", false)?)?;
                let node = super::scratch_mongodb::start(&mut site, &bins, &password)?;
                ("drtool", site, vec![node])
            }
        };
        let provision_time = started.elapsed();
        tracing::info!(kind = kind.as_str(), dir = %site.dir().display(), "scratch ready in {provision_time:.2?}");
        Ok(Scratch { kind, user, password, nodes, site, provision_time })
    }

    pub fn kind(&self) -> ScratchKind {
        self.kind
    }

    /// The URL drtool restores through (Galera: node 1), e.g.
    /// `mysql://drtool@127.0.0.1:PORT/`. The password is separate: `password()`.
    pub fn url(&self) -> String {
        self.node_url(&self.nodes[0])
    }

    /// One URL per node: one, except for Galera (three).
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| self.node_url(n)).collect()
    }

    fn node_url(&self, n: &Node) -> String {
        let scheme = self.kind.engine().as_str();
        format!("{scheme}://{}@127.0.0.1:{}/", self.user, n.port)
    }

    /// The administrative account's password (for `engine::Password::new`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Time spent provisioning.
    pub fn provision_time(&self) -> Duration {
        self.provision_time
    }

    /// The scratch's private directory (gone after teardown).
    pub fn dir(&self) -> &std::path::Path {
        self.site.dir()
    }

    /// Pids of the running server processes (one per node).
    pub fn pids(&self) -> Vec<u32> {
        self.site.live_pids()
    }

    /// Every loopback port the scratch listens on.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().flat_map(|n| n.ports.iter().copied()).collect()
    }

    /// Nodes in the cluster as seen from every node: 1 for a single server;
    /// for Galera, the size all nodes agree on while every one is Synced,
    /// else `Cluster` naming the node that disagrees.
    pub fn cluster_size(&self) -> Result<u32, ScratchError> {
        match self.kind {
            ScratchKind::Galera => super::galera::agreed_size(&self.node_urls(), &self.password),
            _ => Ok(1),
        }
    }

    /// Stop every process and remove the directory. Idempotent; also done by Drop.
    pub fn teardown(&mut self) -> Result<(), ScratchError> {
        self.site.teardown(TEARDOWN_GRACE)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The account servers run as. Only root can switch accounts; run by anyone
/// else, servers run as that user. `required`: the server refuses root
/// (PostgreSQL) or a part of it breaks as root (Galera's rsync transfer).
fn server_account(name: &str, required: bool) -> Result<Option<super::scratch_proc::Owner>, ScratchError> {
    if !is_root() {
        return Ok(None);
    }
    match account(name) {
        Some(o) => Ok(Some(o)),
        None if required => Err(ScratchError::Unavailable(format!(
            "the {name} OS account is missing (its server package creates it; see scripts/setup.sh)"
        ))),
        None => Ok(None),
    }
}
