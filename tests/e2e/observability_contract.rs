//! The alarms and the dashboard in template.yaml watch metrics by name: every `carteiro_*`
//! name the template uses must be one the code records (shared/src/observability/metrics.rs),
//! or the alarm would watch a metric that never arrives and never fire.

use std::collections::BTreeSet;
use std::path::Path;

/// `carteiro_[a-z0-9_]+` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("carteiro_") {
        if text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            continue;
        }
        let rest = &text[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        names.insert(rest[..end].to_owned());
    }
    names
}

#[test]
fn every_metric_the_template_watches_is_recorded_by_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let code = std::fs::read_to_string(root.join("shared/src/observability/metrics.rs")).unwrap();
    let recorded: BTreeSet<String> = code
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"carteiro_"))
        .flat_map(metric_names)
        .collect();
    let watched = metric_names(&template);
    assert!(
        watched.len() >= 5,
        "the template watches too few metrics: {watched:?}"
    );
    let unknown: Vec<_> = watched.difference(&recorded).collect();
    assert!(
        unknown.is_empty(),
        "template.yaml watches metrics the code never records: {unknown:?} (recorded: {recorded:?})"
    );
}
