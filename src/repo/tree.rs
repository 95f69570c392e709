//! File-tree metadata: one JSON object per line, parents before children.

use crate::pipeline::ChunkId;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// A path or name as raw bytes; JSON shows it as a string when it is UTF-8
/// and as `{"hex": ...}` otherwise, so no file name is ever mangled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RawPath(pub Vec<u8>);

impl RawPath {
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawPathRepr {
    Text(String),
    Hex { hex: String },
}

impl Serialize for RawPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => RawPathRepr::Text(t.to_string()),
            Err(_) => RawPathRepr::Hex { hex: hex::encode(&self.0) },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RawPathRepr::deserialize(d)? {
            RawPathRepr::Text(t) => Ok(RawPath(t.into_bytes())),
            RawPathRepr::Hex { hex } => hex::decode(hex).map(RawPath).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    #[default]
    File,
    Dir,
    Symlink,
    /// Another name for the file recorded earlier in the same tree at `target`
    /// (a hard link): no content of its own, restored with `link(2)`. A kind of
    /// its own, so a reader that does not know it fails instead of restoring
    /// an empty file.
    Hardlink,
}

/// One extended attribute. Name and value use [`RawPath`]'s encoding (text
/// when UTF-8, else `{"hex": ...}`), so binary values survive JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: RawPath,
    pub value: RawPath,
}

/// One entry of a tree. `path` is relative to the restore target and uses `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Node {
    pub path: RawPath,
    pub kind: NodeKind,
    /// Permission bits (07777).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawPath>,
    /// Inode number and status-change time of files at backup time: with size
    /// and mtime they decide whether the next backup may reuse the chunk list
    /// instead of reading the file again. ctime cannot be set by `touch`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ino: u64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ctime_ns: i64,
    /// Owner and group. Absent in snapshots taken before they were recorded;
    /// then restore leaves ownership alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Extended attributes (all namespaces the backup could list), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

impl Node {
    /// Same file, unchanged since `self` was recorded (as far as metadata can tell).
    pub fn unchanged_as(&self, size: u64, mtime_ns: i64, ctime_ns: i64, ino: u64) -> bool {
        self.kind == NodeKind::File
            && self.ino != 0
            && self.ino == ino
            && self.size == size
            && self.mtime_ns == mtime_ns
            && self.ctime_ns == ctime_ns
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_paths_roundtrip_utf8_and_binary() {
        for bytes in [b"caf\xc3\xa9/x".to_vec(), b"bad\xff\xfename".to_vec()] {
            let n = Node {
                path: RawPath(bytes.clone()),
                kind: NodeKind::File,
                mode: 0o644,
                mtime_ns: 1,
                size: 0,
                ..Default::default()
            };
            let j = serde_json::to_string(&n).unwrap();
            let back: Node = serde_json::from_str(&j).unwrap();
            assert_eq!(back, n);
        }
        let j = serde_json::to_string(&RawPath(b"\xff".to_vec())).unwrap();
        assert_eq!(j, r#"{"hex":"ff"}"#);
    }

    #[test]
    fn new_fields_roundtrip_and_old_nodes_still_read() {
        let n = Node {
            path: RawPath(b"a/b\nc".to_vec()),
            kind: NodeKind::Hardlink,
            target: Some(RawPath(b"a/first".to_vec())),
            uid: Some(1234),
            gid: Some(5678),
            xattrs: vec![Xattr { name: RawPath(b"user.bin".to_vec()), value: RawPath(vec![0, 0xff, 1]) }],
            ..Default::default()
        };
        let j = serde_json::to_string(&n).unwrap();
        assert!(j.contains(r#""kind":"hardlink""#), "{j}");
        assert_eq!(serde_json::from_str::<Node>(&j).unwrap(), n);
        let old: Node = serde_json::from_str(r#"{"path":"x","kind":"file","mode":420,"mtime_ns":5}"#).unwrap();
        assert_eq!((old.uid, old.gid, old.xattrs.len()), (None, None, 0));
    }
}
