//! Where a test repository lives: a local directory or a real Garage S3
//! server. Tests written as `fn name(b: Backend)` run on both through
//! [`backend_tests!`]; the repository-inspection helpers here work the same on
//! both (object names are relative to the repository, e.g. `data/ab/<id>`,
//! `snapshots/<id>`, `index/<id>`).

#![allow(dead_code)]

use super::Repo;
use super::garage::{self, GarageEnv};
use drtool::store::s3::S3Store;
use std::path::Path;

#[derive(Clone, Copy)]
pub enum Backend {
    /// A directory on the local file system.
    Local,
    /// A fresh prefix in the test bucket of a Garage S3 server.
    Garage(&'static GarageEnv),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Garage(_) => "garage",
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Local)
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Instantiate test bodies `fn name(b: Backend)` once per backend:
/// `local::name` and `garage::name`. The garage variant returns early only
/// when garage is not installed outside CI (`garage::shared()` prints the
/// skip once and fails the test under CI=true).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod local {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::common::Backend::Local)
                }
            )+
        }
        mod garage {
            $(
                #[test]
                fn $name() {
                    let Some(g) = $crate::common::garage::shared() else { return };
                    super::$name($crate::common::Backend::Garage(g))
                }
            )+
        }
    };
}

/// Whether an object name is a temp file of the local store (never a repository object).
fn is_temp(name: &str) -> bool {
    name.split('/').any(|p| p.starts_with(".tmp"))
}

/// Last `/`-separated component of an object name (a pack's id for `data/ab/<id>`).
pub fn object_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl Repo {
    /// A fresh, initialised repository on backend `b`.
    pub fn init_on(b: Backend) -> Repo {
        let r = Repo::uninitialised_on(b);
        r.run(["init"]).ok();
        assert!(r.objects("").iter().any(|(n, _)| n == "config"), "init wrote no config on {b:?}");
        r
    }

    /// A repository address on backend `b` where nothing exists yet.
    pub fn uninitialised_on(b: Backend) -> Repo {
        let mut r = Repo::uninitialised();
        if let Backend::Garage(g) = b {
            let url = g.fresh_url();
            r.s3 = Some((g, url.clone(), g.store(&url)));
            // Never used as a repository on this backend; point it somewhere that
            // does not exist rather than at a real directory.
            r.path = r.dir.path().join("not-the-repository");
        }
        r
    }

    pub fn backend(&self) -> Backend {
        match &self.s3 {
            None => Backend::Local,
            Some((g, _, _)) => Backend::Garage(g),
        }
    }

    fn s3_store(&self) -> Option<&S3Store> {
        self.s3.as_ref().map(|(_, _, s)| s)
    }

    /// Every repository object whose name starts with `prefix`, with its size,
    /// sorted by name (local temp files excluded).
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = match self.s3_store() {
            Some(store) => garage::list(store, prefix),
            None => self
                .files()
                .into_iter()
                .filter_map(|p| {
                    let rel = p.strip_prefix(&self.path).ok()?.to_str()?.to_string();
                    let len = std::fs::symlink_metadata(&p).ok()?.len();
                    Some((rel, len))
                })
                .filter(|(n, _)| n.starts_with(prefix))
                .collect(),
        };
        out.retain(|(n, _)| !is_temp(n));
        out.sort();
        out
    }

    /// Names of the objects under `prefix`, sorted.
    pub fn object_names(&self, prefix: &str) -> Vec<String> {
        self.objects(prefix).into_iter().map(|(n, _)| n).collect()
    }

    /// Pack objects (`data/<xx>/<pack id>`) with their sizes.
    pub fn pack_objects(&self) -> Vec<(String, u64)> {
        self.objects("data/")
    }

    /// Snapshot manifest objects (`snapshots/<id>`).
    pub fn snapshot_objects(&self) -> Vec<String> {
        self.object_names("snapshots/")
    }

    /// Total bytes stored in the repository (every object; on a local
    /// repository every file, temp files included).
    pub fn stored_bytes(&self) -> u64 {
        match self.s3_store() {
            Some(store) => garage::list(store, "").iter().map(|(_, n)| n).sum(),
            None => self.size(),
        }
    }

    fn local_object(&self, name: &str) -> std::path::PathBuf {
        assert!(!name.is_empty() && !name.split('/').any(|p| p.is_empty() || p == ".."), "bad object name {name:?}");
        self.path.join(Path::new(name))
    }

    pub fn read_object(&self, name: &str) -> Vec<u8> {
        match self.s3_store() {
            Some(store) => garage::get(store, name),
            None => {
                let p = self.local_object(name);
                std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            }
        }
    }

    /// Replace an object's contents (a plain overwrite, as an attacker or bit rot would).
    pub fn write_object(&self, name: &str, data: Vec<u8>) {
        match self.s3_store() {
            Some(store) => garage::put(store, name, data),
            None => {
                let p = self.local_object(name);
                std::fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()))
            }
        }
    }

    pub fn delete_object(&self, name: &str) {
        match self.s3_store() {
            Some(store) => garage::delete(store, name),
            None => {
                let p = self.local_object(name);
                std::fs::remove_file(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()))
            }
        }
        assert!(!self.objects(name).iter().any(|(n, _)| n == name), "{name} still listed after delete");
    }

    /// Flip one bit pattern of the byte at `at` in object `name` (read, modify, write back).
    pub fn flip_object_byte(&self, name: &str, at: usize) {
        let mut b = self.read_object(name);
        assert!(at < b.len(), "{name} has {} bytes, cannot flip byte {at}", b.len());
        b[at] ^= 0x40;
        self.write_object(name, b.clone());
        assert!(self.read_object(name) == b, "{name}: the damaged version was not stored");
    }
}
