//! The conformance suite against the embedded (SQLite) adapters, in memory and file-backed,
//! plus what only the embedded adapters promise: strict receipts, FIFO order, an injectable
//! clock, a wake-up signal, persistence across reopen, and the file secret source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carteiro_e2e::conformance;
use carteiro_shared::adapters::embedded::{EmbeddedDb, QueueCounts};
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::domain::time::Timestamp;
use carteiro_shared::ports::clock::Clock;
use carteiro_shared::ports::queue::{OutgoingMessage, Queue};
use carteiro_shared::ports::secrets::{SecretError, SecretName, SecretSource};
use carteiro_shared::ports::store::{DeliveryStore, InsertOutcome, KeptKind, KeptRecord};
use secrecy::ExposeSecret;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

fn memory_queue() -> carteiro_shared::adapters::embedded::EmbeddedQueue {
    EmbeddedDb::in_memory().unwrap().queue("conformance")
}

/// One test per queue check, each on a fresh in-memory database.
macro_rules! queue_checks {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            conformance::$check(&memory_queue()).await;
        }
    )*};
}

/// One test per store check, each on a fresh in-memory database.
macro_rules! store_checks {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            conformance::$check(&EmbeddedDb::in_memory().unwrap().store()).await;
        }
    )*};
}

queue_checks!(
    queue_batch_of_25_arrives_complete,
    queue_receive_respects_max,
    queue_hides_a_received_message_until_its_visibility_timeout,
    queue_ack_deletes,
    queue_ack_twice_is_fine,
    queue_stale_ack_after_redelivery_is_not_an_error,
    queue_stale_receipt_does_not_delete_redelivered_message,
    queue_delayed_message_is_hidden_until_its_delay_passes,
    queue_receive_on_an_empty_queue_returns_at_once,
);

store_checks!(
    store_get_returns_what_was_written,
    store_create_is_conditional,
    store_replace_checks_the_version,
    store_concurrent_replaces_have_one_winner,
    store_find_by_wamid_after_the_provider_id_is_set,
    store_inbound_put_is_insert_once,
    store_list_inbound_orders_by_sub_key_and_skips_expired,
    store_expired_inbound_record_counts_as_absent,
    store_state_documents_are_versioned,
    store_concurrent_state_updates_all_land,
    store_lists_a_keys_messages_newest_first,
    store_lists_a_conversation_in_both_directions,
    store_endpoint_health_disables_after_failing_long_enough,
);

/// Every store check at once on one shared store, as the AWS suite shares one table.
#[tokio::test]
async fn store_checks_share_one_store_concurrently() {
    let store = EmbeddedDb::in_memory().unwrap().store();
    tokio::join!(
        conformance::store_get_returns_what_was_written(&store),
        conformance::store_create_is_conditional(&store),
        conformance::store_replace_checks_the_version(&store),
        conformance::store_concurrent_replaces_have_one_winner(&store),
        conformance::store_find_by_wamid_after_the_provider_id_is_set(&store),
        conformance::store_inbound_put_is_insert_once(&store),
        conformance::store_list_inbound_orders_by_sub_key_and_skips_expired(&store),
        conformance::store_expired_inbound_record_counts_as_absent(&store),
        conformance::store_state_documents_are_versioned(&store),
        conformance::store_concurrent_state_updates_all_land(&store),
        conformance::store_lists_a_keys_messages_newest_first(&store),
        conformance::store_lists_a_conversation_in_both_directions(&store),
        conformance::store_endpoint_health_disables_after_failing_long_enough(&store),
    );
}

// ---------------------------------------------------------------------------------------------
// File-backed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn file_backed_db_passes_the_suite_and_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: open creates it.
    let path = dir.path().join("data").join("carteiro.db");

    let db = EmbeddedDb::open(&path).unwrap();
    assert_eq!(db.path(), Some(path.as_path()));
    let store = db.store();
    let (batch, visibility, stale, delay) = (
        db.queue("batch"),
        db.queue("visibility"),
        db.queue("stale"),
        db.queue("delay"),
    );
    tokio::join!(
        conformance::store_get_returns_what_was_written(&store),
        conformance::store_create_is_conditional(&store),
        conformance::store_replace_checks_the_version(&store),
        conformance::store_concurrent_replaces_have_one_winner(&store),
        conformance::store_find_by_wamid_after_the_provider_id_is_set(&store),
        conformance::store_inbound_put_is_insert_once(&store),
        conformance::store_list_inbound_orders_by_sub_key_and_skips_expired(&store),
        conformance::store_expired_inbound_record_counts_as_absent(&store),
        conformance::store_state_documents_are_versioned(&store),
        conformance::store_concurrent_state_updates_all_land(&store),
        conformance::store_lists_a_keys_messages_newest_first(&store),
        conformance::store_lists_a_conversation_in_both_directions(&store),
        conformance::store_endpoint_health_disables_after_failing_long_enough(&store),
        conformance::queue_batch_of_25_arrives_complete(&batch),
        conformance::queue_hides_a_received_message_until_its_visibility_timeout(&visibility),
        conformance::queue_stale_receipt_does_not_delete_redelivered_message(&stale),
        conformance::queue_delayed_message_is_hidden_until_its_delay_passes(&delay),
    );

    // Leave state behind: a record, an inbound record, one message received once (visibility
    // timeout zero, so it is visible again at once) and one never received.
    let record = conformance::rich_record();
    store.create(&record).await.unwrap();
    let now = Timestamp::now();
    let inbound = KeptRecord {
        kind: KeptKind::Message,
        key: "wamid.persisted".to_owned(),
        sub_key: String::new(),
        received_at: now,
        expires_at: now.plus(Duration::from_secs(3600)),
        payload: json!({ "text": "persisted" }),
        contact: None,
    };
    assert_eq!(
        store.put_kept(&inbound).await.unwrap(),
        InsertOutcome::Inserted
    );
    let q = db.queue("outbound");
    q.send_batch(&[
        OutgoingMessage::new("one").with_attribute("n", "1"),
        OutgoingMessage::new("two"),
    ])
    .await
    .unwrap();
    let first = q.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    drop((q, store, batch, visibility, stale, delay, db));

    let db = EmbeddedDb::open(&path).unwrap();
    let store = db.store();
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record));
    assert_eq!(
        store
            .list_kept(KeptKind::Message, "wamid.persisted")
            .await
            .unwrap(),
        vec![inbound]
    );
    let q = db.queue("outbound");
    let got = q.receive(10, Duration::from_secs(60)).await.unwrap();
    let summary: Vec<_> = got
        .iter()
        .map(|m| (m.body.as_str(), m.receive_count))
        .collect();
    assert_eq!(summary, [("one", 2), ("two", 1)]);
    assert_eq!(got[0].message_id, first[0].message_id);
    assert_eq!(got[0].attributes, first[0].attributes);
    assert_ne!(got[0].receipt_handle, first[0].receipt_handle);
    // The queues of the suite above were left empty.
    for name in ["batch", "visibility", "stale", "delay"] {
        assert_eq!(
            db.queue(name).counts().await.unwrap(),
            QueueCounts::default()
        );
    }
}

/// Two handles on one file, as a `carteiro` subcommand next to a running server: both write at
/// once (WAL and the busy timeout make them take turns) and each sees the other's writes.
#[tokio::test]
async fn two_handles_on_one_file_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carteiro.db");
    let a = EmbeddedDb::open(&path).unwrap();
    let b = EmbeddedDb::open(&path).unwrap();

    let send_from = |db: EmbeddedDb, tag: &'static str| async move {
        let q = db.queue("shared");
        for i in 0..40 {
            q.send_batch(&[OutgoingMessage::new(format!("{tag}-{i}"))])
                .await
                .unwrap();
        }
    };
    tokio::join!(send_from(a.clone(), "a"), send_from(b.clone(), "b"));

    let mut bodies = BTreeSet::new();
    loop {
        let got = a
            .queue("shared")
            .receive(10, Duration::from_secs(60))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        bodies.extend(got.into_iter().map(|m| m.body));
    }
    assert_eq!(bodies.len(), 80);

    let record = conformance::rich_record();
    a.store().create(&record).await.unwrap();
    assert_eq!(b.store().get(&record.id).await.unwrap(), Some(record));
}

// ---------------------------------------------------------------------------------------------
// What only the embedded queue promises
// ---------------------------------------------------------------------------------------------

/// A clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(AtomicI64);

impl ManualClock {
    fn at(ms: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(ms)))
    }
    fn advance(&self, d: Duration) {
        self.0
            .fetch_add(i64::try_from(d.as_millis()).unwrap(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn visibility_and_delay_follow_the_injected_clock_to_the_millisecond() {
    let clock = ManualClock::at(1_700_000_000_000);
    let db = EmbeddedDb::in_memory_with_clock(clock.clone()).unwrap();
    let q = db.queue("clocked");
    q.send_batch(&[
        OutgoingMessage::new("now"),
        OutgoingMessage::new("later").with_delay(Duration::from_secs(30)),
    ])
    .await
    .unwrap();

    let got = q.receive(10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "now");
    assert_eq!(
        q.counts().await.unwrap(),
        QueueCounts {
            visible: 0,
            in_flight: 1,
            delayed: 1
        }
    );

    clock.advance(Duration::from_millis(9_999));
    assert!(
        q.receive(10, Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::from_millis(1));
    let again = q.receive(10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].body.as_str(), again[0].receive_count), ("now", 2));
    q.ack(&again[0].receipt_handle).await.unwrap();

    clock.advance(Duration::from_millis(19_999));
    assert!(
        q.receive(10, Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::from_millis(1));
    let later = q.receive(10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].body, "later");
}

#[tokio::test]
async fn messages_come_out_in_the_order_they_were_sent() {
    let q = memory_queue();
    let sent: Vec<_> = (0..30)
        .map(|i| OutgoingMessage::new(format!("{i:02}")))
        .collect();
    q.send_batch(&sent).await.unwrap();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let got = q.receive(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(got.len(), 10);
        bodies.extend(got.into_iter().map(|m| m.body));
    }
    let expected: Vec<_> = sent.into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn queues_are_separate_and_receipts_only_work_on_their_queue() {
    let db = EmbeddedDb::in_memory().unwrap();
    let (a, b) = (db.queue("a"), db.queue("b"));
    a.send_batch(&[OutgoingMessage::new("for a")])
        .await
        .unwrap();
    assert!(
        b.receive(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    let got = a.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    // Another queue's receipt, and made-up receipts, delete nothing and are no error.
    b.ack(&got[0].receipt_handle).await.unwrap();
    a.ack("not-a-receipt").await.unwrap();
    a.ack("").await.unwrap();
    assert_eq!(
        a.receive(10, Duration::from_secs(60)).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn concurrent_receivers_never_share_a_message() {
    let db = EmbeddedDb::in_memory().unwrap();
    let q = db.queue("contended");
    let sent: Vec<_> = (0..100)
        .map(|i| OutgoingMessage::new(format!("{i}")))
        .collect();
    q.send_batch(&sent).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let got = q.receive(3, Duration::from_secs(60)).await.unwrap();
                if got.is_empty() {
                    return ids;
                }
                ids.extend(got.into_iter().map(|m| m.message_id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), 100);
    assert_eq!(distinct.len(), 100);
}

#[tokio::test]
async fn an_empty_batch_and_a_zero_receive_are_no_ops() {
    let q = memory_queue();
    q.send_batch(&[]).await.unwrap();
    q.send_batch(&[OutgoingMessage::new("x")]).await.unwrap();
    assert!(
        q.receive(0, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.counts().await.unwrap().visible, 1);
}

#[tokio::test]
async fn the_signal_wakes_an_idle_consumer_on_send() {
    let db = EmbeddedDb::in_memory().unwrap();
    let q = db.queue("signalled");
    let mut signal = q.subscribe();

    // Nothing sent: the wait runs to its limit.
    let started = Instant::now();
    signal.wait(Duration::from_millis(200)).await;
    assert!(started.elapsed() >= Duration::from_millis(190));

    // A send that happened before the wait is not missed.
    q.send_batch(&[OutgoingMessage::new("early")])
        .await
        .unwrap();
    let started = Instant::now();
    signal.wait(Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(5));

    // A send during the wait ends it.
    let sender = q.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sender
            .send_batch(&[OutgoingMessage::new("late")])
            .await
            .unwrap();
    });
    let started = Instant::now();
    signal.wait(Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    send.await.unwrap();
}

#[tokio::test]
async fn purge_removes_only_expired_inbound_records() {
    let db = EmbeddedDb::in_memory().unwrap();
    let store = db.store();
    let now = Timestamp::now();
    let record = |sub_key: &str, expires_at: Timestamp| KeptRecord {
        kind: KeptKind::OrphanStatus,
        key: "wamid.purge".to_owned(),
        sub_key: sub_key.to_owned(),
        received_at: now,
        expires_at,
        payload: json!({}),
        contact: None,
    };
    let live = record("live", now.plus(Duration::from_secs(3600)));
    store.put_kept(&live).await.unwrap();
    store
        .put_kept(&record("gone", Timestamp::from_millis(now.as_millis() - 1)))
        .await
        .unwrap();
    assert_eq!(db.purge_expired_kept().await.unwrap(), 1);
    assert_eq!(
        store
            .list_kept(KeptKind::OrphanStatus, "wamid.purge")
            .await
            .unwrap(),
        vec![live]
    );
}

// ---------------------------------------------------------------------------------------------
// File secret source
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "EAAG-very-secret-token";

fn secrets_document() -> serde_json::Value {
    json!({
        "whatsapp": { "access_token": SECRET, "phone_number_id": "123", "app_secret": "s3",
                      "verify_token": "v", "previous_app_secret": null },
        "smtp": null,
        "api_keys": { "keys": [ { "id": "app-1", "key": "k" } ] }
    })
}

#[tokio::test]
async fn file_secrets_return_each_member_as_json() {
    let source = FileSecretSource::from_json(secrets_document());
    let whatsapp = source.get(SecretName::Whatsapp, false).await.unwrap();
    let parsed: serde_json::Value = serde_json::from_str(whatsapp.expose_secret()).unwrap();
    assert_eq!(parsed, secrets_document()["whatsapp"]);
    let keys = source.get(SecretName::ApiKeys, true).await.unwrap();
    let parsed: serde_json::Value = serde_json::from_str(keys.expose_secret()).unwrap();
    assert_eq!(parsed["keys"][0]["id"], "app-1");
}

#[tokio::test]
async fn file_secrets_absent_or_null_members_are_missing() {
    let source = FileSecretSource::from_json(secrets_document());
    assert!(matches!(
        source.get(SecretName::Smtp, false).await,
        Err(SecretError::Missing(SecretName::Smtp))
    ));
    assert!(matches!(
        source.get(SecretName::Callbacks, false).await,
        Err(SecretError::Missing(SecretName::Callbacks))
    ));
}

#[tokio::test]
async fn file_secrets_refuse_a_file_that_is_not_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    for (i, content) in [
        format!("{{\"whatsapp\": {{\"access_token\": \"{SECRET}\""),
        "not json".to_owned(),
        format!("[\"{SECRET}\"]"),
        String::new(),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("secrets-{i}.json"));
        std::fs::write(&path, content).unwrap();
        let err = FileSecretSource::new(&path)
            .get(SecretName::Whatsapp, false)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                SecretError::Malformed {
                    name: SecretName::Whatsapp,
                    ..
                }
            ),
            "{content:?} gave {err:?}"
        );
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
    let not_an_object = FileSecretSource::from_json(json!([1, 2]));
    assert!(matches!(
        not_an_object.get(SecretName::Smtp, false).await,
        Err(SecretError::Malformed { .. })
    ));
}

#[tokio::test]
async fn file_secrets_report_an_unreadable_file_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let source = FileSecretSource::new(dir.path().join("absent.json"));
    assert!(matches!(
        source.get(SecretName::Whatsapp, false).await,
        Err(SecretError::Unavailable(_))
    ));
}

#[tokio::test]
async fn file_secrets_are_cached_until_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    std::fs::write(&path, r#"{"smtp": {"smtp_password": "old"}}"#).unwrap();
    let source = FileSecretSource::new(&path);
    let read = |refresh| {
        let source = &source;
        async move {
            let doc = source.get(SecretName::Smtp, refresh).await.unwrap();
            serde_json::from_str::<serde_json::Value>(doc.expose_secret()).unwrap()["smtp_password"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(read(false).await, "old");
    std::fs::write(&path, r#"{"smtp": {"smtp_password": "new"}}"#).unwrap();
    assert_eq!(read(false).await, "old");
    assert_eq!(read(true).await, "new");
    assert_eq!(read(false).await, "new");
}

#[tokio::test]
async fn file_secrets_debug_shows_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    std::fs::write(&path, secrets_document().to_string()).unwrap();
    let from_file = FileSecretSource::new(&path);
    from_file.get(SecretName::Whatsapp, false).await.unwrap();
    let inline = FileSecretSource::from_json(secrets_document());
    inline.get(SecretName::Whatsapp, false).await.unwrap();
    for shown in [
        format!("{from_file:?}"),
        format!("{inline:?}"),
        format!("{inline:#?}"),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("app-1"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
    let secret = inline.get(SecretName::Whatsapp, false).await.unwrap();
    assert!(!format!("{secret:?}").contains(SECRET));
}

#[tokio::test]
async fn limits_documents_are_versioned_and_expire() {
    conformance::limits_documents_are_versioned_and_expire(
        &EmbeddedDb::in_memory().unwrap().limits(),
    )
    .await;
}

#[tokio::test]
async fn limits_a_shared_bucket_is_never_overdrawn() {
    conformance::limits_a_shared_bucket_is_never_overdrawn(
        &EmbeddedDb::in_memory().unwrap().limits(),
    )
    .await;
}

#[tokio::test]
async fn limits_a_paused_bucket_gives_nothing_until_the_pause_ends() {
    conformance::limits_a_paused_bucket_gives_nothing_until_the_pause_ends(
        &EmbeddedDb::in_memory().unwrap().limits(),
    )
    .await;
}

#[tokio::test]
async fn suppressions_are_kept_listed_lapse_and_go() {
    conformance::suppressions_are_kept_listed_lapse_and_go(
        &EmbeddedDb::in_memory().unwrap().suppressions(),
    )
    .await;
}
