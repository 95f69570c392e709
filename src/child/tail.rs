//! Draining a child's output while it runs.
//!
//! A pipe holds 64 KiB: a child that writes more to a pipe nobody reads
//! blocks forever, so a parent that waits for the exit before reading
//! deadlocks. Every piped stream we do not consume as data goes through
//! `keep_tail`.

use std::io::Read;
use std::thread::JoinHandle;

/// Keep at most this much of a child's output (the end is the useful part).
pub const TAIL_KEEP: usize = 64 * 1024;

/// Read `r` to its end on a thread, keeping its last 64 KiB (the end of a
/// tool's stderr is the part that explains a failure).
pub fn keep_tail(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            keep.extend_from_slice(&buf[..n]);
            if keep.len() > 2 * TAIL_KEEP {
                keep.drain(..keep.len() - TAIL_KEEP);
            }
        }
        let start = keep.len().saturating_sub(TAIL_KEEP);
        keep.split_off(start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_64_kib() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let tail = keep_tail(std::io::Cursor::new(data.clone())).join().unwrap();
        assert_eq!(tail, data[data.len() - TAIL_KEEP..]);
        assert_eq!(keep_tail(std::io::Cursor::new(b"short".to_vec())).join().unwrap(), b"short");
    }
}
