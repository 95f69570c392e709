//! Block devices and disk images, read as one stream.
//!
//! The stream is the device's bytes from 0 to its size as measured when it is
//! opened; a read that ends early (a device that shrank, an I/O error) fails.
//! Reads bypass stale cache: a block device's page cache is not kept coherent
//! with writes a mounted file system makes through its own buffers, so cached
//! pages are dropped when the device is opened and behind the reader as it
//! goes (which also keeps a large copy from flushing everything else out).

use super::SourceError;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Drop cached pages behind the reader every this many bytes.
const DROP_BEHIND: u64 = 64 << 20;

pub struct DeviceReader {
    file: File,
    path: PathBuf,
    size: u64,
    read: u64,
    dropped: u64,
}

fn io_err(path: &Path, source: io::Error) -> SourceError {
    SourceError::Io { path: path.display().to_string(), source }
}

impl DeviceReader {
    /// Open a block device or a regular file (a disk image) for reading.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
        let ft = meta.file_type();
        if !(ft.is_block_device() || ft.is_file()) {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a block device or a disk image file");
            return Err(io_err(path, e));
        }
        let mut file = File::open(path).map_err(|e| io_err(path, e))?;
        // The size of a block device is where its end is; its metadata says 0.
        let size = file.seek(SeekFrom::End(0)).and_then(|n| file.seek(SeekFrom::Start(0)).map(|_| n));
        let size = size.map_err(|e| io_err(path, e))?;
        let fd = file.as_raw_fd();
        // SAFETY: advice on a descriptor we own; failure only costs cache behaviour.
        unsafe {
            libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
            libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
        Ok(Self { file, path: path.to_path_buf(), size, read: 0, dropped: 0 })
    }

    /// The size measured at open; the stream must have exactly this length.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fails unless every byte up to the size measured at open was read.
    pub fn finish(self) -> Result<u64, SourceError> {
        if self.read != self.size {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read {} of {} bytes: the device changed size or ended early", self.read, self.size),
            );
            return Err(io_err(&self.path, e));
        }
        Ok(self.read)
    }
}

impl Read for DeviceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never past the size measured at open: a device that grew is copied as it was.
        let left = self.size - self.read;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read - self.dropped >= DROP_BEHIND {
            // SAFETY: advice on a descriptor we own.
            unsafe {
                libc::posix_fadvise(
                    self.file.as_raw_fd(),
                    self.dropped as libc::off_t,
                    (self.read - self.dropped) as libc::off_t,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
            self.dropped = self.read;
        }
        Ok(n)
    }
}

/// The stream name of a device backup: the device path's file name.
pub fn stream_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "device".into())
}

/// Where file systems on `device` are mounted (none for an image file that
/// is not attached). Matches mountinfo's device number, and the mount source
/// for file systems with anonymous device numbers (btrfs).
pub fn mountpoints(device: &Path) -> io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(device)?;
    if !meta.file_type().is_block_device() {
        return Ok(Vec::new());
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let canonical = std::fs::canonicalize(device)?;
    let info = std::fs::read("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in info.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == b"-") else { continue };
        let (Some(devno), Some(target), Some(source)) = (fields.get(2), fields.get(4), fields.get(sep + 2)) else {
            continue;
        };
        let same_number = *devno == format!("{major}:{minor}").as_bytes();
        let source = PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(source)));
        let same_source = std::fs::canonicalize(&source).is_ok_and(|s| s == canonical);
        if same_number || same_source {
            let t = PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(target)));
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.len() - i >= 4 {
            let oct = &s[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_octal(br"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape_octal(br"/x\\"), br"/x\\");
        assert_eq!(unescape_octal(br"/plain"), b"/plain");
    }

    #[test]
    fn image_reader_reads_exactly_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let mut r = DeviceReader::open(&p).unwrap();
        assert_eq!(r.size(), 100_000);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(r.finish().unwrap(), 100_000);
        assert_eq!(stream_name(&p), "disk.img");
        assert!(mountpoints(&p).unwrap().is_empty());
        assert!(DeviceReader::open(dir.path()).is_err(), "a directory is not a device");
    }
}
