//! Reading a ustar stream entry by entry without buffering it, so a base
//! backup can be split into per-file items as it arrives (and deduplicate
//! file by file). Only what pg_basebackup writes is needed: files,
//! directories, symlinks, pax/GNU long-name extensions.

use std::io::{self, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative path without a trailing `/`.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// Bytes of content that follow (files only).
    pub size: u64,
    pub link: Vec<u8>,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("tar stream: {}", msg.into()))
}

/// A numeric field: octal text, or GNU base-256 when the high bit is set.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256).ok_or_else(|| bad("number too large"))? | u64::from(b);
        }
        return Ok(v);
    }
    let text: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).filter(|b| *b != b' ').collect();
    if text.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&text).map_err(|_| bad("non-text number"))?;
    u64::from_str_radix(s, 8).map_err(|_| bad(format!("bad octal number {s:?}")))
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Bytes of padding after `size` bytes of content.
pub fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n { Err(bad("truncated")) } else { Ok(()) }
}

fn read_block(r: &mut impl Read, block: &mut [u8; 512]) -> io::Result<bool> {
    let mut got = 0;
    while got < 512 {
        match r.read(&mut block[got..])? {
            0 if got == 0 => return Ok(false),
            0 => return Err(bad("truncated header")),
            n => got += n,
        }
    }
    Ok(true)
}

/// Read the next entry header; `None` at the end-of-archive marker. The
/// caller then reads exactly `size` content bytes and calls [`finish_entry`].
pub fn next_entry(r: &mut impl Read) -> io::Result<Option<Entry>> {
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut block = [0u8; 512];
    loop {
        if !read_block(r, &mut block)? {
            return Err(bad("ended without the end-of-archive marker"));
        }
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let sum: u64 =
            block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        if number(&block[148..156])? != sum {
            return Err(bad("header checksum mismatch"));
        }
        let size = number(&block[124..136])?;
        let typeflag = block[156];
        match typeflag {
            b'L' | b'K' | b'x' => {
                let mut data = vec![0u8; usize::try_from(size).map_err(|_| bad("extension too large"))?.min(1 << 20)];
                r.read_exact(&mut data)?;
                skip(r, size - data.len() as u64 + padding(size))?;
                match typeflag {
                    b'L' => long_name = Some(cstr(&data).to_vec()),
                    b'K' => long_link = Some(cstr(&data).to_vec()),
                    _ => apply_pax(&data, &mut long_name, &mut long_link),
                }
                continue;
            }
            b'g' => {
                skip(r, size + padding(size))?;
                continue;
            }
            _ => {}
        }
        return entry_of(&block, size, long_name.take(), long_link.take()).map(Some);
    }
}

/// An entry from its ustar header block (extensions already applied).
fn entry_of(block: &[u8; 512], size: u64, long_name: Option<Vec<u8>>, long_link: Option<Vec<u8>>) -> io::Result<Entry> {
    let typeflag = block[156];
    let kind = match typeflag {
        b'0' | 0 | b'7' => EntryKind::File,
        b'5' => EntryKind::Dir,
        b'2' => EntryKind::Symlink,
        other => return Err(bad(format!("unsupported entry type {:?}", other as char))),
    };
    let mut path = long_name.unwrap_or_else(|| {
        let (name, prefix) = (cstr(&block[..100]), cstr(&block[345..500]));
        let ustar = &block[257..262] == b"ustar";
        if ustar && !prefix.is_empty() { [prefix, b"/", name].concat() } else { name.to_vec() }
    });
    while path.last() == Some(&b'/') {
        path.pop();
    }
    while path.starts_with(b"./") {
        path.drain(..2);
    }
    Ok(Entry {
        path,
        kind,
        mode: (number(&block[100..108])? & 0o7777) as u32,
        uid: number(&block[108..116])? as u32,
        gid: number(&block[116..124])? as u32,
        mtime: number(&block[136..148])? as i64,
        size: if kind == EntryKind::File { size } else { 0 },
        link: long_link.unwrap_or_else(|| cstr(&block[157..257]).to_vec()),
    })
}

fn apply_pax(data: &[u8], name: &mut Option<Vec<u8>>, link: &mut Option<Vec<u8>>) {
    // Records: "<len> <key>=<value>\n".
    let mut rest = data;
    while let Some(sp) = rest.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { return };
        if len <= sp || len > rest.len() {
            return;
        }
        let record = &rest[sp + 1..len - 1];
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            match &record[..eq] {
                b"path" => *name = Some(record[eq + 1..].to_vec()),
                b"linkpath" => *link = Some(record[eq + 1..].to_vec()),
                _ => {}
            }
        }
        rest = &rest[len..];
    }
}

/// Skip the padding after an entry's content (the content must have been read).
pub fn finish_entry(r: &mut impl Read, e: &Entry) -> io::Result<()> {
    skip(r, padding(e.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, flag: u8, size: u64, mode: u32) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
        h[108..115].copy_from_slice(b"0000764");
        h[116..123].copy_from_slice(b"0000764");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"14712345670");
        h[156] = flag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    #[test]
    fn reads_entries_and_content() {
        let mut tar = Vec::new();
        tar.extend_from_slice(&header("base/", b'5', 0, 0o700));
        tar.extend_from_slice(&header("base/1/112", b'0', 5, 0o600));
        tar.extend_from_slice(b"hello");
        tar.extend_from_slice(&[0u8; 507]);
        tar.extend_from_slice(&[0u8; 1024]);
        let mut r = &tar[..];
        let d = next_entry(&mut r).unwrap().unwrap();
        assert_eq!((d.path.as_slice(), d.kind, d.mode, d.uid), (&b"base"[..], EntryKind::Dir, 0o700, 500));
        let f = next_entry(&mut r).unwrap().unwrap();
        assert_eq!((f.path.as_slice(), f.size), (&b"base/1/112"[..], 5));
        let mut content = Vec::new();
        (&mut r).take(f.size).read_to_end(&mut content).unwrap();
        assert_eq!(content, b"hello");
        finish_entry(&mut r, &f).unwrap();
        assert!(next_entry(&mut r).unwrap().is_none());
        let mut broken = tar.clone();
        broken[600] ^= 1;
        assert!(next_entry(&mut &broken[512..]).is_err());
        assert!(next_entry(&mut &tar[..700]).is_ok());
        assert!(next_entry(&mut &tar[..0]).is_err());
    }
}
