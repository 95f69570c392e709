//! Where restored bytes go. Targets never touch the store: they receive
//! verified plaintext from the repository reader.

pub mod binlog_replay;
pub mod db;
pub mod device;
pub mod mongodb;
pub mod mysql;
mod mysql_swap;
pub mod pg_datadir;
pub mod postgres;
pub mod sparse;
pub mod tree;
pub mod treemeta;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Create a file for a restored stream, refusing to overwrite or follow a symlink.
pub fn create_new_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path)
}
