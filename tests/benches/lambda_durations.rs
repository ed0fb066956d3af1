//! How long each Lambda handler runs per invocation, for docs/cost.md: the cost run
//! ([`carteiro_e2e::cost`]) — WhatsApp messages with their three status webhooks and emails
//! through the five handlers as deployed, dispatch at its deployed concurrency of 10 — against
//! moto on a loopback port, wall time per invocation. Every AWS request is a round trip to a
//! local Python emulator, slower than DynamoDB: the figures are an upper bound for everything
//! but the providers' latency (the Graph API stand-in answers at once).
//!
//! `cargo bench -p carteiro-e2e --bench lambda_durations -- --bench` (100 messages of each
//! kind); without `--bench` (as `cargo test --all-targets` runs it) 3, as a smoke test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "–".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 100 } else { 3 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("no runtime: {e}"));
    let measured = runtime.block_on(carteiro_e2e::cost::run(n, 10));
    println!(
        "lambda durations, {n} WhatsApp messages (3 statuses each) and {n} emails, against moto"
    );
    println!("| function | invocations | messages each | median | p95 | median per message |");
    println!("|---|---|---|---|---|---|");
    for function in ["send-api", "dispatch", "webhook-intake", "inbound-events"] {
        let count = measured.durations.get(function).map_or(0, Vec::len);
        let each = measured
            .per_invocation
            .get(function)
            .copied()
            .unwrap_or(1)
            .max(1);
        let median = measured.median(function);
        println!(
            "| {function} | {count} | {each} | {} | {} | {} |",
            ms(median),
            ms(measured.quantile(function, 0.95)),
            ms(median.map(|d| d / u32::try_from(each).unwrap_or(1)))
        );
        assert!(count > 0, "{function} never ran");
    }
}
