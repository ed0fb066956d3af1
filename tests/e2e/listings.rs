//! `GET /v1/messages` and `GET /v1/conversations/{wa_id}/messages` on the local runtime:
//! cursor-paginated, newest first, RFC 3339 times, only the calling key's messages.

use carteiro_e2e::local::{TestApp, spawn_app};
use carteiro_e2e::webhooks::{
    API_KEY, APP_SECRET, OTHER_API_KEY, inbound_text_payload, new_wamid, sign,
};
use serde_json::{Value, json};

async fn get(app: &TestApp, path: &str, key: &str) -> (u16, Value) {
    let res = app
        .http
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_keys_messages_and_a_conversation_are_listed_newest_first() {
    let app = spawn_app().await;
    let to = "+5511999990071";
    let mut sent = Vec::new();
    for i in 0..3 {
        let res = app
            .send(
                &json!({"channel": "whatsapp", "to": to, "text": {"body": format!("n{i}")}}),
                None,
            )
            .await;
        sent.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let email = app
        .send(
            &json!({"channel": "email", "to": ["ana@example.com"], "subject": "Oi", "text": "Olá"}),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_until_idle().await;

    let (status, page) = get(&app, "/v1/messages?limit=2", API_KEY).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [email.as_str(), sent[2].as_str()]);
    assert!(
        page["messages"][0]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = get(
        &app,
        &format!("/v1/messages?limit=2&cursor={cursor}"),
        API_KEY,
    )
    .await;
    let ids: Vec<&str> = rest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [sent[1].as_str(), sent[0].as_str()]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, emails) = get(&app, "/v1/messages?channel=email", API_KEY).await;
    assert_eq!(emails["messages"].as_array().unwrap().len(), 1);
    let (_, none) = get(&app, "/v1/messages", OTHER_API_KEY).await;
    assert_eq!(
        none["messages"],
        json!([]),
        "another key's messages were listed"
    );
    for bad in [
        "status=nope",
        "channel=fax",
        "since=yesterday",
        "limit=0",
        "limit=101",
        "cursor=%%%",
    ] {
        let (status, body) = get(&app, &format!("/v1/messages?{bad}"), API_KEY).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query");
    }

    // The contact writes back; the conversation interleaves both directions.
    let payload = inbound_text_payload("5511999990071", &new_wamid(), 1_764_597_909, "obrigado");
    assert_eq!(
        app.post_webhook(&payload, Some(&sign(APP_SECRET, &payload)))
            .await
            .status(),
        200
    );
    app.wait_until_idle().await;
    let (status, conv) = get(
        &app,
        "/v1/conversations/+5511999990071/messages?limit=3",
        API_KEY,
    )
    .await;
    assert_eq!(status, 200, "{conv}");
    let messages = conv["messages"].as_array().unwrap();
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[0]["text"], "obrigado");
    assert_eq!(messages[1]["direction"], "outbound");
    assert_eq!(messages[1]["id"], sent[2].as_str());
    assert_eq!(messages[1]["text"], "n2");
    let cursor = conv["next_cursor"].as_str().unwrap().to_owned();
    let (_, older) = get(
        &app,
        &format!("/v1/conversations/5511999990071/messages?cursor={cursor}"),
        API_KEY,
    )
    .await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 1);
    // Another key sees the inbound message but not this key's outbound ones.
    let (_, theirs) = get(
        &app,
        "/v1/conversations/5511999990071/messages",
        OTHER_API_KEY,
    )
    .await;
    let directions: Vec<&str> = theirs["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(directions, ["inbound"]);
}
