//! Three-node MariaDB Galera clusters on loopback, for drills that must prove
//! a dump restores into a cluster (replicated DDL, tables without primary
//! keys, non-InnoDB tables that Galera does not replicate).
//!
//! Node 1 bootstraps a new cluster (`--wsrep-new-cluster`) from a fresh data
//! directory; nodes 2 and 3 start empty and join through a full state
//! transfer (rsync) from a synced node. Every node listens on four ports: SQL,
//! group communication, incremental and full state transfer. The nodes run as
//! the unprivileged `mysql` account when drtool is root: the rsync transfer
//! fails with "Permission denied" when the server runs as root.

use super::scratch::{Node, ScratchError};
use super::scratch_mariadb::{self as maria, NodeDir, PORT_ATTEMPTS};
use super::scratch_proc::{ProcId, Site, Startup, find_bin, free_ports, random_password, wait_ready};
use crate::engine::mysql::MysqlConn;
use crate::engine::{DbUrl, Password};
use std::path::PathBuf;
use std::time::Duration;

pub const NODES: usize = 3;
const BOOTSTRAP_LIMIT: Duration = Duration::from_secs(120);
/// A join includes a full state transfer of the (small, fresh) data directory.
const JOIN_LIMIT: Duration = Duration::from_secs(240);
const PROVIDERS: &[&str] = &[
    "/usr/lib/galera/libgalera_smm.so",
    "/usr/lib/galera-4/libgalera_smm.so",
    "/usr/lib64/galera-4/libgalera_smm.so",
    "/usr/lib64/galera/libgalera_smm.so",
    "/usr/lib/libgalera_smm.so",
];

/// What one node says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub url: String,
    /// wsrep_cluster_size: nodes in the component this node belongs to.
    pub cluster_size: u32,
    /// wsrep_local_state_comment: Synced when it serves current data.
    pub state: String,
    /// wsrep_ready: accepts queries.
    pub ready: bool,
}

impl NodeStatus {
    pub fn synced(&self) -> bool {
        self.ready && self.state == "Synced"
    }
}

fn provider() -> Option<PathBuf> {
    PROVIDERS.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// MariaDB, the Galera library and rsync, or `Unavailable` naming what is missing.
pub(crate) fn check_installed() -> Result<(), ScratchError> {
    maria::bins()?;
    let missing = |what: &str, pkg: &str| {
        ScratchError::Unavailable(format!(
            "{what} is not installed on this machine (Debian package {pkg}; see scripts/setup.sh)"
        ))
    };
    provider().ok_or_else(|| missing("the Galera library libgalera_smm.so", "galera-4"))?;
    find_bin("rsync").ok_or_else(|| missing("rsync (Galera's state transfer)", "rsync"))?;
    Ok(())
}

/// The ports of one node.
#[derive(Debug, Clone, Copy)]
struct Ports {
    sql: u16,
    gcomm: u16,
    ist: u16,
    sst: u16,
}

impl Ports {
    fn all(&self) -> [u16; 4] {
        [self.sql, self.gcomm, self.ist, self.sst]
    }
}

/// Fresh ports for `n` nodes, none of them in `avoid` (ports of nodes
/// already running or chosen).
fn pick_ports(n: usize, avoid: &[u16]) -> Result<Vec<Ports>, ScratchError> {
    let mut ports = free_ports(4 * n + avoid.len())?;
    ports.retain(|p| !avoid.contains(p));
    ports.truncate(4 * n);
    Ok(ports.chunks_exact(4).map(|c| Ports { sql: c[0], gcomm: c[1], ist: c[2], sst: c[3] }).collect())
}

struct Cluster {
    bins: maria::Bins,
    provider: PathBuf,
    name: String,
    dirs: Vec<NodeDir>,
    ports: Vec<Ports>,
}

impl Cluster {
    fn config(&self, site: &Site, i: usize) -> String {
        let p = self.ports[i];
        let members: Vec<String> = self.ports.iter().map(|q| format!("127.0.0.1:{}", q.gcomm)).collect();
        let extra = [
            "wsrep_on=ON".to_string(),
            format!("wsrep_provider={}", self.provider.display()),
            format!("wsrep_cluster_name={}", self.name),
            format!("wsrep_cluster_address=gcomm://{}", members.join(",")),
            "wsrep_node_address=127.0.0.1".to_string(),
            format!("wsrep_node_name={}", self.dirs[i].name),
            // A small gcache: the default preallocates 128 MiB per node.
            format!(
                "wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.0.1:{}; ist.recv_addr=127.0.0.1:{}; gcache.size=64M\"",
                p.gcomm, p.ist
            ),
            format!("wsrep_sst_receive_address=127.0.0.1:{}", p.sst),
            "wsrep_sst_method=rsync".to_string(),
            // Galera needs row events and interleaved auto-increment locks.
            "binlog_format=ROW".to_string(),
            "innodb_autoinc_lock_mode=2".to_string(),
            "default_storage_engine=InnoDB".to_string(),
        ];
        self.dirs[i].config(site, p.sql, &extra)
    }

    fn spawn(&self, site: &mut Site, i: usize, args: &[String]) -> Result<ProcId, ScratchError> {
        self.dirs[i].write_config(site, &self.config(site, i))?;
        maria::spawn(site, &self.bins, &self.dirs[i], args)
    }

    fn logs(&self, nodes: &[usize]) -> Vec<PathBuf> {
        nodes.iter().flat_map(|&i| self.dirs[i].logs()).collect()
    }
}

fn start_error(cause: String) -> ScratchError {
    ScratchError::Start { kind: "galera".into(), cause }
}

/// Provision the cluster; the nodes in order (node 1 first).
pub(crate) fn start_cluster(site: &mut Site, password: &str) -> Result<Vec<Node>, ScratchError> {
    let bins = maria::bins()?;
    let provider = provider().ok_or_else(|| start_error("libgalera_smm.so disappeared".into()))?;
    // A name of its own, so no node of another cluster can ever join this one.
    let name = format!("drtool-scratch-{}", &random_password()?[..12]);
    let dirs = (1..=NODES).map(|i| NodeDir::create(site, &format!("node{i}"))).collect::<Result<Vec<_>, _>>()?;
    let ports = pick_ports(NODES, &[])?;
    let mut c = Cluster { bins, provider, name, dirs, ports };

    maria::install(site, &c.bins, &c.dirs[0])?;
    c.dirs[0].write_init(site, password)?;
    bootstrap(site, &mut c, password)?;
    for i in 1..NODES {
        join(site, &mut c, i, password)?;
    }
    // The account reached the joiners with the state transfer.
    let _ = std::fs::remove_file(&c.dirs[0].init);
    Ok(c.ports.iter().map(|p| Node { port: p.sql, ports: p.all().to_vec() }).collect())
}

/// Start node 1 as a new cluster of one.
fn bootstrap(site: &mut Site, c: &mut Cluster, password: &str) -> Result<(), ScratchError> {
    let args = ["--wsrep-new-cluster".to_string(), format!("--init-file={}", c.dirs[0].init.display())];
    for _ in 0..PORT_ATTEMPTS {
        let id = c.spawn(site, 0, &args)?;
        let conn = maria::conn(c.ports[0].sql, password)?;
        match wait_ready(site, &[id], &c.logs(&[0]), BOOTSTRAP_LIMIT, || synced(&conn, 1)) {
            Startup::Ready => return Ok(()),
            Startup::PortInUse => {
                site.kill(id);
                let others: Vec<u16> = c.ports[1..].iter().flat_map(Ports::all).collect();
                c.ports[0] = pick_ports(1, &others)?[0];
            }
            Startup::Failed(cause) => return Err(start_error(format!("node1 (bootstrap): {cause}"))),
        }
    }
    Err(start_error("the ports chosen for node1 kept being taken".into()))
}

/// Start node `i` (empty) and wait until it has joined through a state
/// transfer and the cluster has `i + 1` synced members. One joiner at a time:
/// two at once were no faster (about 11 s for both, either way, on 2 cores):
/// group membership flapped for seconds and the single donor served the
/// transfers one after the other anyway; one at a time, a failure names its node.
fn join(site: &mut Site, c: &mut Cluster, i: usize, password: &str) -> Result<(), ScratchError> {
    let size = i as u32 + 1;
    let name = c.dirs[i].name.clone();
    for _ in 0..PORT_ATTEMPTS {
        // Empty: a joiner takes everything from the donor. A failed attempt's leftovers go.
        let _ = std::fs::remove_dir_all(&c.dirs[i].data);
        site.mkdir(&format!("{name}/data"))?;
        let id = c.spawn(site, i, &[])?;
        let conn = maria::conn(c.ports[i].sql, password)?;
        match wait_ready(site, &[id], &c.logs(&[i]), JOIN_LIMIT, || synced(&conn, size)) {
            Startup::Ready => return Ok(()),
            Startup::PortInUse => {
                site.kill(id);
                let others: Vec<u16> = (0..NODES).filter(|&j| j != i).flat_map(|j| c.ports[j].all()).collect();
                c.ports[i] = pick_ports(1, &others)?[0];
            }
            Startup::Failed(cause) => return Err(start_error(format!("{name} joining: {cause}"))),
        }
    }
    Err(start_error(format!("the ports chosen for {name} kept being taken")))
}

/// Whether the node on `conn` is Synced in a cluster of `size`; an error
/// while it does not answer yet.
fn synced(conn: &MysqlConn, size: u32) -> Result<bool, String> {
    let out = maria::probe(conn, STATUS_SQL)?;
    let s = parse_status(String::new(), out.lines().map(|l| l.split('\t').map(str::to_string).collect()));
    Ok(s.synced() && s.cluster_size == size)
}

const STATUS_SQL: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN \
    ('wsrep_cluster_size', 'wsrep_local_state_comment', 'wsrep_ready')";

fn parse_status(url: String, rows: impl Iterator<Item = Vec<String>>) -> NodeStatus {
    let mut s = NodeStatus { url, cluster_size: 0, state: String::new(), ready: false };
    for row in rows {
        let (Some(name), Some(value)) = (row.first(), row.get(1)) else { continue };
        match name.to_ascii_lowercase().as_str() {
            "wsrep_cluster_size" => s.cluster_size = value.parse().unwrap_or(0),
            "wsrep_local_state_comment" => s.state = value.clone(),
            "wsrep_ready" => s.ready = value.eq_ignore_ascii_case("ON"),
            _ => {}
        }
    }
    s
}

/// What the node at `url` (a scratch node URL) says about the cluster.
pub fn node_status(url: &str, password: &str) -> Result<NodeStatus, ScratchError> {
    let engine = |source| ScratchError::Engine { kind: "galera".into(), source };
    let conn = MysqlConn::new(&DbUrl::parse(url).map_err(engine)?, &Password::new(password)).map_err(engine)?;
    let rows = conn.query(None, STATUS_SQL).map_err(engine)?;
    Ok(parse_status(url.to_string(), rows.into_iter().map(|r| r.into_iter().map(Option::unwrap_or_default).collect())))
}

/// The cluster size every node reports while Synced; `Cluster` naming the
/// first node that is not synced or disagrees.
pub(crate) fn agreed_size(urls: &[String], password: &str) -> Result<u32, ScratchError> {
    let mut agreed: Option<u32> = None;
    for url in urls {
        let s = node_status(url, password)?;
        if !s.synced() {
            return Err(ScratchError::Cluster(format!("{url} is {:?} (ready: {})", s.state, s.ready)));
        }
        match agreed {
            Some(n) if n != s.cluster_size => {
                return Err(ScratchError::Cluster(format!("{url} sees {} nodes, {} saw {n}", s.cluster_size, urls[0])));
            }
            _ => agreed = Some(s.cluster_size),
        }
    }
    agreed.ok_or_else(|| ScratchError::Cluster("no nodes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rows_parse() {
        let rows = [["wsrep_cluster_size", "3"], ["wsrep_local_state_comment", "Synced"], ["wsrep_ready", "ON"]];
        let s = parse_status("u".into(), rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()));
        assert_eq!(s, NodeStatus { url: "u".into(), cluster_size: 3, state: "Synced".into(), ready: true });
        assert!(s.synced());
        let joining =
            parse_status("u".into(), [vec!["wsrep_local_state_comment".to_string(), "Joined".into()]].into_iter());
        assert!(!joining.synced());
    }

    #[test]
    fn picked_ports_avoid_the_given_ones() {
        let first = pick_ports(1, &[]).unwrap();
        let avoid = first[0].all();
        let more = pick_ports(2, &avoid).unwrap();
        let all: Vec<u16> = more.iter().flat_map(Ports::all).collect();
        assert_eq!(all.len(), 8);
        assert!(all.iter().all(|p| !avoid.contains(p)));
    }
}
