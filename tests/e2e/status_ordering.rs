//! Out-of-order and duplicated status webhooks converge: the record ends at the highest state
//! with one history entry per status, on both adapter sets.

use crate::intake_aws::aws_stack;
use carteiro_e2e::local::spawn_app;
use carteiro_e2e::webhooks::{APP_SECRET, new_wamid, sent_record, sign, status_payload};
use carteiro_shared::domain::DeliveryStatus;
use carteiro_shared::domain::delivery::DeliveryRecord;
use carteiro_shared::ports::DeliveryStore;

/// read before delivered, sent after read, then the same delivered payload five times.
fn hostile_order(wamid: &str) -> Vec<Vec<u8>> {
    let read = status_payload(wamid, "read", 1_700_000_300, None);
    let delivered = status_payload(wamid, "delivered", 1_700_000_200, None);
    let sent = status_payload(wamid, "sent", 1_700_000_100, None);
    let mut all = vec![read, delivered.clone(), sent];
    all.extend(std::iter::repeat_n(delivered, 5));
    all
}

fn assert_converged(record: &DeliveryRecord) {
    assert_eq!(record.status, DeliveryStatus::Read);
    let history: Vec<&str> = record.events.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(history, ["sent", "delivered", "read"]);
}

#[tokio::test]
async fn local_reordered_and_repeated_statuses_converge_to_read() {
    let app = spawn_app().await;
    let store = app.gateway.inbound.store.clone();
    let wamid = new_wamid();
    let record = sent_record(&wamid);
    store.create(&record).await.unwrap();
    for body in hostile_order(&wamid) {
        let res = app
            .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
            .await;
        assert_eq!(res.status(), 200);
    }
    // Every webhook queued has been processed and acknowledged: nothing more can change.
    app.wait_until_idle().await;
    let settled = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(settled.events.len(), 3);
    assert_converged(&settled);
    assert_eq!(settled.version, record.version + 3);
}

#[tokio::test]
async fn aws_reordered_and_repeated_statuses_converge_to_read() {
    let stack = aws_stack().await;
    let wamid = new_wamid();
    let record = sent_record(&wamid);
    stack.store.create(&record).await.unwrap();
    // Posted as one burst so the consumer sees duplicates in the same and in later batches.
    for body in hostile_order(&wamid) {
        let (status, _) = stack
            .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(stack.drain_inbound().await, 8);
    let settled = stack.store.get(&record.id).await.unwrap().unwrap();
    assert_converged(&settled);
    assert_eq!(settled.version, record.version + 3);
}

#[tokio::test]
async fn failed_status_keeps_metas_error_code_and_details() {
    let stack = aws_stack().await;
    let wamid = new_wamid();
    let record = sent_record(&wamid);
    stack.store.create(&record).await.unwrap();
    let body = status_payload(&wamid, "failed", 1_700_000_100, Some(record.id.as_str()));
    let (status, _) = stack
        .post_webhook(&body, Some(&sign(APP_SECRET, &body)))
        .await;
    assert_eq!(status, 200);
    stack.drain_inbound().await;
    let stored = stack.store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.status, DeliveryStatus::Failed);
    let error = stored.last_error.unwrap();
    assert_eq!(error.code, "131049");
    assert!(error.details.unwrap().contains("healthy ecosystem"));
}
