//! `GET /v1/status`, the status page and the alerts, through the `carteiro` binary.
//!
//! - Against a wiremock Graph API whose `debug_token` says the token expires in 10 days and
//!   whose sends all fail: the token shows as a warning with the `token_expiring` alert (in
//!   the report, on the page, and raised once in the JSON log), and the failures show as an
//!   open circuit and an error rate within one probe interval.
//! - The page in headless Chromium (Debian's package, `CARTEIRO_CHROMIUM`): each integration's
//!   state and a laid-out chart are found in the DOM, and a screenshot is kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{JsonGateway, wait_until_up};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_KEY: &str = "status-test-api-key";
const PNID: &str = "106540352242922";
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

fn start(whatsapp: Value) -> JsonGateway {
    let secrets = json!({
        "whatsapp": whatsapp,
        "api_keys": {"keys": [{"id": "app-1", "key": API_KEY}]},
    });
    JsonGateway::start(
        "status",
        &secrets,
        // One attempt each: the retries would only add calls to count.
        &[
            ("CARTEIRO_PROBE_INTERVAL", "1s"),
            ("CARTEIRO_RETRY_SCHEDULE", "0s"),
        ],
    )
}

async fn status(http: &reqwest::Client, addr: &str) -> Value {
    let res = http
        .get(format!("http://{addr}/v1/status"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn integration<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn has_alert(report: &Value, code: &str) -> bool {
    report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["code"] == code)
}

/// The report once `ready` holds, polled for `within`.
async fn status_when(
    http: &reqwest::Client,
    addr: &str,
    within: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let report = status(http, addr).await;
        if ready(&report) {
            return report;
        }
        assert!(
            started.elapsed() < within,
            "not within {within:?}: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_events(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn injected_failures_and_an_expiring_token_show_within_one_probe_interval() {
    let graph = MockServer::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "is_valid": true, "type": "SYSTEM_USER", "expires_at": now + 10 * 86_400,
            "scopes": ["whatsapp_business_management", "whatsapp_business_messaging"]
        }})))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v23.0/{PNID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "display_phone_number": "+1 555-0100", "quality_rating": "GREEN",
            "messaging_limit_tier": "TIER_1K", "throughput": {"level": "STANDARD"}
        })))
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PNID}/messages")))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {
            "message": "An unknown error occurred", "type": "OAuthException", "code": 1,
            "fbtrace_id": "AbCdEf"
        }})))
        .mount(&graph)
        .await;
    let running = start(json!({
        "access_token": "EAAG-status-token", "phone_number_id": PNID,
        "app_secret": "status-app-secret", "verify_token": "vt", "graph_base_url": graph.uri()
    }));
    let addr = running.addr.as_str();
    let http = reqwest::Client::new();
    wait_until_up(&http, addr).await;

    let unauthorised = http
        .get(format!("http://{addr}/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    let body: Value = unauthorised.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");

    // The token: a warning and the alert, from the first probe round.
    let report = status_when(&http, addr, PROBE_INTERVAL * 5, |r| {
        has_alert(r, "token_expiring")
    })
    .await;
    let whatsapp = integration(&report, "whatsapp");
    assert_eq!(whatsapp["state"], "degraded", "{whatsapp:#}");
    let token = whatsapp["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "whatsapp token")
        .unwrap();
    assert_eq!(token["verdict"], "warning", "{token}");
    let days = token["facts"]["expires_in_days"].as_f64().unwrap();
    assert!((9.9..=10.0).contains(&days), "{token}");
    let phone = whatsapp["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "whatsapp phone number")
        .unwrap();
    assert_eq!(phone["facts"]["messaging_limit_tier"], "TIER_1K");
    assert_eq!(whatsapp["circuit"], "closed");

    // Twelve sends, each failing: the breaker opens (10 calls, 70 %), and the figures follow.
    for n in 0..12 {
        let res = http
            .post(format!("http://{addr}/v1/messages"))
            .bearer_auth(API_KEY)
            .json(&json!({"channel": "whatsapp", "to": format!("+55119888800{n:02}"), "text": {"body": "Olá"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    // Wait until the Graph API has taken the calls that open the breaker...
    let started = Instant::now();
    while graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
        < 10
    {
        assert!(started.elapsed() < Duration::from_secs(20), "no sends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...then the status shows it within one probe interval (and the one-second flush).
    let report = status_when(&http, addr, PROBE_INTERVAL + Duration::from_secs(2), |r| {
        let w = integration(r, "whatsapp");
        w["circuit"] == "open" && w["last_5m"]["failed"].as_u64() >= Some(10)
    })
    .await;
    let whatsapp = integration(&report, "whatsapp");
    assert_eq!(whatsapp["state"], "down", "{whatsapp:#}");
    assert_eq!(report["status"], "down");
    assert!(
        whatsapp["last_5m"]["error_rate"].as_f64().unwrap() >= 0.99,
        "{whatsapp:#}"
    );
    assert_eq!(whatsapp["last_error"], "1", "{whatsapp:#}");
    assert!(whatsapp["last_failure_at"].is_string());
    assert!(whatsapp["last_5m"]["latency_p95_ms"].as_u64().is_some());
    for code in ["circuit_open", "error_rate", "token_expiring"] {
        assert!(has_alert(&report, code), "{code}: {report:#}");
    }

    // The page says the same.
    let page = http
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"data-integration="whatsapp" data-state="down""#),
        "{html}"
    );
    for code in ["circuit_open", "token_expiring"] {
        assert!(html.contains(&format!(r#"data-alert="{code}""#)), "{code}");
    }

    // Each alert raised once in the log, as an event with its code, by the next probe round.
    let started = Instant::now();
    loop {
        let raised: Vec<String> = log_events(&running.log)
            .iter()
            .filter(|e| {
                e["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("alert raised"))
            })
            .map(|e| e["fields"]["alert"].as_str().unwrap().to_owned())
            .collect();
        if raised.contains(&"circuit_open".to_owned()) {
            assert_eq!(
                raised.iter().filter(|a| *a == "token_expiring").count(),
                1,
                "{raised:?}"
            );
            break;
        }
        assert!(started.elapsed() < PROBE_INTERVAL * 5, "{raised:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&running.log).unwrap();
    assert!(
        !text.contains("EAAG-status-token"),
        "the token reached the log"
    );
    assert!(
        !text.contains("status-app-secret"),
        "the app secret reached the log"
    );
}

fn chromium() -> String {
    std::env::var("CARTEIRO_CHROMIUM")
        .expect("CARTEIRO_CHROMIUM is not set: run scripts/test, or eval \"$(scripts/test --env)\"")
}

fn browse(url: &str, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=412,1500",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_status_page_renders_in_headless_chromium() {
    // The sandboxes stand in for Meta and SMTP; their calls fill the charts.
    let running = start(json!({"app_secret": "page-app-secret", "verify_token": "vt"}));
    let addr = running.addr.as_str();
    let http = reqwest::Client::new();
    wait_until_up(&http, addr).await;
    for n in 0..3 {
        let res = http
            .post(format!("http://{addr}/v1/messages"))
            .bearer_auth(API_KEY)
            .json(&json!({"channel": "whatsapp", "to": format!("+55119777700{n:02}"), "text": {"body": "Olá"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    let res = http
        .post(format!("http://{addr}/v1/messages"))
        .bearer_auth(API_KEY)
        .json(&json!({"channel": "email", "to": "ana@example.com", "subject": "Oi", "text": "Olá"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    status_when(&http, addr, Duration::from_secs(20), |r| {
        integration(r, "whatsapp")["last_1h"]["calls"] == 3
            && integration(r, "smtp:primary")["last_1h"]["calls"] == 1
    })
    .await;

    let url = format!("http://{addr}/status");
    let dom = browse(&url, &["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for (name, state) in [("whatsapp", "ok"), ("smtp:primary", "ok")] {
        assert!(
            dom_text.contains(&format!(
                r#"data-integration="{name}" data-state="{state}""#
            )),
            "{name} {state} not in the DOM:\n{dom_text}"
        );
    }
    // The script ran after layout and found each chart laid out with a width.
    let widths: Vec<u32> = dom_text
        .match_indices("data-rendered=\"")
        .map(|(i, m)| {
            let rest = &dom_text[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert!(widths.len() >= 2, "no rendered chart:\n{dom_text}");
    assert!(widths.iter().all(|w| *w > 100), "{widths:?}");
    assert!(
        dom_text.contains(r#"<rect class="ok""#),
        "no bars in the chart"
    );

    let artefacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let taken = browse(&url, &[&format!("--screenshot={}", shot.display())]);
    assert!(
        taken.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(
        png.len() > 10_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
    println!("status page screenshot: {}", shot.display());
}
