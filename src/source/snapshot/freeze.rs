//! fsfreeze: hold a mounted file system still (writers block, its data and
//! metadata are on disk) for the short moment a copy needs.
//!
//! A frozen file system stalls every writer on it, so the freeze has a hard
//! time limit kept by a watchdog process started right after the freeze. It
//! runs `fsfreeze --unfreeze` when the limit passes, whether drtool is still
//! working, hung, or killed outright (SIGKILL included: the watchdog is a
//! process of its own). A copy the watchdog cut short is not consistent, so
//! it fails the backup. Only the moment between `fsfreeze --freeze`
//! returning and the watchdog starting (a fork and an exec) is unguarded.

use super::{Runner, SnapshotError, Watchdog};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Frozen {
    mountpoint: PathBuf,
    timeout: Duration,
    frozen_at: Instant,
    watchdog: Option<Box<dyn Watchdog>>,
}

impl Frozen {
    /// Freeze `mountpoint` and arm its watchdog; thaws again if the watchdog cannot start.
    pub fn freeze(mountpoint: &Path, timeout: Duration, runner: &dyn Runner) -> Result<Self, SnapshotError> {
        if mountpoint == Path::new("/") {
            // drtool, its logs and every service need the root file system.
            return Err(SnapshotError::Unsupported {
                path: "/".into(),
                message: "refusing to freeze the root file system; use an LVM or btrfs snapshot".into(),
            });
        }
        let m = mountpoint.to_string_lossy();
        runner.run(&["fsfreeze", "--freeze", &m])?;
        let frozen_at = Instant::now();
        match runner.watchdog(mountpoint, timeout) {
            Ok(w) => {
                tracing::info!("{m} frozen (thawed after {} s at the latest)", timeout.as_secs());
                Ok(Self { mountpoint: mountpoint.to_path_buf(), timeout, frozen_at, watchdog: Some(w) })
            }
            Err(e) => {
                if let Err(e2) = runner.run(&["fsfreeze", "--unfreeze", &m]) {
                    tracing::error!(
                        "{m} stays FROZEN: {}; thaw it with: fsfreeze --unfreeze {m}",
                        super::error_chain(&e2)
                    );
                }
                Err(e)
            }
        }
    }

    pub fn mountpoint(&self) -> PathBuf {
        self.mountpoint.clone()
    }

    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({ "frozen": self.mountpoint, "timeout_seconds": self.timeout.as_secs() })
    }

    fn fired(&mut self) -> bool {
        self.watchdog.as_mut().is_some_and(|w| w.fired())
    }

    /// When the watchdog thaws the file system; a read must end before.
    pub fn deadline(&self) -> Instant {
        self.frozen_at + self.timeout
    }

    /// Fails when the watchdog thawed (or is about to thaw) the file system
    /// before the copy ended.
    pub fn verify(&mut self) -> Result<(), SnapshotError> {
        if self.fired() || Instant::now() >= self.deadline() {
            return Err(SnapshotError::FreezeTimeout {
                mountpoint: self.mountpoint.display().to_string(),
                seconds: self.timeout.as_secs(),
            });
        }
        Ok(())
    }

    /// Thaw, then disarm the watchdog. When thawing fails the watchdog stays
    /// armed, so the file system is thawed at the time limit anyway.
    pub fn thaw(mut self, runner: &dyn Runner) -> Result<(), SnapshotError> {
        let m = self.mountpoint.to_string_lossy().into_owned();
        let held = self.frozen_at.elapsed();
        if self.fired() {
            tracing::warn!("{m} was thawed by the watchdog after {} s", self.timeout.as_secs());
            return Ok(());
        }
        match runner.run(&["fsfreeze", "--unfreeze", &m]) {
            Ok(_) => {
                if let Some(w) = self.watchdog.take() {
                    w.disarm();
                }
                tracing::info!("{m} thawed after {:.3} s", held.as_secs_f64());
                Ok(())
            }
            // It may have fired just now, between the check above and our own thaw.
            Err(_) if self.fired() => Ok(()),
            Err(e) => {
                // Dropping the handle leaves the watchdog running: it is the last way out.
                drop(self.watchdog.take());
                Err(SnapshotError::Cleanup {
                    what: format!("the freeze of {m} (the watchdog thaws it at the time limit)"),
                    manual: format!("fsfreeze --unfreeze {m}"),
                    source: Box::new(e),
                })
            }
        }
    }
}
