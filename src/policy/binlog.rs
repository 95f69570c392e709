//! The `[binlog]` section of a policy: continuous binlog capture (docs/PITR.md).

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default longest time between storing the binlog file being written.
pub const DEFAULT_FLUSH_SECONDS: u64 = 30;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BinlogSpec {
    /// Store the file being written at least this often (the recovery point).
    pub flush_seconds: Option<u64>,
    /// Local spool directory for the streamed files (default: a private temporary one).
    pub dir: Option<String>,
}

/// Validated binlog capture settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BinlogSettings {
    pub flush: Duration,
    pub dir: Option<PathBuf>,
}

impl BinlogSpec {
    /// Check the section against the source kind; every problem is returned.
    pub fn validate(&self, source_kind: &str) -> Result<BinlogSettings, Vec<String>> {
        let mut errors = Vec::new();
        if source_kind != "mysql" {
            errors.push(format!("[binlog] applies to source kind \"mysql\" only, not {source_kind:?}"));
        }
        let flush = self.flush_seconds.unwrap_or(DEFAULT_FLUSH_SECONDS);
        if !(1..=86_400).contains(&flush) {
            errors.push(format!("binlog.flush_seconds = {flush}: expected 1 to 86400 seconds"));
        }
        if let Some(d) = &self.dir {
            if !d.starts_with('/') {
                errors.push(format!("binlog.dir {d:?} must be an absolute path"));
            }
        }
        if errors.is_empty() {
            Ok(BinlogSettings { flush: Duration::from_secs(flush), dir: self.dir.as_ref().map(PathBuf::from) })
        } else {
            Err(errors)
        }
    }
}
