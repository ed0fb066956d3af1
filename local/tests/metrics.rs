//! Metrics, end to end through the `carteiro` binary with `CARTEIRO_METRICS_EMF=1`: two
//! WhatsApp texts through the sandbox (which answers sent, delivered and read as status
//! webhooks) and one unsigned webhook. The EMF lines on stdout are parsed as CloudWatch reads
//! them — namespace, dimension names, metric names, values — and `GET /metrics` (Prometheus
//! text) must show the same counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Gateway, free_addr, wait_until_up};

const API_KEY: &str = "metrics-test-api-key";

/// A series: metric name and its labels (dimensions), sorted.
type Series = (String, Vec<(String, String)>);

/// Counter totals and histogram value counts from EMF lines, as CloudWatch would sum them.
fn emf_totals(stdout: &str) -> BTreeMap<Series, f64> {
    let mut totals = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(aws) = doc.get("_aws") else {
            continue;
        };
        assert!(aws["Timestamp"].as_u64().is_some(), "no timestamp: {line}");
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Carteiro", "{line}");
        let dimensions: Vec<String> = directive["Dimensions"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect();
        let mut labels: Vec<(String, String)> = dimensions
            .iter()
            .map(|d| (d.clone(), doc[d].as_str().unwrap().to_owned()))
            .collect();
        labels.sort();
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap().to_owned();
            let value = match &doc[&name] {
                Value::Array(values) => values.len() as f64,
                v => v.as_f64().unwrap(),
            };
            *totals.entry((name, labels.clone())).or_insert(0.0) += value;
        }
    }
    totals
}

/// The value of one Prometheus series, `name{labels}`.
fn prometheus_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        let got: Vec<(&str, &str)> = rest
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let mut want = labels.to_vec();
        want.sort();
        let mut got = got;
        got.sort();
        (n == name && got == want).then(|| value.parse().ok())?
    })
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l.sort();
    (name.to_owned(), l)
}

#[tokio::test]
async fn a_dispatch_run_shows_the_same_counts_as_emf_lines_and_on_the_prometheus_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let doc = json!({
        "whatsapp": {"app_secret": "metrics-app-secret", "verify_token": "metrics-verify"},
        "api_keys": {"keys": [{"id": "app-1", "key": API_KEY}]},
    });
    std::fs::write(&secrets, doc.to_string()).unwrap();
    let addr = free_addr();
    let (out, out_path) = support::suite_log("metrics");
    let (err, _) = support::suite_log("metrics-stderr");
    let _gateway = Gateway(
        Command::new(env!("CARGO_BIN_EXE_carteiro"))
            .args(["--listen", &addr, "--secrets-file"])
            .arg(&secrets)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "error")
            .env("CARTEIRO_METRICS_EMF", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    wait_until_up(&http, &addr).await;

    let mut ids = Vec::new();
    for n in 0..2 {
        let res = http
            .post(format!("http://{addr}/v1/messages"))
            .bearer_auth(API_KEY)
            .json(&json!({"channel": "whatsapp", "to": format!("+551199999002{n}"), "text": {"body": "Olá"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let unsigned = http
        .post(format!("http://{addr}/webhooks/whatsapp"))
        .json(&json!({"object": "whatsapp_business_account", "entry": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    // The sandbox reports sent, delivered and read for each.
    for id in &ids {
        support::message_when(&http, &addr, API_KEY, id, "read").await;
    }

    // Both outlets, once the EMF lines of everything have been flushed (every second).
    let want = [
        (
            series(
                "carteiro_messages_total",
                &[("channel", "whatsapp"), ("status", "accepted")],
            ),
            2.0,
        ),
        (
            series(
                "carteiro_messages_total",
                &[("channel", "whatsapp"), ("status", "sending")],
            ),
            2.0,
        ),
        (
            series(
                "carteiro_messages_total",
                &[("channel", "whatsapp"), ("status", "sent")],
            ),
            2.0,
        ),
        (
            series(
                "carteiro_messages_total",
                &[("channel", "whatsapp"), ("status", "delivered")],
            ),
            2.0,
        ),
        (
            series(
                "carteiro_messages_total",
                &[("channel", "whatsapp"), ("status", "read")],
            ),
            2.0,
        ),
        (
            series(
                "carteiro_provider_latency_seconds",
                &[("channel", "whatsapp")],
            ),
            2.0,
        ),
        (series("carteiro_webhooks_received_total", &[]), 6.0),
        (
            series(
                "carteiro_webhooks_rejected_total",
                &[("reason", "invalid_signature")],
            ),
            1.0,
        ),
    ];
    let started = Instant::now();
    let emf = loop {
        let emf = emf_totals(&std::fs::read_to_string(&out_path).unwrap());
        if want.iter().all(|(s, v)| emf.get(s) == Some(v)) {
            break emf;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "EMF lines short of {want:?}: {emf:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Nothing failed, so no error series.
    assert!(
        !emf.keys()
            .any(|(name, _)| name == "carteiro_provider_errors_total"),
        "{emf:?}"
    );

    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for ((name, labels), value) in &want {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let name = if name.ends_with("_seconds") {
            format!("{name}_count")
        } else {
            name.clone()
        };
        assert_eq!(
            prometheus_value(&text, &name, &labels),
            Some(*value),
            "{name} {labels:?} on /metrics:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE carteiro_provider_latency_seconds histogram"),
        "{text}"
    );
}
