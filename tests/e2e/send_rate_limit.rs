//! Per-API-key rate limits on `POST /v1/messages`: the bucket configured on the key in the
//! `api_keys` secret, 429 `rate_limited` with `Retry-After` over it, and the `RateLimit-*`
//! headers on every answer to a limited key.

use carteiro_e2e::local::spawn_app_with;
use carteiro_e2e::webhooks::{API_KEY, API_KEY_ID, OTHER_API_KEY, whatsapp_secret_json};
use serde_json::{Value, json};

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_limited_key_gets_429_with_retry_after_and_ratelimit_headers() {
    let app = spawn_app_with(json!({
        "whatsapp": whatsapp_secret_json(),
        "api_keys": {"keys": [
            {"id": API_KEY_ID, "key": API_KEY, "rate_limit": {"per_second": 0.5, "burst": 2}},
            {"id": "other-app", "key": OTHER_API_KEY},
        ]},
    }))
    .await;
    let body = json!({"channel": "whatsapp", "to": "+5511999990081", "text": {"body": "Olá"}});
    let first = app.send(&body, None).await;
    assert_eq!(first.status(), 202);
    assert_eq!(header(&first, "ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header(&first, "ratelimit-remaining").as_deref(), Some("1"));
    let second = app.send(&body, None).await;
    assert_eq!(second.status(), 202);
    assert_eq!(header(&second, "ratelimit-remaining").as_deref(), Some("0"));
    // Two tokens at 0.5 a second: full again within 4 s.
    let reset: u64 = header(&second, "ratelimit-reset").unwrap().parse().unwrap();
    assert!((3..=4).contains(&reset), "reset {reset}");

    let third = app.send(&body, None).await;
    assert_eq!(third.status(), 429);
    assert_eq!(header(&third, "retry-after").as_deref(), Some("2"));
    assert_eq!(header(&third, "ratelimit-remaining").as_deref(), Some("0"));
    let err: Value = third.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limited");
    // Nothing was created for the refused request.
    app.wait_until_idle().await;
    assert_eq!(
        app.sandbox_outbox().await["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Another key has no limit and no headers.
    let res = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(OTHER_API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(header(&res, "ratelimit-limit"), None);

    // After Retry-After, the key may send again.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(app.send(&body, None).await.status(), 202);
}
