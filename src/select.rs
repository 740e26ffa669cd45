//! Which server files a `get` means: plain names pass through unchanged;
//! glob patterns (`*.log`, `logs/**/*.txt`) and, with `-r`, folders expand
//! against the server's recursive listing. A pattern or folder that matches
//! nothing is an error naming it.

use std::collections::{HashMap, HashSet};

use globset::GlobBuilder;

use crate::protocol::{Entry, EntryKind};

/// Characters that make a name a glob pattern.
const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

pub fn is_pattern(name: &str) -> bool {
    name.contains(GLOB_CHARS)
}

/// Whether `name` (slashes trimmed) means the whole server: "" or "."
/// (with -r).
pub fn is_root(name: &str) -> bool {
    name.is_empty() || name == "."
}

/// Whether expanding `names` needs the server's listing.
pub fn needs_listing(names: &[String], recursive: bool) -> bool {
    recursive || names.iter().any(|n| is_pattern(n))
}

/// Names listed one per line (`--files-from`): blank lines and lines
/// starting with `#` are skipped, a trailing CR is dropped; anything else,
/// spaces included, is part of the name.
pub fn read_names(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The files to fetch, and the names that could not be turned into any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub files: Vec<String>,
    /// For each file, the index (in the names expanded) of the name that
    /// first selected it.
    pub origin: Vec<usize>,
    /// (name as given, why it selects nothing)
    pub errors: Vec<(String, String)>,
}

/// Expands `names` against `listing` (recursive, from the root). Without a
/// listing (`None`), names pass through as they are.
pub fn expand(names: &[String], recursive: bool, listing: Option<&[Entry]>) -> Selection {
    let mut sel = Selection::default();
    let mut seen = HashSet::new();
    let mut push = |sel: &mut Selection, f: &str, at: usize| {
        if seen.insert(f.to_string()) {
            sel.files.push(f.to_string());
            sel.origin.push(at);
        }
    };
    let Some(listing) = listing else {
        for (i, n) in names.iter().enumerate() {
            // "sub/file/" means "sub/file".
            push(&mut sel, n.trim_end_matches('/'), i);
        }
        return sel;
    };
    // One index for the whole expansion: every path once, sorted, so the
    // files under a folder are one contiguous run found by binary search,
    // and exact names are found by hash. A pattern like `-r '*'` against
    // tens of thousands of folders stays O(n log n) instead of scanning
    // the whole listing once per folder.
    let mut sorted: Vec<&Entry> = listing.iter().collect();
    sorted.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let by_path: HashMap<&str, &Entry> = listing.iter().map(|e| (e.path.as_str(), e)).collect();
    let files_under = |dir: &str| -> Vec<&str> {
        let prefix = format!("{dir}/");
        let start = sorted.partition_point(|e| e.path.as_str() < prefix.as_str());
        sorted[start..]
            .iter()
            .take_while(|e| e.path.starts_with(&prefix))
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.path.as_str())
            .collect()
    };
    for (i, raw) in names.iter().enumerate() {
        let name = raw.trim_end_matches('/');
        if recursive && is_root(name) {
            let files: Vec<&str> = listing
                .iter()
                .filter(|e| e.kind == EntryKind::File)
                .map(|e| e.path.as_str())
                .collect();
            if files.is_empty() {
                sel.errors
                    .push((raw.clone(), "the server hosts no files".into()));
            }
            for f in files {
                push(&mut sel, f, i);
            }
            continue;
        }
        let exact = by_path.get(name);
        match exact {
            Some(e) if e.kind == EntryKind::File => push(&mut sel, name, i),
            Some(_) if !recursive => sel.errors.push((
                raw.clone(),
                "not a regular file (use -r to download folders)".into(),
            )),
            Some(_) => {
                let files = files_under(name);
                if files.is_empty() {
                    sel.errors
                        .push((raw.clone(), "folder holds no files".into()));
                }
                for f in files {
                    push(&mut sel, f, i);
                }
            }
            None if is_pattern(name) => {
                let glob = match GlobBuilder::new(name)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                {
                    Ok(g) => g.compile_matcher(),
                    Err(e) => {
                        sel.errors
                            .push((raw.clone(), format!("invalid pattern: {}", e.kind())));
                        continue;
                    }
                };
                let mut matched = 0;
                for e in listing.iter().filter(|e| glob.is_match(&e.path)) {
                    match e.kind {
                        EntryKind::File => {
                            matched += 1;
                            push(&mut sel, &e.path, i);
                        }
                        EntryKind::Dir if recursive => {
                            for f in files_under(&e.path) {
                                matched += 1;
                                push(&mut sel, f, i);
                            }
                        }
                        EntryKind::Dir => {}
                    }
                }
                if matched == 0 {
                    sel.errors.push((
                        raw.clone(),
                        "no files on the server match this pattern".into(),
                    ));
                }
            }
            // Not listed: let the server give the authoritative answer.
            None => push(&mut sel, name, i),
        }
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            size: 1,
            mtime: 0,
            mtime_nanos: 0,
            mode: 0o644,
            digest: None,
        }
    }

    fn listing() -> Vec<Entry> {
        use EntryKind::*;
        vec![
            e("a.log", File),
            e("b.txt", File),
            e("logs", Dir),
            e("logs/2026", Dir),
            e("logs/2026/x.txt", File),
            e("logs/2026/y.log", File),
            e("logs/top.txt", File),
            e("empty", Dir),
            e("file[1].txt", File),
        ]
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn star_does_not_cross_folders_but_double_star_does() {
        let l = listing();
        let s = expand(&names(&["*.log"]), false, Some(&l));
        assert_eq!(s.files, ["a.log"]);
        let s = expand(&names(&["logs/**/*.txt"]), false, Some(&l));
        assert_eq!(s.files, ["logs/2026/x.txt", "logs/top.txt"]);
        let s = expand(&names(&["**/*.log"]), false, Some(&l));
        assert_eq!(s.files, ["a.log", "logs/2026/y.log"]);
    }

    #[test]
    fn folders_need_r_and_expand_recursively() {
        let l = listing();
        let s = expand(&names(&["logs"]), false, Some(&l));
        assert!(s.files.is_empty());
        assert_eq!(s.errors[0].0, "logs");
        assert!(s.errors[0].1.contains("use -r"));
        let s = expand(&names(&["logs/", "b.txt"]), true, Some(&l));
        assert_eq!(
            s.files,
            [
                "logs/2026/x.txt",
                "logs/2026/y.log",
                "logs/top.txt",
                "b.txt"
            ]
        );
        let s = expand(&names(&["empty"]), true, Some(&l));
        assert_eq!(s.errors.len(), 1);
        // "." (or "/", or "") with -r: the whole server.
        let s = expand(&names(&["/"]), true, Some(&l));
        assert_eq!(s.files.len(), 6);
        assert_eq!(expand(&names(&["."]), true, Some(&l)).files, s.files);
    }

    #[test]
    fn unmatched_pattern_is_named_and_plain_names_pass_through() {
        let l = listing();
        let s = expand(
            &names(&["*.zip", "nope.txt", "file[1].txt"]),
            false,
            Some(&l),
        );
        assert_eq!(s.files, ["nope.txt", "file[1].txt"]);
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].0, "*.zip");
        assert!(s.errors[0].1.contains("no files"));
        let s = expand(&names(&["a[", "a.log", "a.log"]), false, Some(&l));
        assert_eq!(s.files, ["a.log"]);
        assert!(s.errors[0].1.contains("invalid pattern"));
    }

    /// `-r '*'` against a wide tree: every folder expands against one
    /// index. A scan of the whole listing per folder (the old way) takes
    /// hours here; this takes well under a second.
    #[test]
    fn a_pattern_over_many_folders_expands_without_rescanning_the_listing() {
        let n = 200_000;
        let mut l = Vec::with_capacity(2 * n);
        for i in 0..n {
            l.push(e(&format!("d{i:06}"), EntryKind::Dir));
            l.push(e(&format!("d{i:06}/f"), EntryKind::File));
        }
        // A folder whose name is a prefix of another's holds only its own.
        l.push(e("d000001x/g", EntryKind::File));
        l.push(e("d000001x", EntryKind::Dir));
        let s = expand(&names(&["*"]), true, Some(&l));
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.files.len(), n + 1);
        assert_eq!(s.files[1], "d000001/f");
        assert!(s.files.contains(&"d000001x/g".to_string()));
    }

    #[test]
    fn without_listing_names_pass_through_deduplicated() {
        let s = expand(&names(&["x", "y", "x"]), false, None);
        assert_eq!(s.files, ["x", "y"]);
        assert!(!needs_listing(&names(&["x"]), false));
        assert!(needs_listing(&names(&["*.x"]), false));
        assert!(needs_listing(&names(&["x"]), true));
    }
}
