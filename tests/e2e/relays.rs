//! SMTP relays on the local runtime: each relay of the `smtp` secret has its own rate (held for
//! every instance) and its own circuit breaker, and a fallback may name another relay, so a
//! message the first relay refused goes out through the second.

use carteiro_e2e::local::{default_secrets, spawn_app_configured, spawn_app_with};
use carteiro_e2e::smtp::SmtpServer;
use serde_json::{Value, json};
use std::time::Duration;

fn relay_secrets(primary: &SmtpServer, backup: Option<&SmtpServer>, rate: Option<Value>) -> Value {
    let mut secrets = default_secrets();
    let mut smtp = json!({"smtp_host": "127.0.0.1", "smtp_port": primary.port, "from_email": "Loja <loja@example.com>"});
    if let Some(rate) = rate {
        smtp["rate_limit"] = rate;
    }
    if let Some(b) = backup {
        smtp["relays"] = json!([{"id": "backup", "smtp_host": "127.0.0.1", "smtp_port": b.port}]);
    }
    secrets["smtp"] = smtp;
    secrets
}

fn email(n: usize) -> Value {
    json!({"channel": "email", "to": ["ana@example.com"], "subject": format!("Pedido {n}"), "text": "Olá"})
}

#[tokio::test]
async fn a_relays_rate_is_never_exceeded_in_any_second() {
    let smtp = SmtpServer::start();
    // 4 a second, bursts of 1: at most 5 in any one second.
    let secrets = relay_secrets(&smtp, None, Some(json!({"per_second": 4, "burst": 1})));
    let app = spawn_app_configured(secrets, |c| c.settings.dispatch.concurrency = 10).await;
    let total = 13;
    let mut ids = Vec::new();
    for n in 0..total {
        let res = app.send(&email(n), None).await;
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let m = app
            .message_when_within(id, Duration::from_secs(20), |m| m["status"] == "sent")
            .await;
        assert_eq!(
            m["attempts"].as_array().unwrap().len(),
            1,
            "a wait is not an attempt: {m}"
        );
    }
    let mut at: Vec<f64> = smtp
        .received(total)
        .iter()
        .map(|r| r["received_at"].as_f64().unwrap())
        .collect();
    at.sort_by(f64::total_cmp);
    let most_in_a_second = (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t - at[i] < 1.0).count())
        .max()
        .unwrap();
    assert!(
        most_in_a_second <= 5,
        "{most_in_a_second} in one second: {at:?}"
    );
    let span = at[at.len() - 1] - at[0];
    assert!(
        span >= 2.4,
        "13 messages at 4/s take at least 3 s less the burst: {span:.2} s"
    );
}

#[tokio::test]
async fn a_fallback_through_another_relay_delivers_what_the_first_refused() {
    let primary =
        SmtpServer::start_failing(&[("RCPT", "ana@example.com", "550 5.7.1 relaying denied")]);
    let backup = SmtpServer::start();
    let app = spawn_app_with(relay_secrets(&primary, Some(&backup), None)).await;
    let mut body = email(1);
    let mut via_backup = email(1);
    via_backup["relay"] = json!("backup");
    body["fallback"] = json!([via_backup]);
    let res = app.send(&body, None).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let parent = app
        .message_when_within(&id, Duration::from_secs(10), |m| {
            m["delivered_by"].is_string() && m["delivered_by"] != m["id"]
        })
        .await;
    assert_eq!(parent["status"], "failed", "{parent}");
    assert_eq!(parent["last_error"]["code"], "550");
    let got = backup.received(1);
    assert_eq!(got[0]["rcpt_tos"], json!(["ana@example.com"]));
    assert!(
        got[0]["headers"].to_string().contains("Pedido 1"),
        "{}",
        got[0]["headers"]
    );

    // A relay the secret does not have: failed for good, with a code that says so.
    let mut unknown = email(2);
    unknown["relay"] = json!("nowhere");
    let res = app.send(&unknown, None).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.message_when(&id, |m| m["status"] == "failed").await;
    assert_eq!(
        failed["last_error"]["code"], "relay_not_configured",
        "{failed}"
    );
}
