//! Content-defined chunking with FastCDC (2020), streaming over any `Read`.
//!
//! The gear table is XOR-ed with a seed derived from the repository key, so
//! chunk boundaries (and therefore chunk sizes) do not reveal content.
//! We drive `fastcdc::v2020::cut_gear` over our own buffer rather than using
//! `StreamCDC`, which shifts its whole `max_size` buffer after every chunk; here
//! the buffer is compacted only when less than `max_size` bytes remain.

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::{self, Read};

/// Chunk size bounds, fixed per repository at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self { min_size: 512 * 1024, avg_size: 1024 * 1024, max_size: 8 * 1024 * 1024 }
    }
}

impl ChunkerParams {
    /// Check the bounds FastCDC accepts, so a bad config is an error, not a panic.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok { Ok(()) } else { Err(format!("invalid chunker sizes min={min} avg={avg} max={max}")) }
    }
}

/// Streaming chunker; yields owned chunks in input order.
pub struct Chunker<R> {
    source: R,
    params: ChunkerParams,
    masks: (u64, u64),
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// `params` must have passed [`ChunkerParams::validate`].
    pub fn new(source: R, params: ChunkerParams, seed: u64) -> Self {
        Self::with_buffer(source, params, seed, Vec::new())
    }

    /// Like `new`, reusing `buf` (from [`Chunker::into_parts`]) so that backing
    /// up many small files does not allocate a fresh 16 MiB buffer for each.
    pub fn with_buffer(source: R, params: ChunkerParams, seed: u64, mut buf: Vec<u8>) -> Self {
        // Twice max_size: a full chunk can always be cut without compacting.
        buf.resize(2 * params.max_size as usize, 0);
        let masks = select_masks(params.avg_size as usize, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Self { source, params, masks, gear, gear_ls, buf, start: 0, end: 0, eof: false }
    }

    /// Give back the source (e.g. to wait for the child that fed it) and the buffer.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.source, self.buf)
    }

    fn fill(&mut self) -> io::Result<()> {
        let max = self.params.max_size as usize;
        if self.end - self.start >= max || self.eof {
            return Ok(());
        }
        if self.buf.len() - self.start < max {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < self.buf.len() && self.end - self.start < max {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at end of input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.fill()?;
        let avail = &self.buf[self.start..self.end];
        if avail.is_empty() {
            return Ok(None);
        }
        let p = self.params;
        let (mask_s, mask_l) = self.masks;
        let (_, len) = cut_gear(
            avail,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        // cut_gear returns the whole slice when it is shorter than min_size.
        let len = len.clamp(1, avail.len());
        let chunk = avail[..len].to_vec();
        self.start += len;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn small() -> ChunkerParams {
        ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 65536 }
    }

    fn chunks(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(data, small(), seed);
        let mut out = vec![];
        while let Some(ch) = c.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    #[test]
    fn chunks_concatenate_to_input_and_respect_bounds() {
        let data = pseudo_random(1_000_000, 7);
        let cs = chunks(&data, 42);
        assert_eq!(cs.concat(), data);
        assert!(cs.len() > 50, "expected many chunks, got {}", cs.len());
        for c in &cs[..cs.len() - 1] {
            assert!(c.len() >= 2048 && c.len() <= 65536, "chunk of {}", c.len());
        }
        assert!(chunks(b"", 1).is_empty());
        assert_eq!(chunks(b"x", 1), vec![b"x".to_vec()]);
    }

    #[test]
    fn insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(2_000_000, 3);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, b"inserted bytes".iter().copied());
        let a: std::collections::HashSet<_> = chunks(&data, 5).into_iter().collect();
        let b = chunks(&edited, 5);
        let new = b.iter().filter(|c| !a.contains(*c)).count();
        assert!(new <= 3, "{new} chunks changed");
    }

    #[test]
    fn seed_changes_boundaries_and_params_validate() {
        let data = pseudo_random(500_000, 11);
        let a: Vec<usize> = chunks(&data, 1).iter().map(Vec::len).collect();
        let b: Vec<usize> = chunks(&data, 2).iter().map(Vec::len).collect();
        assert_ne!(a, b);
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams { min_size: 10, avg_size: 20, max_size: 30 }.validate().is_err());
    }
}
