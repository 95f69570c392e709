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

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
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
