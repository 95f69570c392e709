//! What a tree backup leaves out: `--exclude` globs, cache directories
//! (`--exclude-caches`) and other file systems (`--one-file-system`).
//!
//! Globs follow restic: a pattern starting with `/` is matched against the
//! whole absolute path; any other pattern may match any trailing part of the
//! path, so `*.tmp` matches a base name anywhere and `cache/*` matches a
//! `cache` directory's children at any depth. `*` and `?` never match `/`;
//! `**` matches any number of path components. A directory that is left out
//! is not descended into.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The tree options a user gives (plain data; [`Exclusions`] is the compiled form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeOptions {
    /// Glob patterns (see the module documentation).
    pub excludes: Vec<String>,
    /// Leave out directories holding a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Do not descend into directories on another device than their root.
    pub one_file_system: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid --exclude pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// The Cache Directory Tagging Specification's signature (https://bford.info/cachedir/):
/// a `CACHEDIR.TAG` is valid only when it starts with exactly these bytes.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Compiled [`TreeOptions`].
#[derive(Debug, Clone)]
pub struct Exclusions {
    globs: GlobSet,
    caches: bool,
    one_file_system: bool,
}

impl Exclusions {
    pub fn new(opts: &TreeOptions) -> Result<Self, PatternError> {
        let mut set = GlobSetBuilder::new();
        for pattern in &opts.excludes {
            let err = |reason: String| PatternError { pattern: pattern.clone(), reason };
            let trimmed = pattern.trim_end_matches('/');
            if trimmed.is_empty() {
                return Err(err("empty pattern".into()));
            }
            // Unanchored patterns may match any trailing part of the path.
            let full = if trimmed.starts_with('/') { trimmed.to_string() } else { format!("**/{trimmed}") };
            let glob = GlobBuilder::new(&full)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| err(e.kind().to_string()))?;
            set.add(glob);
        }
        let globs =
            set.build().map_err(|e| PatternError { pattern: opts.excludes.join(" "), reason: e.to_string() })?;
        Ok(Self { globs, caches: opts.exclude_caches, one_file_system: opts.one_file_system })
    }

    /// Whether an `--exclude` pattern matches `path` (absolute).
    pub fn glob_excluded(&self, path: &Path) -> bool {
        !self.globs.is_empty() && self.globs.is_match(path)
    }

    /// Whether `dir` is a cache directory to leave out.
    pub fn cache_excluded(&self, dir: &Path) -> bool {
        self.caches && is_tagged_cache(dir)
    }

    /// Whether an entry on device `dev` is on another file system than its root's.
    pub fn other_file_system(&self, dev: u64, root_dev: u64) -> bool {
        self.one_file_system && dev != root_dev
    }
}

/// Whether `dir` holds a `CACHEDIR.TAG` that starts with the signature.
pub fn is_tagged_cache(dir: &Path) -> bool {
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    File::open(dir.join("CACHEDIR.TAG")).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == CACHEDIR_SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Exclusions {
        Exclusions::new(&TreeOptions {
            excludes: patterns.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn globs_match_base_names_trailing_parts_and_anchored_paths() {
        let e = ex(&["*.tmp", "node_modules", "cache/*.bin", "/srv/data/skip"]);
        for yes in ["/srv/a.tmp", "/srv/x/y/b.tmp", "/a/node_modules", "/a/cache/x.bin", "/srv/data/skip"] {
            assert!(e.glob_excluded(Path::new(yes)), "{yes}");
        }
        for no in ["/srv/a.tmpx", "/a/node_modules2", "/a/cache/d/x.bin", "/other/srv/data/skip", "/srv/data/skip2"] {
            assert!(!e.glob_excluded(Path::new(no)), "{no}");
        }
        assert!(ex(&["/srv/**/*.log"]).glob_excluded(Path::new("/srv/a/b/c.log")));
        assert!(!ex(&[]).glob_excluded(Path::new("/x")));
    }

    #[test]
    fn non_utf8_paths_match_on_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/d/bad\xffname.tmp"));
        assert!(ex(&["*.tmp"]).glob_excluded(p));
    }

    #[test]
    fn bad_patterns_are_errors() {
        let e = Exclusions::new(&TreeOptions { excludes: vec!["a[".into()], ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("a["), "{e}");
    }

    #[test]
    fn cachedir_tag_needs_the_signature() {
        let d = tempfile::tempdir().unwrap();
        assert!(!is_tagged_cache(d.path()));
        std::fs::write(d.path().join("CACHEDIR.TAG"), b"Signature: not the right one\n").unwrap();
        assert!(!is_tagged_cache(d.path()));
        let mut good = CACHEDIR_SIGNATURE.to_vec();
        good.extend_from_slice(b"\n# This file is a cache directory tag.\n");
        std::fs::write(d.path().join("CACHEDIR.TAG"), good).unwrap();
        assert!(is_tagged_cache(d.path()));
    }
}
