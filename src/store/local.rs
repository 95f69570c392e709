//! A repository in a local directory.

use super::{ObjectInfo, Store, StoreError, validate_name};
use async_trait::async_trait;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        validate_name(name)?;
        Ok(self.root.join(name))
    }
}

fn io_err(name: &str, e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound { name: name.to_string() }
    } else {
        StoreError::Io { name: name.to_string(), source: e }
    }
}

/// Write via a temp file in the same directory, fsync it, rename over the
/// final name, then fsync the directory so the rename itself is durable.
fn put_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("object path has no parent"))?;
    fs::create_dir_all(dir)?;
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".tmp-{}", hex::encode(rnd)));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn read_range(path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Read a whole file of at most `limit` bytes. The size comes from the open
/// file, so the check and the read see the same object even if it is replaced
/// meanwhile; `take` stops a file that grows while being read.
fn read_limited(name: &str, path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let io = |e| io_err(name, e);
    let f = File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let too_large = |size| StoreError::TooLarge { name: name.to_string(), size: Some(size), limit };
    if size > limit {
        return Err(too_large(size));
    }
    let mut buf = Vec::with_capacity(size as usize);
    f.take(limit.saturating_add(1)).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

fn list_dir(root: &Path, prefix: &str) -> io::Result<Vec<ObjectInfo>> {
    // List the deepest directory the prefix names, then filter by the rest.
    let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let mut out = Vec::new();
    let mut stack = vec![(root.join(dir_part), dir_part.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(fname) = file_name.to_str() else {
                continue;
            };
            if fname.starts_with(".tmp") {
                continue;
            }
            let name = if rel.is_empty() { fname.to_string() } else { format!("{rel}/{fname}") };
            // An object deleted by another process between readdir and stat
            // (a released lock, a pruned pack) is simply no longer listed.
            let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
            let ft = match entry.file_type() {
                Ok(ft) => ft,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            if ft.is_dir() {
                if name.starts_with(prefix) || prefix.starts_with(&format!("{name}/")) {
                    stack.push((entry.path(), name));
                }
            } else if ft.is_file() && name.starts_with(prefix) {
                match entry.metadata() {
                    Ok(m) => out.push(ObjectInfo { name, size: m.len(), modified: m.modified().ok() }),
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| io_err(name, e)),
        Err(e) => Err(StoreError::Io { name: name.to_string(), source: io::Error::other(e) }),
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path(name)?;
        blocking(name, move || put_atomic(&path, &data)).await
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name)?;
        blocking(name, move || fs::read(&path)).await
    }

    async fn get_limited(&self, name: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name)?;
        let owned = name.to_string();
        match tokio::task::spawn_blocking(move || read_limited(&owned, &path, limit)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Io { name: name.to_string(), source: io::Error::other(e) }),
        }
    }

    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name)?;
        let data = blocking(name, move || read_range(&path, offset, len)).await?;
        if data.len() as u64 != len {
            return Err(StoreError::ShortRead { name: name.to_string(), expected: len, got: data.len() as u64 });
        }
        Ok(data)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let root = self.root.clone();
        let p = prefix.to_string();
        blocking(prefix, move || list_dir(&root, &p)).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name)?;
        blocking(name, move || match fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        })
        .await
    }

    async fn size(&self, name: &str) -> Result<u64, StoreError> {
        let path = self.path(name)?;
        blocking(name, move || fs::metadata(&path).map(|m| m.len())).await
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        s.put("data/ab/abc", b"hello world".to_vec()).await.unwrap();
        s.put("snapshots/one", b"x".to_vec()).await.unwrap();
        assert_eq!(s.get("data/ab/abc").await.unwrap(), b"hello world");
        assert_eq!(s.get_range("data/ab/abc", 6, 5).await.unwrap(), b"world");
        assert!(matches!(s.get_range("data/ab/abc", 6, 50).await, Err(StoreError::ShortRead { .. })));
        assert_eq!(s.size("data/ab/abc").await.unwrap(), 11);
        let l = s.list("data/").await.unwrap();
        assert_eq!(l.iter().map(|o| (o.name.as_str(), o.size)).collect::<Vec<_>>(), vec![("data/ab/abc", 11)]);
        assert!(l[0].modified.is_some());
        assert_eq!(s.list("snapshots/").await.unwrap().len(), 1);
        assert!(s.list("index/").await.unwrap().is_empty());
        s.delete("data/ab/abc").await.unwrap();
        s.delete("data/ab/abc").await.unwrap();
        assert!(s.get("data/ab/abc").await.unwrap_err().is_not_found());
        assert!(matches!(s.get("../etc/passwd").await, Err(StoreError::InvalidName(_))));
    }

    #[tokio::test]
    async fn limited_reads_refuse_large_objects_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        s.put("locks/small", b"0123456789".to_vec()).await.unwrap();
        assert_eq!(s.get_limited("locks/small", 10).await.unwrap(), b"0123456789");
        let e = s.get_limited("locks/small", 9).await.unwrap_err();
        assert!(matches!(e, StoreError::TooLarge { size: Some(10), limit: 9, .. }), "{e}");
        // Sparse: costs no disk, and would not fit in memory if read.
        fs::File::create(dir.path().join("locks/huge")).unwrap().set_len(1 << 40).unwrap();
        let e = s.get_limited("locks/huge", 1 << 16).await.unwrap_err();
        assert!(e.to_string().starts_with("locks/huge: larger than the 65536 bytes allowed"), "{e}");
        assert!(s.get_limited("locks/none", 1).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn temp_files_are_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("index")).unwrap();
        fs::write(dir.path().join("index/.tmp-123"), b"partial").unwrap();
        let s = LocalStore::new(dir.path());
        assert!(s.list("index/").await.unwrap().is_empty());
    }
}
