//! Email through the whole local path over HTTP: send API → embedded queue → dispatch → a real
//! SMTP server (aiosmtpd) → the record `sent` with the Message-ID as provider id.

use carteiro_e2e::local::{default_secrets, spawn_app_with};
use carteiro_e2e::smtp::SmtpServer;
use serde_json::{Value, json};

fn header<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))?[1]
        .as_str()
}

#[tokio::test]
async fn local_templated_email_with_an_attachment_is_delivered_over_smtp() {
    let smtp = SmtpServer::start();
    let mut secrets = default_secrets();
    secrets["smtp"] = json!({
        "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "from_email": "Loja <loja@example.com>", "use_ssl": false
    });
    let app = spawn_app_with(secrets).await;
    let body = json!({
        "channel": "email",
        "to": ["ana@example.com"],
        "bcc": ["audit@example.com"],
        "template": {"name": "welcome", "variables": {"name": "<Ana>", "app_name": "Loja"}},
        "attachments": [{"filename": "nota.txt", "content_type": "text/plain", "content_base64": "T2zDoQ=="}]
    });
    let res = app.send(&body, Some("welcome-ana")).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = app.message_when(&id, |m| m["status"] == "sent").await;

    let got = &smtp.received(1)[0];
    assert_eq!(
        got["rcpt_tos"],
        json!(["ana@example.com", "audit@example.com"])
    );
    assert_eq!(header(got, "To"), Some("ana@example.com"));
    assert_eq!(header(got, "Bcc"), None);
    assert_eq!(
        header(got, "Message-ID"),
        record["provider_message_id"].as_str()
    );
    assert!(header(got, "Subject").unwrap().contains("Loja"));
    let parts = got["parts"].as_array().unwrap();
    let html = parts
        .iter()
        .find(|p| p["content_type"] == "text/html")
        .unwrap();
    assert!(
        html["text"].as_str().unwrap().contains("&lt;Ana&gt;"),
        "HTML variables are escaped"
    );
    let attachment = parts.iter().find(|p| p["filename"] == "nota.txt").unwrap();
    assert_eq!(attachment["content_base64"], "T2zDoQ==");
}

#[tokio::test]
async fn local_email_without_an_smtp_secret_is_kept_in_the_sandbox_outbox() {
    let app = carteiro_e2e::local::spawn_app().await;
    let body = json!({
        "channel": "email", "to": ["ana@example.com"], "bcc": ["audit@example.com"],
        "subject": "Pedido 42", "text": "Olá", "html": "<p>Olá</p>"
    });
    let res = app.send(&body, None).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = app.message_when(&id, |m| m["status"] == "sent").await;
    assert_eq!(record["attempts"][0]["provider_status"], "sandbox");

    let outbox = app.sandbox_outbox().await;
    let email = &outbox["emails"][0];
    assert_eq!(email["message_id"], record["provider_message_id"]);
    assert_eq!(
        email["recipients"],
        json!(["ana@example.com", "audit@example.com"])
    );
    let raw = email["raw"].as_str().unwrap();
    assert!(raw.contains("Subject: Pedido 42"), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(
        !raw.contains("audit@example.com"),
        "Bcc must not appear in the message: {raw}"
    );
}
