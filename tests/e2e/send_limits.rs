//! Dispatch stays inside the WhatsApp limits on the local runtime: the number's throughput
//! (`CARTEIRO_WHATSAPP_MPS`) in every sliding second, and Meta's pair rule per recipient. Over a
//! limit a due attempt is deferred — put back on the queue, shown on the record, never counted
//! as an attempt.

use carteiro_e2e::local::{default_secrets, spawn_app_configured};
use carteiro_shared::resilience::rate::Rate;
use serde_json::{Value, json};

fn accepted_at(outbox: &Value) -> Vec<i64> {
    let mut at: Vec<i64> = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["accepted_at"].as_i64().unwrap())
        .collect();
    at.sort_unstable();
    at
}

#[tokio::test]
async fn no_second_carries_more_than_the_configured_throughput() {
    const MPS: usize = 10;
    let app = spawn_app_configured(default_secrets(), |c| {
        c.settings.dispatch.whatsapp_mps = MPS as f64
    })
    .await;
    let bodies: Vec<Value> = (0..40)
        .map(|i| json!({"channel": "whatsapp", "to": format!("+55119{:08}", 80_000_000 + i), "text": {"body": "Olá"}}))
        .collect();
    let posts = bodies.iter().map(|b| app.send(b, None));
    let mut ids = Vec::new();
    for res in futures::future::join_all(posts).await {
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.message_when_within(id, std::time::Duration::from_secs(20), |m| {
            m["provider_message_id"].is_string()
        })
        .await;
    }
    let at = accepted_at(&app.sandbox_outbox().await);
    assert_eq!(at.len(), 40);
    for (i, start) in at.iter().enumerate() {
        let in_window = at[i..].iter().take_while(|t| **t <= start + 1_000).count();
        assert!(
            in_window <= MPS,
            "{in_window} sends in the second from {start}: {at:?}"
        );
    }
    let mut deferred = 0;
    for id in &ids {
        let (_, m) = app.message(id).await;
        assert_eq!(
            m["attempts"].as_array().unwrap().len(),
            1,
            "a deferral counted as an attempt: {m}"
        );
        if m["deferrals"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(m["last_deferral"]["limit"], "whatsapp_throughput", "{m}");
            deferred += 1;
        }
    }
    // Ten workers wait up to a second each for a token; at 10/s most of the rest go back on
    // the queue.
    assert!(deferred >= 15, "only {deferred} of 40 were deferred");
}

#[tokio::test]
async fn one_recipient_is_paced_by_the_pair_rule() {
    let app = spawn_app_configured(default_secrets(), |c| {
        c.settings.dispatch.pair_rate = Rate::new(0.5, 1.0)
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let res = app.send(&json!({"channel": "whatsapp", "to": "+5511999990091", "text": {"body": format!("n{n}")}}), None).await;
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.message_when_within(id, std::time::Duration::from_secs(20), |m| {
            m["provider_message_id"].is_string()
        })
        .await;
    }
    let at = accepted_at(&app.sandbox_outbox().await);
    // The bucket lets one through every 2 s; the margin is for the time between a worker's
    // take and the sandbox noting the send, which a loaded machine stretches. Unpaced, the
    // three would be milliseconds apart.
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1_500,
            "one user got two messages {} ms apart: {at:?}",
            pair[1] - pair[0]
        );
    }
}
