//! `restore --include PATH`: which entries of a snapshot to restore.
//!
//! An include selects the entry at that path and everything below it, plus
//! the directories above it (restored with their own metadata, so the
//! selected entries keep their place in the tree). A path starting with `/`
//! is the original path at backup time (`/srv/uploads/a`); any other path is
//! as stored in the snapshot, starting with the root's name (`uploads/a`),
//! which is also where it lands under `--target`.

use crate::repo::tree::Node;

#[derive(Debug)]
struct Include {
    text: String,
    path: Vec<u8>,
    absolute: bool,
    matched: bool,
}

/// Include paths, and which of them matched something so far.
#[derive(Debug)]
pub struct Includes(Vec<Include>);

enum Relation {
    /// At or below the include.
    Inside,
    /// A directory above the include.
    Above,
    Unrelated,
}

fn relation(path: &[u8], include: &[u8]) -> Relation {
    let under = |a: &[u8], b: &[u8]| a.len() > b.len() && a.starts_with(b) && (b.ends_with(b"/") || a[b.len()] == b'/');
    if path == include || under(path, include) {
        Relation::Inside
    } else if under(include, path) {
        Relation::Above
    } else {
        Relation::Unrelated
    }
}

/// The path `node` had at backup time, given the tree's root (`/srv/uploads`
/// for node `uploads/a` is `/srv/uploads/a`).
pub fn original_path(root: &str, node_path: &[u8]) -> Vec<u8> {
    let mut out = root.as_bytes().to_vec();
    if let Some(i) = node_path.iter().position(|&b| b == b'/') {
        if !out.ends_with(b"/") {
            out.push(b'/');
        }
        out.extend_from_slice(&node_path[i + 1..]);
    }
    out
}

impl Includes {
    pub fn new(paths: &[String]) -> Self {
        Includes(
            paths
                .iter()
                .map(|t| {
                    let trimmed = t.trim_end_matches('/');
                    let path = if trimmed.is_empty() && t.starts_with('/') { "/" } else { trimmed };
                    Include {
                        text: t.clone(),
                        path: path.as_bytes().to_vec(),
                        absolute: t.starts_with('/'),
                        matched: false,
                    }
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether to restore `node` of the tree backed up from `root`.
    pub fn selects(&mut self, root: &str, node: &Node) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let original = original_path(root, &node.path.0);
        self.selects_path(&original, &node.path.0)
    }

    /// Whether to restore an entry with this original and stored path.
    pub fn selects_path(&mut self, original: &[u8], stored: &[u8]) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let mut selected = false;
        for inc in &mut self.0 {
            let p = if inc.absolute { original } else { stored };
            match relation(p, &inc.path) {
                Relation::Inside => {
                    inc.matched = true;
                    selected = true;
                }
                Relation::Above => selected = true,
                Relation::Unrelated => {}
            }
        }
        selected
    }

    /// Includes that selected nothing (a typo the user must hear about).
    pub fn unmatched(&self) -> Vec<&str> {
        self.0.iter().filter(|i| !i.matched).map(|i| i.text.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::RawPath;

    fn node(p: &str) -> Node {
        Node { path: RawPath(p.as_bytes().to_vec()), ..Default::default() }
    }

    #[test]
    fn original_paths() {
        assert_eq!(original_path("/srv/uploads", b"uploads"), b"/srv/uploads");
        assert_eq!(original_path("/srv/uploads", b"uploads/a/b"), b"/srv/uploads/a/b");
        assert_eq!(original_path("/", b"root/etc"), b"/etc");
    }

    #[test]
    fn includes_select_subtrees_and_their_parents() {
        let mut inc = Includes::new(&["/srv/uploads/a/".to_string(), "uploads/z.txt".to_string()]);
        let root = "/srv/uploads";
        let picked: Vec<&str> = ["uploads", "uploads/a", "uploads/a/x", "uploads/ab", "uploads/b", "uploads/z.txt"]
            .into_iter()
            .filter(|p| inc.selects(root, &node(p)))
            .collect();
        assert_eq!(picked, ["uploads", "uploads/a", "uploads/a/x", "uploads/z.txt"]);
        assert!(inc.unmatched().is_empty());
        let mut inc = Includes::new(&["/srv/other".to_string()]);
        assert!(!inc.selects(root, &node("uploads/a")));
        assert_eq!(inc.unmatched(), ["/srv/other"]);
        let mut all = Includes::new(&["/".to_string()]);
        assert!(all.selects(root, &node("uploads/a")) && all.unmatched().is_empty());
    }
}
