//! Writing restored file contents with holes where the data is zero.
//!
//! Every 4 KiB block (at a 4 KiB-aligned file offset) that is all zero is
//! skipped instead of written, and the length is set at the end, so the
//! holes of a sparse file stay holes (and long zero runs cost no disk space).
//! A file that was not sparse but holds aligned zero blocks restores sparse:
//! its content is the same.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit of hole detection: the usual file-system block size.
pub const BLOCK: u64 = 4096;

/// A new, empty file being filled front to back. Dropping it without
/// [`SparseWriter::finish`] leaves the file short when it ends in zeros.
pub struct SparseWriter {
    file: File,
    pos: u64,
}

fn is_zero(b: &[u8]) -> bool {
    // 32-byte groups OR-ed together compile to vector instructions.
    let mut groups = b.chunks_exact(32);
    groups.all(|g| g.iter().fold(0u8, |a, &x| a | x) == 0) && groups.remainder().iter().all(|&x| x == 0)
}

/// Write `data` at `pos` of `file`, skipping every 4 KiB-aligned block of it
/// that is all zero. For files filled in any order (tree restore writes each
/// chunk where it belongs); the caller sets the final length, which creates a
/// trailing hole.
pub fn write_sparse_at(file: &File, pos: u64, data: &[u8]) -> io::Result<()> {
    let mut run: Option<usize> = None;
    let mut i = 0;
    while i < data.len() {
        let off = pos + i as u64;
        let end = data.len().min(i + (BLOCK - off % BLOCK) as usize);
        if is_zero(&data[i..end]) {
            if let Some(s) = run.take() {
                file.write_all_at(&data[s..i], pos + s as u64)?;
            }
        } else if run.is_none() {
            run = Some(i);
        }
        i = end;
    }
    if let Some(s) = run {
        file.write_all_at(&data[s..], pos + s as u64)?;
    }
    Ok(())
}

impl SparseWriter {
    pub fn new(file: File) -> Self {
        Self { file, pos: 0 }
    }

    /// Append `data`: non-zero runs are written, zero blocks left as holes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        write_sparse_at(&self.file, self.pos, data)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Set the final length (a trailing hole is created here); returns it.
    pub fn finish(self) -> io::Result<u64> {
        self.file.set_len(self.pos)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_blocks_become_holes_and_content_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        let mut want = Vec::new();
        // Data, 8 MiB of zeros fed in odd-sized pieces, data across a block edge, trailing zeros.
        let pieces: Vec<Vec<u8>> = vec![
            vec![7u8; 100],
            vec![0; 3 << 20],
            vec![0; (5 << 20) - 100],
            vec![0; 4000],
            vec![9; 200],
            vec![0; 1 << 20],
        ];
        for piece in &pieces {
            w.write(piece).unwrap();
            want.extend_from_slice(piece);
        }
        assert_eq!(w.finish().unwrap(), want.len() as u64);
        assert_eq!(std::fs::read(&p).unwrap(), want);
        let blocks = std::fs::metadata(&p).unwrap().blocks() * 512;
        assert!(blocks <= 64 * 1024, "{blocks} bytes allocated for a mostly empty file");
    }

    #[test]
    fn zero_check() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 100]));
        let mut v = vec![0u8; 100];
        v[99] = 1;
        assert!(!is_zero(&v));
        v[99] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
    }
}
