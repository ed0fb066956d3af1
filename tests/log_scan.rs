//! The log scan: every log line the whole suite wrote (`CARTEIRO_TEST_LOG_DIR`: the gateways
//! the local tests run, the e2e and shared integration test binaries' own subscribers) is
//! searched for every secret the tests use and for unmasked phone numbers. scripts/test runs it
//! after the suite (`cargo test -p carteiro-e2e --test log_scan`); it is not part of
//! `cargo test --workspace`, which would run it before the lines it reads exist.
//!
//! The secrets are found in the tests' own sources — the JSON secret documents' credential
//! fields, `*_KEY`/`*_TOKEN`/`*_SECRET`/`*_PASSWORD` constants, bearer keys, `whsec_` signing
//! secrets and the SMTP test servers' passwords — so a new test's secret is covered without a
//! list to keep.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use regex::Regex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "json") {
            out.push(path);
        }
    }
}

/// The secret values the tests' sources hold.
fn test_secrets() -> BTreeSet<String> {
    let patterns = [
        r#""(?:access_token|app_secret|previous_app_secret|verify_token|smtp_password|password|key|secret)"\s*:\s*"([^"\\]{6,})""#,
        r#"const\s+[A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD)[A-Z0-9_]*\s*:\s*&str\s*=\s*"([^"\\]{6,})""#,
        r#"bearer_auth\("([^"\\]{6,})"\)"#,
        r#""Bearer ([^"\\ ]{6,})""#,
        r#"(whsec_[A-Za-z0-9+/=]{16,})"#,
        r#""--auth",\s*"[^":]+:([^"\\]{6,})""#,
        r#"with_auth\([^;]*?"[^"]*",\s*"([^"\\]{6,})",?\s*\)"#,
        r#"auth: Some\(\("[^"]*",\s*"([^"\\]{6,})"\)\)"#,
    ]
    .map(|p| Regex::new(p).unwrap());
    let mut files = Vec::new();
    for dir in ["tests/e2e", "tests/src", "local/tests", "shared/tests"] {
        sources(&root().join(dir), &mut files);
    }
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for re in &patterns {
            for c in re.captures_iter(&text) {
                // `{TOKEN}` and the like are format! placeholders, not values.
                if !c[1].contains('{') {
                    found.insert(c[1].to_owned());
                }
            }
        }
    }
    found
}

/// Where `line` shows a secret or an unmasked phone number.
fn leaks(line: &str, secrets: &BTreeSet<String>, phone: &Regex) -> Vec<String> {
    let mut out: Vec<String> = secrets
        .iter()
        .filter(|s| line.contains(s.as_str()))
        .map(|s| format!("secret {s:?}"))
        .collect();
    out.extend(
        phone
            .find_iter(line)
            .map(|m| format!("phone number {}", m.as_str())),
    );
    out
}

fn phone_pattern() -> Regex {
    // `+` and 10–15 digits, not inside a longer run of word characters.
    Regex::new(r"(?:^|[^0-9A-Za-z_])(\+[0-9]{10,15})(?:[^0-9A-Za-z_]|$)").unwrap()
}

#[test]
fn no_log_line_of_the_suite_shows_a_test_secret_or_a_phone_number() {
    let dir = carteiro_e2e::logs::dir()
        .expect("CARTEIRO_TEST_LOG_DIR is not set: scripts/test runs this after the suite");
    let secrets = test_secrets();
    assert!(
        secrets.len() >= 20,
        "too few test secrets found in the sources: {secrets:?}"
    );
    for known in [
        "EAAG-trace-token",
        "trace-app-secret",
        "right-password",
        "ses-password",
    ] {
        assert!(
            secrets.contains(known),
            "{known} not found among {secrets:?}"
        );
    }
    let phone = phone_pattern();
    let mut lines_by_source = std::collections::BTreeMap::<&str, usize>::new();
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = ["e2e-", "it-", "local-"]
            .into_iter()
            .find(|p| name.starts_with(p))
            .unwrap_or("other");
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for (n, line) in text.lines().enumerate() {
            *lines_by_source.entry(source).or_default() += 1;
            for leak in leaks(line, &secrets, &phone) {
                hits.push(format!("{name}:{}: {leak}: {line}", n + 1));
            }
        }
    }
    // Every kind of source wrote lines: a capture that silently broke would pass otherwise.
    for (source, at_least) in [("e2e-", 1_000), ("it-", 100), ("local-", 1_000)] {
        let n = lines_by_source.get(source).copied().unwrap_or(0);
        assert!(
            n >= at_least,
            "only {n} log lines from {source}* in {} ({lines_by_source:?})",
            dir.display()
        );
    }
    assert!(
        hits.is_empty(),
        "{} leak(s) in the suite's logs:\n{}",
        hits.len(),
        hits.iter().take(50).cloned().collect::<Vec<_>>().join("\n")
    );
    println!(
        "scanned {:?} log lines for {} test secrets: clean",
        lines_by_source,
        secrets.len()
    );
}

#[test]
fn the_scan_finds_what_it_looks_for() {
    let secrets: BTreeSet<String> = ["EAAG-planted".to_owned()].into();
    let phone = phone_pattern();
    assert_eq!(
        leaks(r#"{"token":"EAAG-planted"}"#, &secrets, &phone).len(),
        1
    );
    assert_eq!(leaks("to +5511999990001 now", &secrets, &phone).len(), 1);
    assert!(leaks("to +5511*******01, ts 1764600000000", &secrets, &phone).is_empty());
    assert!(leaks(r#"{"wamid":"wamid.HBgN+5511999990001x"}"#, &secrets, &phone).is_empty());
}
