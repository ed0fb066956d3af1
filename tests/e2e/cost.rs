//! The request counts behind docs/cost.md: WhatsApp messages (each with Meta's three status
//! webhooks) and emails through the five Lambda handlers as deployed, against moto behind a
//! counting proxy ([`carteiro_e2e::cost`]). The figures per message must equal the table in
//! docs/cost.md: a change that adds (or saves) a request per message fails here until the
//! table, and the cost worked out from it, are updated. On a mismatch the message holds the
//! measured table, ready to paste.

use std::collections::BTreeMap;

const DOC: &str = "docs/cost.md";
const MESSAGES: usize = 20;

type Figures = BTreeMap<(String, String, String), f64>;

/// The rows of the table between the `<!-- requests per message -->` markers.
fn documented() -> Figures {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DOC);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("<!-- requests per message: begin -->")
        .expect("no table start marker in docs/cost.md");
    let end = text
        .find("<!-- requests per message: end -->")
        .expect("no table end marker in docs/cost.md");
    let mut rows = Figures::new();
    for line in text[start..end].lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 4 || cells[3].parse::<f64>().is_err() {
            continue;
        }
        rows.insert(
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                cells[2].to_owned(),
            ),
            cells[3].parse().unwrap(),
        );
    }
    rows
}

fn table(f: &Figures) -> String {
    let mut out = String::from("| flow | function | request | per message |\n|---|---|---|---|\n");
    for ((flow, function, op), n) in f {
        out.push_str(&format!("| {flow} | {function} | {op} | {} |\n", round(*n)));
    }
    out
}

fn round(n: f64) -> f64 {
    (n * 100.0).round() / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_message_are_the_ones_docs_cost_md_prices() {
    let measured = carteiro_e2e::cost::run(MESSAGES, 1).await;
    let per_message: Figures = measured
        .per_message()
        .into_iter()
        .filter(|((_, _, op), _)| op != "status read model flush")
        .map(|(k, v)| (k, round(v)))
        .collect();
    for function in ["send-api", "dispatch", "webhook-intake", "inbound-events"] {
        println!(
            "{function}: median {:?} per invocation of {} message(s)",
            measured.median(function).unwrap(),
            measured.per_invocation[function]
        );
    }
    for (flow, op) in [
        ("whatsapp", "DynamoDB PutItem"),
        ("email", "DynamoDB PutItem"),
    ] {
        println!(
            "{flow}: mean {op} body {} bytes",
            measured.mean_bytes(flow, op).unwrap_or(0)
        );
    }
    let documented = documented();
    // Contention between concurrent workers on one document (the sender's bucket, one
    // record's three statuses in one batch) adds a retried read and write now and then; a
    // request more per message moves a figure by 1.
    let same_rows = per_message.keys().eq(documented.keys());
    let close = per_message
        .iter()
        .zip(&documented)
        .all(|((_, a), (_, b))| (a - b).abs() < 0.5);
    assert!(
        same_rows && close,
        "requests per message differ from {DOC}; measured:\n{}\ndocumented:\n{}",
        table(&per_message),
        table(&documented)
    );
}
