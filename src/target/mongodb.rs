//! Restoring mongodump archives with mongorestore.
//!
//! drtool holds no MongoDB driver, so it cannot look at the target first:
//! the plan says so, and without `--clean` (mongorestore --drop) documents
//! whose _id already exists are reported by mongorestore and kept as they are.

use super::db::{DatabaseTarget, Replacement, RestoreError, RunningRestore, StreamLoad, TargetState};
use crate::engine::mongodb::{MongoConn, RestoreOptions};
use crate::engine::{DbUrl, Engine, EngineError, Password};

pub struct MongoTarget {
    conn: MongoConn,
}

impl MongoTarget {
    pub fn connect(url: &DbUrl, password: &Password) -> Result<Self, EngineError> {
        let conn = MongoConn::new(url, password)?;
        // Fail now, before any plan is shown, if the tool is missing.
        conn.tool("mongorestore")?;
        Ok(MongoTarget { conn })
    }
}

impl DatabaseTarget for MongoTarget {
    fn engine(&self) -> Engine {
        Engine::Mongodb
    }

    fn server(&self) -> String {
        self.conn.url.server_url()
    }

    fn state(&self, _db: &str) -> Result<TargetState, EngineError> {
        Ok(TargetState::Unknown)
    }

    fn start(&mut self, load: &StreamLoad) -> Result<RunningRestore, RestoreError> {
        let mut include = load.include.clone();
        let mut renames = load.renames.clone();
        if let Some(from) = &load.from {
            include = vec![from.clone()];
            if let Some(to) = load.to.as_ref().filter(|t| *t != from) {
                renames = vec![(from.clone(), to.clone())];
            }
        }
        let opts = RestoreOptions { include, renames, drop: load.clean, oplog_replay: load.oplog_replay };
        let cmd = self.conn.restore_command(&self.conn.tool("mongorestore")?, &opts);
        RunningRestore::spawn(cmd, "mongorestore")
    }

    fn replacement(&self, _db: &str, _run: &str) -> Replacement {
        // mongorestore has no transaction over a whole restore; drtool has no
        // driver to stage a copy and rename collections (docs/DATABASES.md).
        Replacement::PerCollection
    }

    fn drop_database(&self, _db: &str) -> Result<(), EngineError> {
        // Nothing drtool could do without a driver; the error message says so.
        Ok(())
    }
}
