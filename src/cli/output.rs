//! Human-readable formatting helpers.

/// `1.50 GiB` style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.2} {}", UNITS[u]) }
}

/// Throughput in MB/s (decimal, as benchmarks report it).
pub fn rate(bytes: u64, ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    format!("{:.1} MB/s", bytes as f64 / 1e6 / (ms as f64 / 1000.0))
}

/// Write one line to stdout. A closed pipe (`drtool snapshots | head -1`) is
/// not an error: the reader has what it wanted, and the work is already done.
pub fn emit(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `println!` that goes through [`emit`]; use inside functions returning `Result<_, Failure>`.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::output::emit(&format!($($arg)*))? };
}
pub(crate) use outln;

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    emit(&serde_json::to_string_pretty(v)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_sizes() {
        assert_eq!(super::bytes(5), "5 B");
        assert_eq!(super::bytes(1536), "1.50 KiB");
        assert_eq!(super::bytes(1 << 30), "1.00 GiB");
        assert_eq!(super::rate(100_000_000, 1000), "100.0 MB/s");
    }
}
