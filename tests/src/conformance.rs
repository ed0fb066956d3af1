//! The adapter conformance suite: the behaviour every [`Queue`] and [`DeliveryStore`] adapter
//! must show, written once and run against both adapter sets (`tests/e2e/conformance_aws.rs`
//! on moto, `tests/e2e/conformance_embedded.rs` on SQLite).
//!
//! Each check is a plain `async fn` taking the port and panicking (through `assert!`) when the
//! adapter misbehaves; a test binary wraps each in one `#[tokio::test]`.
//!
//! - **Queue checks** each need a queue of their own: empty, with no other consumer (several
//!   receive everything there is). Their timings assume visibility and delay in whole seconds,
//!   which is SQS's resolution.
//! - **Store checks** may share one store, concurrently: every record and inbound key they
//!   write is fresh (a new [`MessageId`], a uuid), so suites can share one moto server too.
//!
//! One check is stricter than SQS promises and is kept apart:
//! [`queue_stale_receipt_does_not_delete_redelivered_message`]. Real SQS says a delete with an
//! older receipt "succeeds, but the message might not be deleted"; moto deletes it. The
//! embedded queue guarantees it does not (so a consumer that outlived its visibility timeout
//! cannot delete a message another consumer is working on); run that check only against
//! adapters that promise it. [`queue_stale_ack_after_redelivery_is_not_an_error`] holds
//! everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carteiro_shared::domain::delivery::{
    Attempt, Channel, DeliveryError, DeliveryRecord, DeliveryStatus, ProviderEvent, ProviderStatus,
};
use carteiro_shared::domain::ids::{MessageId, Wamid};
use carteiro_shared::domain::time::Timestamp;
use carteiro_shared::ports::queue::{MAX_BATCH, OutgoingMessage, Queue, ReceivedMessage};
use carteiro_shared::ports::store::{
    CreateOutcome, DeliveryStore, InsertOutcome, KeptKind, KeptRecord, ReplaceOutcome,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Visibility timeout for checks that do not want redelivery while they run.
const LONG_VISIBILITY: Duration = Duration::from_secs(60);
/// Visibility timeout for checks that wait for redelivery.
const SHORT_VISIBILITY: Duration = Duration::from_secs(1);
/// How long a check waits for something that should happen before giving up.
const PATIENCE: Duration = Duration::from_secs(10);
/// Pause between polls of an empty queue.
const POLL: Duration = Duration::from_millis(50);
/// How long a store check polls `find_by_wamid` (DynamoDB's index is eventually consistent).
const INDEX_PATIENCE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Receives until `n` messages arrived in total or [`PATIENCE`] ran out; SQS may hand out fewer
/// than are visible per call.
async fn receive_n(q: &dyn Queue, n: usize, visibility: Duration) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let batch = q.receive(MAX_BATCH, visibility).await.unwrap();
        assert!(
            batch.len() <= MAX_BATCH,
            "receive returned {} messages, more than {MAX_BATCH}",
            batch.len()
        );
        if batch.is_empty() {
            tokio::time::sleep(POLL).await;
        }
        got.extend(batch);
    }
    got
}

/// Receives until the message with `message_id` comes back, or [`PATIENCE`] ran out. Other
/// messages received meanwhile are returned too.
async fn receive_until(
    q: &dyn Queue,
    message_id: &str,
    visibility: Duration,
) -> (Option<ReceivedMessage>, Vec<ReceivedMessage>) {
    let deadline = Instant::now() + PATIENCE;
    let mut others = Vec::new();
    while Instant::now() < deadline {
        for m in q.receive(MAX_BATCH, visibility).await.unwrap() {
            if m.message_id == message_id {
                return (Some(m), others);
            }
            others.push(m);
        }
        tokio::time::sleep(POLL).await;
    }
    (None, others)
}

async fn send_one(q: &dyn Queue, body: &str) -> ReceivedMessage {
    q.send_batch(&[OutgoingMessage::new(body)]).await.unwrap();
    let got = receive_n(q, 1, SHORT_VISIBILITY).await;
    assert_eq!(got.len(), 1, "the message sent did not arrive");
    let first = got.into_iter().next().unwrap();
    assert_eq!(first.body, body);
    assert_eq!(first.receive_count, 1);
    first
}

/// 25 messages sent in one call (so more than one SQS batch) all arrive, once each, with their
/// bodies and attributes intact, each with its own id and receipt.
pub async fn queue_batch_of_25_arrives_complete(q: &dyn Queue) {
    let run = unique("batch");
    let sent: Vec<OutgoingMessage> = (0..25)
        .map(|i| {
            OutgoingMessage::new(format!(
                r#"{{"run":"{run}","i":{i},"text":"Olá, ação ✓ \"quoted\" \n end"}}"#
            ))
            .with_attribute("correlation_id", format!("{run}-{i}"))
            .with_attribute("index", i.to_string())
            .with_attribute("note", "ünïcødé ✓")
        })
        .collect();
    q.send_batch(&sent).await.unwrap();

    let got = receive_n(q, sent.len(), LONG_VISIBILITY).await;
    assert_eq!(got.len(), sent.len(), "not every message arrived");

    let expected: BTreeSet<(String, BTreeMap<String, String>)> = sent
        .iter()
        .map(|m| (m.body.clone(), m.attributes.clone()))
        .collect();
    let received: BTreeSet<(String, BTreeMap<String, String>)> = got
        .iter()
        .map(|m| (m.body.clone(), m.attributes.clone()))
        .collect();
    assert_eq!(
        received, expected,
        "bodies or attributes changed in transit"
    );

    let ids: BTreeSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "message ids are not unique");
    let receipts: BTreeSet<&str> = got.iter().map(|m| m.receipt_handle.as_str()).collect();
    assert_eq!(receipts.len(), got.len(), "receipt handles are not unique");
    assert!(got.iter().all(|m| m.receive_count == 1));

    assert!(
        q.receive(MAX_BATCH, LONG_VISIBILITY)
            .await
            .unwrap()
            .is_empty(),
        "a message was delivered twice within its visibility timeout"
    );
    for m in &got {
        q.ack(&m.receipt_handle).await.unwrap();
    }
}

/// `receive` hands out at most `max` messages and never more than [`MAX_BATCH`].
pub async fn queue_receive_respects_max(q: &dyn Queue) {
    let sent: Vec<OutgoingMessage> = (0..15)
        .map(|i| OutgoingMessage::new(format!("max-{i}")))
        .collect();
    q.send_batch(&sent).await.unwrap();

    let three = q.receive(3, LONG_VISIBILITY).await.unwrap();
    assert!(three.len() <= 3, "asked for 3, got {}", three.len());
    let many = q.receive(50, LONG_VISIBILITY).await.unwrap();
    assert!(many.len() <= MAX_BATCH, "asked for 50, got {}", many.len());

    let rest = receive_n(q, sent.len() - three.len() - many.len(), LONG_VISIBILITY).await;
    let all: Vec<_> = three.iter().chain(&many).chain(&rest).collect();
    assert_eq!(all.len(), sent.len());
    for m in all {
        q.ack(&m.receipt_handle).await.unwrap();
    }
}

/// A received message stays hidden until its visibility timeout passes, then comes back with
/// the same id and body, `receive_count` 2 and a new receipt handle.
pub async fn queue_hides_a_received_message_until_its_visibility_timeout(q: &dyn Queue) {
    let body = unique("visibility");
    // The first receive happens after this instant, so the message may not come back before
    // this instant plus the visibility timeout.
    let sent_at = Instant::now();
    let first = send_one(q, &body).await;

    assert!(
        q.receive(MAX_BATCH, SHORT_VISIBILITY)
            .await
            .unwrap()
            .is_empty(),
        "the message was visible again within its visibility timeout"
    );

    let (again, others) = receive_until(q, &first.message_id, LONG_VISIBILITY).await;
    assert!(others.is_empty(), "unexpected messages: {others:?}");
    let again = again.expect("the message never came back after its visibility timeout");
    assert!(
        sent_at.elapsed() >= SHORT_VISIBILITY - Duration::from_millis(50),
        "the message came back after {:?}, before its visibility timeout",
        sent_at.elapsed()
    );
    assert_eq!(again.body, body);
    assert_eq!(again.attributes, first.attributes);
    assert_eq!(again.receive_count, 2);
    assert_ne!(
        again.receipt_handle, first.receipt_handle,
        "a redelivery must come with a new receipt handle"
    );
    q.ack(&again.receipt_handle).await.unwrap();
}

/// Acknowledging a message deletes it: it does not come back after its visibility timeout.
pub async fn queue_ack_deletes(q: &dyn Queue) {
    let m = send_one(q, &unique("ack")).await;
    q.ack(&m.receipt_handle).await.unwrap();
    tokio::time::sleep(SHORT_VISIBILITY + Duration::from_millis(500)).await;
    let after = q.receive(MAX_BATCH, LONG_VISIBILITY).await.unwrap();
    assert!(
        after.is_empty(),
        "an acknowledged message came back: {after:?}"
    );
}

/// Acknowledging the same receipt twice is not an error.
pub async fn queue_ack_twice_is_fine(q: &dyn Queue) {
    let m = send_one(q, &unique("ack-twice")).await;
    q.ack(&m.receipt_handle).await.unwrap();
    q.ack(&m.receipt_handle).await.unwrap();
    tokio::time::sleep(SHORT_VISIBILITY + Duration::from_millis(500)).await;
    assert!(
        q.receive(MAX_BATCH, LONG_VISIBILITY)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Receives a message, lets its visibility timeout pass and receives it again: the first
/// receipt is now stale. Returns (first, second).
async fn redeliver(q: &dyn Queue, body: &str) -> (ReceivedMessage, ReceivedMessage) {
    let first = send_one(q, body).await;
    let (second, others) = receive_until(q, &first.message_id, LONG_VISIBILITY).await;
    assert!(others.is_empty(), "unexpected messages: {others:?}");
    let second = second.expect("the message never came back after its visibility timeout");
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt_handle, first.receipt_handle);
    (first, second)
}

/// Acknowledging with a receipt that went stale (the message was redelivered since) is not an
/// error, and the current receipt still acknowledges the message. Whether the stale receipt
/// deleted it is left open here, as SQS leaves it open.
pub async fn queue_stale_ack_after_redelivery_is_not_an_error(q: &dyn Queue) {
    let (first, second) = redeliver(q, &unique("stale-ok")).await;
    q.ack(&first.receipt_handle).await.unwrap();
    q.ack(&second.receipt_handle).await.unwrap();
    tokio::time::sleep(SHORT_VISIBILITY + Duration::from_millis(500)).await;
    assert!(
        q.receive(MAX_BATCH, LONG_VISIBILITY)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Stricter than SQS (see the module notes): a stale receipt deletes nothing, so the message
/// comes back after the current receipt's visibility timeout, until the current receipt
/// acknowledges it.
pub async fn queue_stale_receipt_does_not_delete_redelivered_message(q: &dyn Queue) {
    let first = send_one(q, &unique("stale-strict")).await;
    let (second, others) = receive_until(q, &first.message_id, SHORT_VISIBILITY).await;
    assert!(others.is_empty(), "unexpected messages: {others:?}");
    let second = second.expect("the message never came back after its visibility timeout");

    q.ack(&first.receipt_handle).await.unwrap();
    let (third, others) = receive_until(q, &first.message_id, LONG_VISIBILITY).await;
    assert!(others.is_empty(), "unexpected messages: {others:?}");
    let third = third.expect("a stale receipt deleted the message");
    assert_eq!(third.receive_count, 3);

    // The receipt of the second receive is stale too now.
    q.ack(&second.receipt_handle).await.unwrap();
    q.ack(&third.receipt_handle).await.unwrap();
    tokio::time::sleep(SHORT_VISIBILITY + Duration::from_millis(500)).await;
    assert!(
        q.receive(MAX_BATCH, LONG_VISIBILITY)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A message sent with a delay is not visible before the delay passed, and is after; a message
/// sent alongside without a delay is visible at once.
pub async fn queue_delayed_message_is_hidden_until_its_delay_passes(q: &dyn Queue) {
    let delay = Duration::from_secs(2);
    let delayed_body = unique("delayed");
    let prompt_body = unique("prompt");
    let sent_at = Instant::now();
    q.send_batch(&[
        OutgoingMessage::new(delayed_body.clone())
            .with_delay(delay)
            .with_attribute("kind", "delayed"),
        OutgoingMessage::new(prompt_body.clone()),
    ])
    .await
    .unwrap();

    // The receive that returns a message ends after the message became visible, so measuring
    // after it returns can only overstate how long the message was hidden, never understate.
    let deadline = sent_at + delay + PATIENCE;
    let (mut prompt, mut delayed) = (None, None);
    while (prompt.is_none() || delayed.is_none()) && Instant::now() < deadline {
        let batch = q.receive(MAX_BATCH, LONG_VISIBILITY).await.unwrap();
        let seen_after = sent_at.elapsed();
        for m in batch {
            if m.body == delayed_body {
                assert!(
                    seen_after >= delay - Duration::from_millis(50),
                    "the delayed message arrived after {seen_after:?}, before its delay of \
                     {delay:?}"
                );
                delayed = Some(m);
            } else {
                assert_eq!(m.body, prompt_body, "unexpected message {m:?}");
                prompt = Some(m);
            }
        }
        if prompt.is_none() || delayed.is_none() {
            tokio::time::sleep(POLL).await;
        }
    }
    let prompt = prompt.expect("the message without delay never arrived");
    let delayed = delayed.expect("the delayed message never arrived");
    assert_eq!(delayed.receive_count, 1);
    assert_eq!(
        delayed.attributes.get("kind").map(String::as_str),
        Some("delayed")
    );
    q.ack(&prompt.receipt_handle).await.unwrap();
    q.ack(&delayed.receipt_handle).await.unwrap();
}

/// Receiving from an empty queue returns nothing, at once (no long polling).
pub async fn queue_receive_on_an_empty_queue_returns_at_once(q: &dyn Queue) {
    let started = Instant::now();
    let got = q.receive(MAX_BATCH, LONG_VISIBILITY).await.unwrap();
    assert!(got.is_empty(), "an empty queue returned {got:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "receive on an empty queue took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

/// A record with every field set and JSON of every kind the domain stores (nested objects,
/// arrays, integers, booleans, null, unicode), so lossy serialisation shows.
pub fn rich_record() -> DeliveryRecord {
    let now = Timestamp::now();
    let mut r = DeliveryRecord::new_queued(
        MessageId::generate(),
        Channel::Whatsapp,
        "+5511999990001",
        json!({
            "channel": "whatsapp",
            "to": "+5511999990001",
            "text": { "body": "Olá, ação ✓ \"quoted\"\nline two", "preview_url": false },
            "metadata": { "order": 12345, "tags": ["a", "b"], "nested": { "deep": true },
                          "nothing": null, "empty": {} }
        }),
        now,
    );
    r.version = 3;
    r.status = DeliveryStatus::RetryScheduled;
    r.api_key_id = Some("app-1".to_owned());
    r.updated_at = now.plus(Duration::from_millis(1500));
    r.next_attempt_at = Some(now.plus(Duration::from_secs(60)));
    r.attempts = vec![
        Attempt {
            number: 1,
            started_at: now,
            outcome: "retryable".to_owned(),
            provider_code: Some("131000".to_owned()),
            provider_status: None,
            latency_ms: 812,
            details: Some("try again later".to_owned()),
            settled: None,
        },
        Attempt {
            number: 2,
            started_at: now.plus(Duration::from_secs(30)),
            outcome: "timeout".to_owned(),
            provider_code: None,
            provider_status: None,
            latency_ms: 10_000,
            details: None,
            settled: None,
        },
    ];
    r.events = vec![ProviderEvent {
        status: ProviderStatus::Other("warning".to_owned()),
        at: now,
        received_at: now.plus(Duration::from_millis(3)),
        error: None,
        pricing: Some(json!({ "billable": true, "category": "utility", "pricing_model": "PMP" })),
        conversation: Some(json!({ "id": "c-1", "origin": { "type": "utility" } })),
    }];
    r.last_error = Some(DeliveryError {
        source: "whatsapp".to_owned(),
        code: "131000".to_owned(),
        message: "Something went wrong".to_owned(),
        details: Some("try again later".to_owned()),
    });
    r
}

/// A freshly queued record, version 1.
fn queued_record() -> DeliveryRecord {
    DeliveryRecord::new_queued(
        MessageId::generate(),
        Channel::Email,
        "ana@example.com",
        json!({ "channel": "email", "to": ["ana@example.com"], "subject": "Oi" }),
        Timestamp::now(),
    )
}

/// The record as the next writer would leave it: version bumped, some fields changed.
fn next_version(r: &DeliveryRecord, outcome: &str) -> DeliveryRecord {
    let mut next = r.clone();
    next.version += 1;
    next.status = DeliveryStatus::Sending;
    next.updated_at = next.updated_at.plus(Duration::from_millis(10));
    let number = u32::try_from(next.attempts.len()).unwrap() + 1;
    next.attempts.push(Attempt {
        number,
        started_at: next.updated_at,
        outcome: outcome.to_owned(),
        provider_code: None,
        provider_status: Some("accepted".to_owned()),
        latency_ms: 5,
        details: None,
        settled: None,
    });
    next
}

/// `get` returns exactly what `create` wrote, and `None` for an id never written.
pub async fn store_get_returns_what_was_written(store: &dyn DeliveryStore) {
    let r = rich_record();
    assert_eq!(store.create(&r).await.unwrap(), CreateOutcome::Created);
    assert_eq!(store.get(&r.id).await.unwrap(), Some(r.clone()));

    let plain = queued_record();
    assert_eq!(store.create(&plain).await.unwrap(), CreateOutcome::Created);
    assert_eq!(store.get(&plain.id).await.unwrap(), Some(plain));

    assert_eq!(store.get(&MessageId::generate()).await.unwrap(), None);
}

/// A second `create` with the same id reports `AlreadyExists` and leaves the stored record as
/// it was.
pub async fn store_create_is_conditional(store: &dyn DeliveryStore) {
    let first = queued_record();
    assert_eq!(store.create(&first).await.unwrap(), CreateOutcome::Created);

    let mut second = rich_record();
    second.id = first.id.clone();
    assert_eq!(
        store.create(&second).await.unwrap(),
        CreateOutcome::AlreadyExists
    );
    assert_eq!(
        store.create(&first).await.unwrap(),
        CreateOutcome::AlreadyExists
    );
    assert_eq!(store.get(&first.id).await.unwrap(), Some(first));
}

/// `replace` writes only over the expected version: the right one succeeds, a wrong or stale
/// one is a `Conflict` that writes nothing, and so is replacing a record that does not exist.
pub async fn store_replace_checks_the_version(store: &dyn DeliveryStore) {
    let v1 = queued_record();
    assert_eq!(store.create(&v1).await.unwrap(), CreateOutcome::Created);

    let v2 = next_version(&v1, "sent");
    assert_eq!(
        store.replace(&v2, 7).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        store.get(&v1.id).await.unwrap(),
        Some(v1.clone()),
        "a conflict wrote"
    );

    assert_eq!(
        store.replace(&v2, 1).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(store.get(&v1.id).await.unwrap(), Some(v2.clone()));

    // A writer still holding version 1 loses.
    let stale = next_version(&v1, "stale");
    assert_eq!(
        store.replace(&stale, 1).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        store.get(&v1.id).await.unwrap(),
        Some(v2.clone()),
        "a conflict wrote"
    );

    let v3 = next_version(&v2, "again");
    assert_eq!(
        store.replace(&v3, 2).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(store.get(&v1.id).await.unwrap(), Some(v3));

    let ghost = queued_record();
    assert_eq!(
        store.replace(&next_version(&ghost, "x"), 1).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        store.get(&ghost.id).await.unwrap(),
        None,
        "replace created a record"
    );
}

/// Two writers replacing from the same version at the same time: exactly one wins, and the
/// stored record is the winner's. Five rounds, each from the version the last one left.
pub async fn store_concurrent_replaces_have_one_winner(store: &dyn DeliveryStore) {
    let mut current = queued_record();
    assert_eq!(
        store.create(&current).await.unwrap(),
        CreateOutcome::Created
    );
    for round in 0..5 {
        let a = next_version(&current, &format!("a{round}"));
        let b = next_version(&current, &format!("b{round}"));
        let (ra, rb) = tokio::join!(
            store.replace(&a, current.version),
            store.replace(&b, current.version)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let winner = match (ra, rb) {
            (ReplaceOutcome::Replaced, ReplaceOutcome::Conflict) => a,
            (ReplaceOutcome::Conflict, ReplaceOutcome::Replaced) => b,
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert_eq!(store.get(&current.id).await.unwrap(), Some(winner.clone()));
        current = winner;
    }
}

/// `find_by_wamid` finds a record once its `provider_message_id` is set (polling briefly, for
/// eventually consistent indexes), and finds nothing for a wamid no record has.
pub async fn store_find_by_wamid_after_the_provider_id_is_set(store: &dyn DeliveryStore) {
    let wamid = Wamid::parse(&format!(
        "wamid.HBgNNTUxMTk5OTk5MDAwMRUCABEYEj{}",
        uuid::Uuid::now_v7().simple()
    ))
    .unwrap();
    let v1 = queued_record();
    assert_eq!(store.create(&v1).await.unwrap(), CreateOutcome::Created);
    assert_eq!(store.find_by_wamid(&wamid).await.unwrap(), None);

    let mut v2 = next_version(&v1, "accepted");
    v2.status = DeliveryStatus::Sent;
    v2.provider_message_id = Some(wamid.as_str().to_owned());
    assert_eq!(
        store.replace(&v2, 1).await.unwrap(),
        ReplaceOutcome::Replaced
    );

    let deadline = Instant::now() + INDEX_PATIENCE;
    let found = loop {
        match store.find_by_wamid(&wamid).await.unwrap() {
            Some(found) => break Some(found),
            None if Instant::now() >= deadline => break None,
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(found, Some(v2), "find_by_wamid did not find the record");

    let other = Wamid::parse(&format!("wamid.{}", uuid::Uuid::now_v7().simple())).unwrap();
    assert_eq!(store.find_by_wamid(&other).await.unwrap(), None);
}

fn inbound(kind: KeptKind, key: &str, sub_key: &str, ttl: Duration) -> KeptRecord {
    let now = Timestamp::now();
    KeptRecord {
        kind,
        key: key.to_owned(),
        sub_key: sub_key.to_owned(),
        received_at: now,
        expires_at: now.plus(ttl),
        payload: json!({ "sub_key": sub_key, "n": 42, "text": "Olá ✓", "flags": [true, null] }),
        contact: None,
    }
}

fn expired(kind: KeptKind, key: &str, sub_key: &str) -> KeptRecord {
    let mut r = inbound(kind, key, sub_key, Duration::ZERO);
    r.received_at = Timestamp::from_millis(r.received_at.as_millis() - 120_000);
    r.expires_at = Timestamp::from_millis(r.expires_at.as_millis() - 60_000);
    r
}

const DAY: Duration = Duration::from_secs(86_400);

/// `put_kept` writes once: the first put is `Inserted`, a second with the same kind, key and
/// sub-key is a `Duplicate` that leaves the first in place.
pub async fn store_inbound_put_is_insert_once(store: &dyn DeliveryStore) {
    let key = format!("wamid.{}", uuid::Uuid::now_v7().simple());
    let first = inbound(KeptKind::Message, &key, "", DAY);
    assert_eq!(
        store.put_kept(&first).await.unwrap(),
        InsertOutcome::Inserted
    );

    let mut again = inbound(KeptKind::Message, &key, "", DAY);
    again.payload = json!({ "different": true });
    assert_eq!(
        store.put_kept(&again).await.unwrap(),
        InsertOutcome::Duplicate
    );
    assert_eq!(
        store.put_kept(&first).await.unwrap(),
        InsertOutcome::Duplicate
    );

    // Same key, another kind: a different record.
    let other_kind = inbound(KeptKind::AccountEvent, &key, "", DAY);
    assert_eq!(
        store.put_kept(&other_kind).await.unwrap(),
        InsertOutcome::Inserted
    );

    assert_eq!(
        store.list_kept(KeptKind::Message, &key).await.unwrap(),
        vec![first]
    );
    assert_eq!(
        store.list_kept(KeptKind::AccountEvent, &key).await.unwrap(),
        vec![other_kind]
    );
}

/// `list_kept` returns the unexpired records of one kind and key, ordered by sub-key, and
/// nothing else: not expired ones, not other kinds, not other keys.
pub async fn store_list_inbound_orders_by_sub_key_and_skips_expired(store: &dyn DeliveryStore) {
    let key = format!("wamid.{}", uuid::Uuid::now_v7().simple());
    let kind = KeptKind::OrphanStatus;
    let read = inbound(kind, &key, "read", DAY);
    let delivered = inbound(kind, &key, "delivered", DAY);
    let sent = inbound(kind, &key, "sent", DAY);
    let failed = expired(kind, &key, "failed");
    for r in [&read, &failed, &sent, &delivered] {
        store.put_kept(r).await.unwrap();
    }
    store
        .put_kept(&inbound(KeptKind::Message, &key, "sent", DAY))
        .await
        .unwrap();
    store
        .put_kept(&inbound(kind, &format!("{key}-other"), "a", DAY))
        .await
        .unwrap();

    assert_eq!(
        store.list_kept(kind, &key).await.unwrap(),
        vec![delivered, read, sent]
    );
    assert_eq!(
        store
            .list_kept(kind, &format!("{}", uuid::Uuid::now_v7()))
            .await
            .unwrap(),
        vec![]
    );
}

/// An expired inbound record counts as absent: putting the same kind, key and sub-key again
/// is `Inserted`, and the new record is the one listed.
pub async fn store_expired_inbound_record_counts_as_absent(store: &dyn DeliveryStore) {
    let key = format!("wamid.{}", uuid::Uuid::now_v7().simple());
    let old = expired(KeptKind::OrphanStatus, &key, "delivered");
    store.put_kept(&old).await.unwrap();
    assert_eq!(
        store.list_kept(KeptKind::OrphanStatus, &key).await.unwrap(),
        vec![]
    );

    let fresh = inbound(KeptKind::OrphanStatus, &key, "delivered", DAY);
    assert_eq!(
        store.put_kept(&fresh).await.unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(
        store.list_kept(KeptKind::OrphanStatus, &key).await.unwrap(),
        vec![fresh]
    );
}

/// State documents: created only when absent, replaced only over the version read.
pub async fn store_state_documents_are_versioned(store: &dyn DeliveryStore) {
    use carteiro_shared::ports::store::{StateDoc, StateKind};
    let key = format!("endpoint-{}", uuid::Uuid::now_v7().simple());
    assert_eq!(
        store.get_state(StateKind::Endpoint, &key).await.unwrap(),
        None
    );
    let first = StateDoc {
        kind: StateKind::Endpoint,
        key: key.clone(),
        version: 1,
        body: json!({"failing_since": 5, "name": "Olá"}),
    };
    assert_eq!(
        store.put_state(&first, 0).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(
        store.put_state(&first, 0).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        store.get_state(StateKind::Endpoint, &key).await.unwrap(),
        Some(first.clone())
    );
    let second = StateDoc {
        version: 2,
        body: json!({"disabled": {"at": 9, "reason": "gone"}}),
        ..first.clone()
    };
    assert_eq!(
        store.put_state(&second, 2).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        store.put_state(&second, 1).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(
        store.put_state(&second, 1).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        store.get_state(StateKind::Endpoint, &key).await.unwrap(),
        Some(second)
    );
    // Kinds do not share keys.
    assert_eq!(
        store.get_state(StateKind::Contact, &key).await.unwrap(),
        None
    );
}

/// Concurrent changes through the update helper all land: none is lost to a race.
pub async fn store_concurrent_state_updates_all_land(store: &dyn DeliveryStore) {
    use carteiro_shared::ports::store::StateKind;
    use carteiro_shared::ports::update::{Change, get_state, update_state};
    let key = format!("contact-{}", uuid::Uuid::now_v7().simple());
    let bump = || async {
        update_state(store, StateKind::Contact, &key, |n: &mut u64| {
            *n += 1;
            Change::Write(())
        })
        .await
        .unwrap();
    };
    futures::future::join_all((0..6).map(|_| bump())).await;
    let n: u64 = get_state(store, StateKind::Contact, &key).await.unwrap();
    assert_eq!(n, 6);
}

/// A key's messages: newest first, filtered, paged with a cursor; another key's never shown.
pub async fn store_lists_a_keys_messages_newest_first(store: &dyn DeliveryStore) {
    use carteiro_shared::ports::store::MessageFilter;
    let owner = format!("key-{}", uuid::Uuid::now_v7().simple());
    let base = Timestamp::now().as_millis() - 60_000;
    let mut ids = Vec::new();
    for i in 0..5 {
        let channel = if i == 2 {
            Channel::Email
        } else {
            Channel::Whatsapp
        };
        let mut r = DeliveryRecord::new_queued(
            MessageId::generate(),
            channel,
            "+5511999990061",
            json!({}),
            Timestamp::from_millis(base + i * 1_000),
        );
        r.api_key_id = Some(owner.clone());
        if i == 4 {
            r.status = DeliveryStatus::Failed;
        }
        store.create(&r).await.unwrap();
        ids.push(r.id.as_str().to_owned());
    }
    let mut other = queued_record();
    other.api_key_id = Some(format!("{owner}-other"));
    store.create(&other).await.unwrap();

    let all = MessageFilter::default();
    let listed = |p: &carteiro_shared::ports::store::Page<DeliveryRecord>| {
        p.items
            .iter()
            .map(|r| r.id.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let first = store.list_messages(&owner, &all, None, 2).await.unwrap();
    assert_eq!(listed(&first), [ids[4].clone(), ids[3].clone()]);
    let second = store
        .list_messages(&owner, &all, first.next.as_ref(), 2)
        .await
        .unwrap();
    assert_eq!(listed(&second), [ids[2].clone(), ids[1].clone()]);
    let third = store
        .list_messages(&owner, &all, second.next.as_ref(), 2)
        .await
        .unwrap();
    assert_eq!(listed(&third), [ids[0].clone()]);
    assert_eq!(third.next, None);

    let failed = MessageFilter {
        status: Some(DeliveryStatus::Failed),
        ..MessageFilter::default()
    };
    assert_eq!(
        listed(
            &store
                .list_messages(&owner, &failed, None, 10)
                .await
                .unwrap()
        ),
        [ids[4].clone()]
    );
    let email = MessageFilter {
        channel: Some(Channel::Email),
        ..MessageFilter::default()
    };
    assert_eq!(
        listed(&store.list_messages(&owner, &email, None, 10).await.unwrap()),
        [ids[2].clone()]
    );
    let since = MessageFilter {
        since: Some(Timestamp::from_millis(base + 3_000)),
        ..MessageFilter::default()
    };
    assert_eq!(
        listed(&store.list_messages(&owner, &since, None, 10).await.unwrap()),
        [ids[4].clone(), ids[3].clone()]
    );
}

/// A contact's conversation: outbound records and inbound messages interleaved by time.
pub async fn store_lists_a_conversation_in_both_directions(store: &dyn DeliveryStore) {
    let n = uuid::Uuid::now_v7().as_u128() % 1_000_000_000;
    let contact = format!("55119{n:09}");
    let base = Timestamp::now().as_millis() - 60_000;
    let mut expected = Vec::new();
    for i in 0..4 {
        let at = Timestamp::from_millis(base + i * 1_000);
        if i % 2 == 0 {
            let r = DeliveryRecord::new_queued(
                MessageId::generate(),
                Channel::Whatsapp,
                format!("+{contact}"),
                json!({}),
                at,
            );
            store.create(&r).await.unwrap();
            expected.push(r.id.as_str().to_owned());
        } else {
            let wamid = format!("wamid.CONV{}", uuid::Uuid::now_v7().simple());
            let k = KeptRecord {
                kind: KeptKind::Message,
                key: wamid.clone(),
                sub_key: String::new(),
                received_at: at,
                expires_at: at.plus(DAY),
                payload: json!({"kind": "message"}),
                contact: Some(contact.clone()),
            };
            store.put_kept(&k).await.unwrap();
            expected.push(wamid);
        }
    }
    // Someone else's conversation, and an email to the same digits: neither is listed.
    store
        .create(&DeliveryRecord::new_queued(
            MessageId::generate(),
            Channel::Whatsapp,
            "+5511999990062",
            json!({}),
            Timestamp::now(),
        ))
        .await
        .unwrap();
    store
        .create(&DeliveryRecord::new_queued(
            MessageId::generate(),
            Channel::Email,
            contact.clone(),
            json!({}),
            Timestamp::now(),
        ))
        .await
        .unwrap();
    expected.reverse();
    let ids = |p: &carteiro_shared::ports::store::Page<
        carteiro_shared::ports::store::ConversationItem,
    >| { p.items.iter().map(|i| i.cursor().id).collect::<Vec<_>>() };
    let first = store.list_conversation(&contact, None, 3).await.unwrap();
    assert_eq!(ids(&first), expected[..3]);
    assert!(matches!(
        first.items[0],
        carteiro_shared::ports::store::ConversationItem::Inbound(_)
    ));
    let second = store
        .list_conversation(&contact, first.next.as_ref(), 3)
        .await
        .unwrap();
    assert_eq!(ids(&second), expected[3..]);
    assert_eq!(second.next, None);
}

/// An endpoint's health: failures alone do not disable it until it has failed for
/// `disable_after` without a success; a success clears the failing clock; 410 disables at
/// once; enabling clears everything.
pub async fn store_endpoint_health_disables_after_failing_long_enough(store: &dyn DeliveryStore) {
    use carteiro_shared::callbacks::endpoints::{
        enable, endpoint_state, note_failure, note_success,
    };
    let id = format!("ep-{}", uuid::Uuid::now_v7().simple());
    let window = Duration::from_secs(3_600);
    let t = |s: i64| Timestamp::from_secs(1_700_000_000 + s);
    assert_eq!(
        note_failure(store, &id, false, window, t(0)).await.unwrap(),
        None
    );
    assert_eq!(
        note_failure(store, &id, false, window, t(1_800))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        endpoint_state(store, &id).await.unwrap().failing_since,
        Some(t(0))
    );
    // A success resets the clock: an hour after the first failure is not enough now.
    note_success(store, &id, t(1_900)).await.unwrap();
    assert_eq!(
        note_failure(store, &id, false, window, t(2_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        note_failure(store, &id, false, window, t(3_700))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        note_failure(store, &id, false, window, t(5_600))
            .await
            .unwrap()
            .as_deref(),
        Some("failing")
    );
    let state = endpoint_state(store, &id).await.unwrap();
    assert_eq!(state.disabled.map(|d| d.reason).as_deref(), Some("failing"));
    assert!(enable(store, &id, t(6_000)).await.unwrap());
    assert_eq!(endpoint_state(store, &id).await.unwrap().disabled, None);
    assert_eq!(
        note_failure(store, &id, true, window, t(6_100))
            .await
            .unwrap()
            .as_deref(),
        Some("gone")
    );
}

// ---- The limits port ---------------------------------------------------------------------------

/// Limit documents: created only when absent (or expired), replaced only over the version read.
pub async fn limits_documents_are_versioned_and_expire(
    limits: &dyn carteiro_shared::ports::limits::LimitStore,
) {
    use carteiro_shared::ports::limits::LimitDoc;
    let key = format!("test:{}", uuid::Uuid::now_v7().simple());
    let later = Timestamp::now().plus(Duration::from_secs(600));
    assert_eq!(limits.get_limit(&key).await.unwrap(), None);
    let first = LimitDoc {
        key: key.clone(),
        version: 1,
        body: json!({"tokens": 3.5}),
        expires_at: later,
    };
    assert_eq!(
        limits.put_limit(&first, 0).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(
        limits.put_limit(&first, 0).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(limits.get_limit(&key).await.unwrap(), Some(first.clone()));
    let second = LimitDoc {
        version: 2,
        body: json!({"tokens": 2.5}),
        ..first.clone()
    };
    assert_eq!(
        limits.put_limit(&second, 2).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        limits.put_limit(&second, 1).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(limits.get_limit(&key).await.unwrap(), Some(second));
    // Expired: gone for reads, and as good as absent for a first write.
    let gone = LimitDoc {
        version: 3,
        expires_at: Timestamp::from_millis(Timestamp::now().as_millis() - 1_000),
        ..first.clone()
    };
    assert_eq!(
        limits.put_limit(&gone, 2).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(limits.get_limit(&key).await.unwrap(), None);
    let fresh = LimitDoc {
        version: 1,
        ..first
    };
    assert_eq!(
        limits.put_limit(&fresh, 0).await.unwrap(),
        ReplaceOutcome::Replaced
    );
}

/// A bucket taken from concurrently is never overdrawn, and refills at its rate.
pub async fn limits_a_shared_bucket_is_never_overdrawn(
    limits: &dyn carteiro_shared::ports::limits::LimitStore,
) {
    use carteiro_shared::resilience::rate::{Decision, Rate, take};
    let key = format!("bucket:{}", uuid::Uuid::now_v7().simple());
    let rate = Rate::new(5.0, 10.0);
    let now = Timestamp::now();
    let takes = (0..24).map(|_| take(limits, &key, rate, 1.0, now));
    let decisions: Vec<Decision> = futures::future::join_all(takes)
        .await
        .into_iter()
        .filter_map(|d| d.ok()) // a take that lost every race gives up; it took nothing
        .collect();
    let allowed = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Allowed { .. }))
        .count();
    assert_eq!(allowed, 10, "{decisions:?}");
    let limited = take(limits, &key, rate, 1.0, now).await.unwrap();
    let Decision::Limited { retry_after, .. } = limited else {
        panic!("{limited:?}")
    };
    assert_eq!(retry_after, Duration::from_millis(200));
    let mut after_a_second = 0;
    for _ in 0..8 {
        if let Decision::Allowed { .. } =
            take(limits, &key, rate, 1.0, now.plus(Duration::from_secs(1)))
                .await
                .unwrap()
        {
            after_a_second += 1;
        }
    }
    assert_eq!(after_a_second, 5);
}

/// A paused bucket (the provider said 130429) gives nothing until the pause is over.
pub async fn limits_a_paused_bucket_gives_nothing_until_the_pause_ends(
    limits: &dyn carteiro_shared::ports::limits::LimitStore,
) {
    use carteiro_shared::resilience::rate::{Decision, Rate, pause, take};
    let key = format!("paused:{}", uuid::Uuid::now_v7().simple());
    let rate = Rate::new(10.0, 2.0);
    let now = Timestamp::now();
    assert!(matches!(
        take(limits, &key, rate, 1.0, now).await.unwrap(),
        Decision::Allowed { .. }
    ));
    pause(limits, &key, rate, Duration::from_secs(1), now)
        .await
        .unwrap();
    let at = |ms: u64| now.plus(Duration::from_millis(ms));
    assert!(matches!(
        take(limits, &key, rate, 1.0, at(500)).await.unwrap(),
        Decision::Limited { .. }
    ));
    assert!(matches!(
        take(limits, &key, rate, 1.0, at(1_150)).await.unwrap(),
        Decision::Allowed { .. }
    ));
}

// ---- The suppressions port ---------------------------------------------------------------------

/// Suppressions: written over each other, read until they lapse, listed in key order a page at
/// a time, removed.
pub async fn suppressions_are_kept_listed_lapse_and_go(
    store: &dyn carteiro_shared::ports::suppressions::SuppressionStore,
) {
    use carteiro_shared::domain::suppression::{SuppressedChannel, Suppression, SuppressionScope};
    let now = Timestamp::now();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let make = |channel, address: String, until: Option<Timestamp>| Suppression {
        channel,
        address,
        scope: SuppressionScope::All,
        reason: "smtp_5.1.1".into(),
        since: now,
        until,
        message_id: None,
    };
    let later = Some(now.plus(Duration::from_secs(600)));
    let lapsed = Some(Timestamp::from_millis(now.as_millis() - 1_000));
    let email = |n: u32| format!("{run}-{n}@example.com");
    for n in 0..5 {
        store
            .put_suppression(&make(SuppressedChannel::Email, email(n), later))
            .await
            .unwrap();
    }
    store
        .put_suppression(&make(SuppressedChannel::Email, email(9), lapsed))
        .await
        .unwrap();
    let wa = format!(
        "55119{}",
        &run[..8]
            .bytes()
            .map(|b| (b % 10).to_string())
            .collect::<String>()
    );
    let marketing = Suppression {
        scope: SuppressionScope::Marketing,
        reason: "user_preferences".into(),
        ..make(SuppressedChannel::Whatsapp, wa.clone(), None)
    };
    store.put_suppression(&marketing).await.unwrap();

    // Read back; a lapsed one is absent.
    assert_eq!(
        store
            .get_suppression(SuppressedChannel::Whatsapp, &wa)
            .await
            .unwrap(),
        Some(marketing.clone())
    );
    assert_eq!(
        store
            .get_suppression(SuppressedChannel::Email, &email(9))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_suppression(SuppressedChannel::Whatsapp, &email(0))
            .await
            .unwrap(),
        None,
        "keyed by channel too"
    );
    // Written again: replaced.
    let renewed = Suppression {
        reason: "smtp_5.1.10".into(),
        ..make(SuppressedChannel::Email, email(0), later)
    };
    store.put_suppression(&renewed).await.unwrap();
    assert_eq!(
        store
            .get_suppression(SuppressedChannel::Email, &email(0))
            .await
            .unwrap(),
        Some(renewed)
    );

    // Listed in key order, two at a time, lapsed ones left out.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let page = store.list_suppressions(after.as_deref(), 2).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(Suppression::key));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mine: Vec<String> = seen
        .iter()
        .filter(|k| k.contains(&run) || k.ends_with(&wa))
        .cloned()
        .collect();
    let mut want: Vec<String> = (0..5).map(|n| format!("email/{}", email(n))).collect();
    want.push(format!("whatsapp/{wa}"));
    assert_eq!(mine, want);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "key order");

    // Removed: gone, and a second delete says so.
    assert!(
        store
            .delete_suppression(SuppressedChannel::Whatsapp, &wa)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_suppression(SuppressedChannel::Whatsapp, &wa)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_suppression(SuppressedChannel::Whatsapp, &wa)
            .await
            .unwrap(),
        None
    );
}
