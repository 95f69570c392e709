//! zstd compression with a raw fallback when compression does not shrink the data.

use std::io;

/// How a blob's payload is encoded; stored as the first plaintext byte of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
}

impl Codec {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Encode `data` as `codec byte || payload`, choosing zstd only when it is smaller.
///
/// Level 0 disables compression. Incompressible chunks (already-compressed
/// media, encrypted dumps) are stored raw so restore never pays to inflate them.
pub fn compress(level: i32, data: &[u8]) -> Vec<u8> {
    if level != 0 && !looks_incompressible(data) {
        let bound = zstd::zstd_safe::compress_bound(data.len());
        let mut out = Vec::with_capacity(bound + 1);
        out.push(Codec::Zstd as u8);
        out.resize(bound + 1, 0);
        if let Ok(n) = zstd::bulk::compress_to_buffer(data, &mut out[1..], level) {
            if n < data.len() {
                out.truncate(n + 1);
                return out;
            }
        }
    }
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(Codec::Raw as u8);
    out.extend_from_slice(data);
    out
}

/// Bytes sampled from a large chunk to decide whether compressing it is worth it.
const SAMPLE: usize = 32 * 1024;

/// Probe two samples at level 1 before paying for a full compression: media,
/// archives and encrypted files do not shrink, and zstd at higher levels spends
/// as much time failing on them as it spends succeeding on text.
fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < 4 * SAMPLE {
        return false;
    }
    let mid = data.len() / 2;
    let shrinks = |s: &[u8]| zstd::bulk::compress(s, 1).map_or(true, |c| c.len() < s.len() * 97 / 100);
    !shrinks(&data[..SAMPLE]) && !shrinks(&data[mid..mid + SAMPLE])
}

/// Decode a `codec byte || payload` produced by [`compress`]; `raw_len` is the
/// expected plaintext length, which bounds the output buffer.
pub fn decompress(encoded: &[u8], raw_len: usize) -> io::Result<Vec<u8>> {
    let (&first, payload) =
        encoded.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty blob payload"))?;
    let out = match Codec::from_byte(first) {
        Some(Codec::Raw) => payload.to_vec(),
        Some(Codec::Zstd) => zstd::bulk::decompress(payload, raw_len)?,
        None => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown blob codec {first}")));
        }
    };
    if out.len() != raw_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob decoded to {} bytes, expected {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

/// Decode a metadata object whose plaintext length is not recorded anywhere.
/// `limit` caps the output so a hostile object cannot exhaust memory.
pub fn decompress_limited(encoded: &[u8], limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let (&first, payload) =
        encoded.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty payload"))?;
    match Codec::from_byte(first) {
        Some(Codec::Raw) => Ok(payload.to_vec()),
        Some(Codec::Zstd) => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(payload)?.take(limit + 1).read_to_end(&mut out)?;
            if out.len() as u64 > limit {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "object larger than limit"));
            }
            Ok(out)
        }
        None => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown codec {first}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_uses_zstd_and_roundtrips() {
        let data = b"INSERT INTO t VALUES (1,'abc');\n".repeat(1000);
        let enc = compress(1, &data);
        assert_eq!(enc[0], Codec::Zstd as u8);
        assert!(enc.len() < data.len() / 10);
        assert_eq!(decompress(&enc, data.len()).unwrap(), data);
    }

    #[test]
    fn incompressible_and_empty_data_stay_raw() {
        let mut data = vec![0u8; 4096];
        getrandom::fill(&mut data).unwrap();
        let enc = compress(3, &data);
        assert_eq!(enc[0], Codec::Raw as u8);
        assert_eq!(decompress(&enc, data.len()).unwrap(), data);
        let enc = compress(1, b"");
        assert_eq!(decompress(&enc, 0).unwrap(), b"");
    }

    #[test]
    fn large_random_chunks_skip_compression_but_mixed_ones_do_not() {
        let mut random = vec![0u8; 1 << 20];
        getrandom::fill(&mut random).unwrap();
        assert!(looks_incompressible(&random));
        assert_eq!(compress(3, &random)[0], Codec::Raw as u8);
        let mut mixed = random.clone();
        mixed[..SAMPLE].fill(b'a');
        assert!(!looks_incompressible(&mixed));
        let text = b"INSERT INTO t VALUES (1,'abc');\n".repeat(40_000);
        assert!(!looks_incompressible(&text));
    }

    #[test]
    fn wrong_length_and_unknown_codec_are_errors() {
        let enc = compress(1, &[7u8; 1000]);
        assert!(decompress(&enc, 999).is_err());
        assert!(decompress(&[9, 1, 2], 2).is_err());
        assert!(decompress(&[], 0).is_err());
    }
}
