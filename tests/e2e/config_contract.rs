//! The README's configuration tables are the contract operators read: every `CARTEIRO_*`
//! variable the code reads is listed there, and every listed one is read somewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `CARTEIRO_[A-Z0-9_]+` names quoted in `text` (string literals in code).
fn quoted_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("\"CARTEIRO_") {
        let rest = &text[i + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if rest[end..].starts_with('"') {
            names.insert(rest[..end].to_owned());
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_variable_read_is_documented_and_every_documented_one_is_read() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["shared/src", "local/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    for function in std::fs::read_dir(root.join("functions")).unwrap() {
        rust_files(&function.unwrap().path().join("src"), &mut files);
    }
    let mut read = BTreeSet::new();
    for f in &files {
        read.extend(quoted_names(&std::fs::read_to_string(f).unwrap()));
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let documented: BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with('|'))
        .flat_map(|l| quoted_names(&l.replace('`', "\"")))
        .collect();
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty(),
        "read by the code but missing from README's configuration tables: {undocumented:?}"
    );
    assert!(
        unread.is_empty(),
        "listed in README's configuration tables but read nowhere: {unread:?}"
    );
    assert!(read.len() > 20, "the scan found too little: {read:?}");
}
