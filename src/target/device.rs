//! Restoring a stream onto a block device.
//!
//! The device is opened with `O_EXCL`, which for a block device fails with
//! EBUSY while anything holds it: a mounted file system, LVM, RAID, swap.
//! Held open from the plan to the end of the write, it also keeps anyone
//! from mounting it in between. Every byte is written (zeros too: the device
//! holds old data), then the device is flushed.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DeviceTargetError {
    #[error("{path} is not a block device (to restore into a file, use --target DIR)")]
    NotBlockDevice { path: String },
    #[error("{path} is in use (mounted, or held by LVM, RAID or swap); release it first")]
    InUse { path: String },
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub struct BlockDevice {
    file: File,
    path: PathBuf,
    size: u64,
}

impl BlockDevice {
    /// Open `path` for writing, exclusively.
    pub fn open(path: &Path) -> Result<Self, DeviceTargetError> {
        let io_err = |source| DeviceTargetError::Io { path: path.display().to_string(), source };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if !meta.file_type().is_block_device() {
            return Err(DeviceTargetError::NotBlockDevice { path: path.display().to_string() });
        }
        let mut file = match OpenOptions::new().write(true).custom_flags(libc::O_EXCL).open(path) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(DeviceTargetError::InUse { path: path.display().to_string() });
            }
            Err(e) => return Err(io_err(e)),
        };
        let size = file.seek(SeekFrom::End(0)).and_then(|n| file.seek(SeekFrom::Start(0)).map(|_| n));
        Ok(Self { size: size.map_err(io_err)?, file, path: path.to_path_buf() })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A writer from offset 0; [`DeviceWriter::finish`] flushes it to the device.
    pub fn writer(self) -> DeviceWriter {
        DeviceWriter { out: io::BufWriter::with_capacity(1 << 20, self.file), path: self.path, written: 0 }
    }
}

pub struct DeviceWriter {
    out: io::BufWriter<File>,
    path: PathBuf,
    written: u64,
}

impl DeviceWriter {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Flush and sync: the restore is done only when the device has the bytes.
    pub fn finish(self) -> Result<u64, DeviceTargetError> {
        let path = self.path.display().to_string();
        let file =
            self.out.into_inner().map_err(|e| DeviceTargetError::Io { path: path.clone(), source: e.into_error() })?;
        file.sync_all().map_err(|source| DeviceTargetError::Io { path, source })?;
        Ok(self.written)
    }
}
