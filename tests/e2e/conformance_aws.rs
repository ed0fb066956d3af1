//! The AWS adapters (`SqsQueue`, `DynamoStore`, `SecretsManagerSource`) against moto: the
//! generic conformance suite (`carteiro_e2e::conformance`), one test per check, plus what only
//! the AWS side has: chunking into `SendMessageBatch` calls, `DelaySeconds` and its cap, the
//! retry of failed batch entries, the table's index and TTL attributes, the secrets cache, and
//! errors that carry no credentials.
//!
//! Every test makes its own queue, table or secret on the one moto server of this process.
//! `queue_stale_receipt_does_not_delete_redelivered_message` is not run here: SQS does not
//! promise it (see the suite's notes), and moto deletes on a stale receipt.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use carteiro_e2e::conformance;
use carteiro_e2e::moto::moto;
use carteiro_shared::adapters::aws::{
    DynamoStore, SecretIds, SecretsManagerSource, SqsQueue, schema,
};
use carteiro_shared::domain::delivery::{Channel, DeliveryRecord, DeliveryStatus};
use carteiro_shared::domain::ids::MessageId;
use carteiro_shared::domain::time::Timestamp;
use carteiro_shared::ports::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use carteiro_shared::ports::secrets::{SecretError, SecretName, SecretSource};
use carteiro_shared::ports::store::{
    DeliveryStore, InsertOutcome, KeptKind, KeptRecord, StoreError,
};
use secrecy::ExposeSecret;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn sqs_queue() -> SqsQueue {
    let m = moto();
    let url = m.create_queue("carteiro-conformance").await;
    SqsQueue::new(m.sqs().await, url)
}

async fn dynamo_store() -> DynamoStore {
    let m = moto();
    let table = m.create_table().await;
    DynamoStore::new(m.dynamodb().await, table)
}

/// One test per queue check, each on a fresh queue.
macro_rules! queue_checks {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            conformance::$check(&sqs_queue().await).await;
        }
    )*};
}

/// One test per store check, each on a fresh table.
macro_rules! store_checks {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            conformance::$check(&dynamo_store().await).await;
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

/// Every store check at once on one table, as deployed functions share one.
#[tokio::test]
async fn store_checks_share_one_table_concurrently() {
    let store = dynamo_store().await;
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

/// Receives until `want` messages arrived or `within` passed.
async fn receive_all(q: &SqsQueue, want: usize, within: Duration) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let batch = q.receive(10, Duration::from_secs(60)).await.unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        got.extend(batch);
    }
    got
}

// ---------------------------------------------------------------------------------------------
// SQS

/// 25 messages in one call: SQS takes at most 10 per `SendMessageBatch` (moto refuses 11 with
/// `TooManyEntriesInBatchRequest`), so arriving at all proves the chunking; the queue's own
/// count proves nothing was sent twice.
#[tokio::test]
async fn aws_sqs_batch_of_25_is_chunked_and_arrives_as_25() {
    let m = moto();
    let url = m.create_queue("carteiro-chunks").await;
    let client = m.sqs().await;
    let q = SqsQueue::new(client.clone(), url.clone());
    let msgs: Vec<_> = (0..25)
        .map(|i| OutgoingMessage::new(format!("m{i}")))
        .collect();
    q.send_batch(&msgs).await.unwrap();

    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let count = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .map(String::as_str);
    assert_eq!(count, Some("25"));

    let got = receive_all(&q, 25, Duration::from_secs(10)).await;
    let bodies: BTreeSet<_> = got.iter().map(|m| m.body.clone()).collect();
    let want: BTreeSet<_> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want);
    assert_eq!(got.len(), 25, "no duplicates");
}

/// Five 250 KiB messages exceed SQS's 1 MiB per `SendMessageBatch` (moto refuses such a
/// request with `BatchRequestTooLong`), so the adapter splits by size as well as by count.
#[tokio::test]
async fn aws_sqs_large_messages_are_split_by_batch_size() {
    let q = sqs_queue().await;
    let msgs: Vec<_> = (0..5)
        .map(|i| OutgoingMessage::new(format!("{i}{}", "x".repeat(250 * 1024 - 1))))
        .collect();
    q.send_batch(&msgs).await.unwrap();
    let got = receive_all(&q, 5, Duration::from_secs(10)).await;
    let mut firsts: Vec<_> = got
        .iter()
        .map(|m| (m.body.len(), m.body[..1].to_owned()))
        .collect();
    firsts.sort();
    let want: Vec<_> = (0..5).map(|i| (250 * 1024, i.to_string())).collect();
    assert_eq!(firsts, want);
}

/// A 2 s delay hides the message for 2 s; a delay beyond SQS's 15-minute maximum is capped
/// rather than refused.
#[tokio::test]
async fn aws_sqs_delay_is_honoured_and_capped() {
    let q = sqs_queue().await;
    let sent_at = Instant::now();
    let mut too_long = OutgoingMessage::new("much later");
    too_long.delay = Duration::from_secs(3600); // bypasses with_delay's cap
    q.send_batch(&[
        OutgoingMessage::new("later").with_delay(Duration::from_secs(2)),
        too_long,
    ])
    .await
    .unwrap();
    let early = q.receive(10, Duration::from_secs(30)).await.unwrap();
    if sent_at.elapsed() < Duration::from_millis(1500) {
        assert!(
            early.is_empty(),
            "a delayed message was visible at once: {early:?}"
        );
    }
    let got = receive_all(&q, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "later");
    assert!(
        sent_at.elapsed() >= Duration::from_millis(1950),
        "arrived after {:?}",
        sent_at.elapsed()
    );
    assert!(
        q.receive(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A receipt handle SQS calls invalid (moto answers `ReceiptHandleIsInvalid` for a made-up
/// one) counts as acknowledged.
#[tokio::test]
async fn aws_sqs_ack_with_an_invalid_receipt_is_not_an_error() {
    let q = sqs_queue().await;
    q.ack("not-a-receipt-handle").await.unwrap();
}

/// Transport failures are `Unavailable`, and neither the message nor `Debug` shows the
/// credentials.
#[tokio::test]
async fn aws_sqs_failures_are_unavailable_and_carry_no_credentials() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let q = SqsQueue::new(
        sqs_client_for(&format!("http://127.0.0.1:{port}")),
        "http://127.0.0.1/123456789012/q",
    );
    let err = q
        .send_batch(&[OutgoingMessage::new("x")])
        .await
        .unwrap_err();
    let QueueError::Unavailable(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.starts_with("SendMessageBatch: "), "{msg}");
    for shown in [msg.clone(), format!("{err:?}")] {
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("session-token"),
            "{shown}"
        );
    }
    assert!(matches!(
        q.receive(1, Duration::from_secs(1)).await,
        Err(QueueError::Unavailable(_))
    ));
    assert!(matches!(q.ack("r").await, Err(QueueError::Unavailable(_))));
}

fn sqs_client_for(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "AKIDCARTEIROTEST",
            "s3cr3t-access-key-never-shown",
            Some("session-token-never-shown".into()),
            None,
            "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A stand-in for SQS's `SendMessageBatch` that fails entries by their body: `fail-once*`
/// fails the first time it is seen, `fail-always*` every time (a server fault both), and
/// `refused*` is a sender fault. moto never fails single entries, hence this. Returns the
/// endpoint and the bodies of each call, in order.
async fn flaky_sqs() -> (String, Arc<Mutex<Vec<Vec<String>>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let calls: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let log = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (calls, seen) = (log.clone(), seen.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    // Request head, then a Content-Length body (the SDK sends no chunked
                    // bodies for JSON requests).
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; length];
                    stream.read_exact(&mut body).await.unwrap();
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();

                    let (mut ok, mut failed, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
                    for entry in request["Entries"].as_array().unwrap() {
                        let id = entry["Id"].as_str().unwrap().to_owned();
                        let text = entry["MessageBody"].as_str().unwrap().to_owned();
                        let first_time = seen.lock().unwrap().insert(text.clone());
                        bodies.push(text.clone());
                        if text.starts_with("refused") {
                            failed.push(serde_json::json!({"Id": id, "SenderFault": true,
                                "Code": "InvalidParameterValue", "Message": "refused"}));
                        } else if text.starts_with("fail-always")
                            || (text.starts_with("fail-once") && first_time)
                        {
                            failed.push(serde_json::json!({"Id": id, "SenderFault": false,
                                "Code": "InternalError", "Message": "try again"}));
                        } else {
                            ok.push(
                                serde_json::json!({"Id": id, "MessageId": format!("m-{text}"),
                                "MD5OfMessageBody": "00000000000000000000000000000000"}),
                            );
                        }
                    }
                    calls.lock().unwrap().push(bodies);
                    let response =
                        serde_json::json!({"Successful": ok, "Failed": failed}).to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n\
                         x-amzn-RequestId: test\r\nContent-Length: {}\r\n\r\n",
                        response.len()
                    );
                    let out = stream.get_mut();
                    if out.write_all(head.as_bytes()).await.is_err()
                        || out.write_all(response.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, calls)
}

/// Entries SQS fails are sent once more, alone; sender faults are not retried; what still
/// fails is reported as `Partial` over the whole slice, and later chunks are still sent.
#[tokio::test]
async fn aws_sqs_failed_entries_are_retried_once_then_reported_partial() {
    let (endpoint, calls) = flaky_sqs().await;
    let q = SqsQueue::new(
        sqs_client_for(&endpoint),
        format!("{endpoint}/123456789012/q"),
    );

    // Transient failures that clear on the retry: success.
    let msgs: Vec<_> = ["a", "fail-once-1", "b", "fail-once-2"]
        .into_iter()
        .map(OutgoingMessage::new)
        .collect();
    q.send_batch(&msgs).await.unwrap();
    assert_eq!(
        calls.lock().unwrap().clone(),
        vec![
            vec!["a", "fail-once-1", "b", "fail-once-2"],
            vec!["fail-once-1", "fail-once-2"],
        ]
    );

    // 12 messages: chunk one has a persistent failure and a refusal, chunk two is fine.
    calls.lock().unwrap().clear();
    let mut bodies: Vec<String> = (0..12).map(|i| format!("ok-{i}")).collect();
    bodies[3] = "fail-always".to_owned();
    bodies[5] = "refused".to_owned();
    let msgs: Vec<_> = bodies.iter().map(OutgoingMessage::new).collect();
    let err = q.send_batch(&msgs).await.unwrap_err();
    let QueueError::Partial {
        failed,
        total,
        reason,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!((failed, total), (2, 12));
    assert!(
        reason.contains("InvalidParameterValue") || reason.contains("InternalError"),
        "{reason}"
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0].len(), 10);
    assert_eq!(
        calls[1],
        vec!["fail-always"],
        "only the server-side failure is retried"
    );
    assert_eq!(calls[2], vec!["ok-10", "ok-11"]);
}

// ---------------------------------------------------------------------------------------------
// DynamoDB

fn queued_record() -> DeliveryRecord {
    DeliveryRecord::new_queued(
        MessageId::generate(),
        Channel::Whatsapp,
        "+5511999990001",
        serde_json::json!({"channel": "whatsapp", "to": "+5511999990001",
                           "text": {"body": "Olá", "preview_url": false}}),
        Timestamp::now(),
    )
}

fn inbound(key: &str, sub_key: &str, expires_at: Timestamp) -> KeptRecord {
    KeptRecord {
        kind: KeptKind::AccountEvent,
        key: key.to_owned(),
        sub_key: sub_key.to_owned(),
        received_at: Timestamp::now(),
        expires_at,
        payload: serde_json::json!({"sub": sub_key}),
        contact: None,
    }
}

/// The item layout template.yaml's indexes rely on: keys, a top-level `provider_message_id`,
/// and `due_bucket`/`due_at` only while work is pending (not once the record is terminal).
#[tokio::test]
async fn aws_dynamo_items_carry_the_index_attributes_the_sweeper_needs() {
    let m = moto();
    let table = m.create_table().await;
    let client = m.dynamodb().await;
    let s = DynamoStore::new(client.clone(), table.clone());

    let due_ids = || {
        let s = s.clone();
        async move {
            s.list_due(Timestamp::from_millis(i64::MAX), 100)
                .await
                .unwrap()
                .into_iter()
                .map(|d| format!("msg#{}", d.id))
                .collect::<Vec<_>>()
        }
    };

    let mut r = queued_record();
    s.create(&r).await.unwrap();
    assert_eq!(
        due_ids().await,
        vec![format!("msg#{}", r.id)],
        "queued: the sweeper checks its grace period"
    );

    r.version = 2;
    r.status = DeliveryStatus::RetryScheduled;
    r.next_attempt_at = Some(Timestamp::now().plus(Duration::from_secs(3600)));
    s.replace(&r, 1).await.unwrap();
    assert_eq!(
        due_ids().await,
        vec![format!("msg#{}", r.id)],
        "retry scheduled"
    );

    r.version = 3;
    r.status = DeliveryStatus::Dead;
    r.provider_message_id = Some("wamid.DUE".into());
    s.replace(&r, 2).await.unwrap();
    assert!(
        due_ids().await.is_empty(),
        "terminal, even with next_attempt_at"
    );

    let item = client
        .get_item()
        .table_name(&table)
        .key(schema::PK, AttributeValue::S(format!("msg#{}", r.id)))
        .key(schema::SK, AttributeValue::S(schema::RECORD_SK.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        item[schema::PROVIDER_MESSAGE_ID].as_s().unwrap(),
        "wamid.DUE"
    );
    assert_eq!(s.get(&r.id).await.unwrap(), Some(r));
}

/// `expires_at` is stored in epoch seconds (DynamoDB's TTL ignores anything else), rounded up;
/// the record still reads back to the millisecond, and an expired record TTL has not removed
/// yet is neither listed nor in the way of a new one.
#[tokio::test]
async fn aws_dynamo_inbound_expiry_is_ttl_seconds_and_filtered_on_read() {
    let m = moto();
    let table = m.create_table().await;
    let client = m.dynamodb().await;
    let s = DynamoStore::new(client.clone(), table.clone());
    let key = format!("evt-{}", uuid::Uuid::now_v7().simple());

    let expires = Timestamp::from_millis(Timestamp::now().as_millis() / 1000 * 1000 + 3_600_500);
    let live = inbound(&key, "live", expires);
    let gone = inbound(&key, "gone", Timestamp::from_secs(1_000));
    s.put_kept(&live).await.unwrap();
    s.put_kept(&gone).await.unwrap();

    let ttl_of = |sk: &'static str| {
        let (client, table, key) = (client.clone(), table.clone(), key.clone());
        async move {
            client
                .get_item()
                .table_name(&table)
                .key(
                    schema::PK,
                    AttributeValue::S(format!("account_event#{key}")),
                )
                .key(schema::SK, AttributeValue::S(sk.into()))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .unwrap()[schema::TTL_ATTRIBUTE]
                .as_n()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        }
    };
    assert_eq!(ttl_of("live").await, expires.as_millis() / 1000 + 1);
    assert_eq!(ttl_of("gone").await, 1_000);

    assert_eq!(
        s.list_kept(KeptKind::AccountEvent, &key).await.unwrap(),
        vec![live.clone()]
    );
    let again = inbound(&key, "gone", expires);
    assert_eq!(s.put_kept(&again).await.unwrap(), InsertOutcome::Inserted);
    assert_eq!(
        s.list_kept(KeptKind::AccountEvent, &key).await.unwrap(),
        vec![again, live]
    );
}

#[tokio::test]
async fn aws_dynamo_a_missing_table_is_unavailable() {
    let s = DynamoStore::new(moto().dynamodb().await, "no-such-table");
    let err = s.get(&MessageId::generate()).await.unwrap_err();
    let StoreError::Unavailable(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("ResourceNotFoundException"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Secrets Manager

async fn secrets_source(ids: SecretIds, ttl: Duration) -> SecretsManagerSource {
    let config = moto().sdk_config().await;
    SecretsManagerSource::new(&config, ids, ttl).await.unwrap()
}

#[tokio::test]
async fn aws_secrets_return_the_stored_json_and_missing_for_unset_names() {
    let doc = r#"{"access_token":"EAAG-token","phone_number_id":"123","app_secret":"s","verify_token":"v"}"#;
    let arn = moto().create_secret("carteiro-whatsapp", doc).await;
    let src = secrets_source(
        SecretIds {
            whatsapp: Some(arn.clone()),
            smtp: Some(format!("{arn}-does-not-exist")),
            ..SecretIds::default()
        },
        Duration::from_secs(300),
    )
    .await;

    let got = src.get(SecretName::Whatsapp, false).await.unwrap();
    assert_eq!(got.expose_secret(), doc);
    assert!(matches!(
        src.get(SecretName::ApiKeys, false).await,
        Err(SecretError::Missing(SecretName::ApiKeys))
    ));
    // An id Secrets Manager does not know is missing too.
    assert!(matches!(
        src.get(SecretName::Smtp, true).await,
        Err(SecretError::Missing(SecretName::Smtp))
    ));
    let debug = format!("{src:?}");
    assert!(
        debug.contains(&arn) && !debug.contains("EAAG-token"),
        "{debug}"
    );
}

#[tokio::test]
async fn aws_secrets_serve_the_stale_value_when_a_refresh_past_the_ttl_fails() {
    use wiremock::matchers::{header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // Secrets Manager that answers once, then fails every call as an outage would.
    let server = MockServer::start().await;
    let target = || header("x-amz-target", "secretsmanager.GetSecretValue");
    Mock::given(method("POST"))
        .and(target())
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:w", "Name": "w",
            "SecretString": "{\"v\":1}", "VersionId": "v1", "VersionStages": ["AWSCURRENT"]
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(target())
        .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
            "__type": "InternalServiceError", "message": "injected outage"
        })))
        .mount(&server)
        .await;
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(server.uri())
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "AKIDCARTEIROTEST",
            "s3cr3t",
            None,
            None,
            "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled());
    let ids = SecretIds {
        whatsapp: Some("w".into()),
        ..SecretIds::default()
    };
    let src = SecretsManagerSource::from_builder(config, ids, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        src.get(SecretName::Whatsapp, false)
            .await
            .unwrap()
            .expose_secret(),
        "{\"v\":1}"
    );
    // Past the TTL (zero) the read fails: the cached value is still served...
    assert_eq!(
        src.get(SecretName::Whatsapp, false)
            .await
            .unwrap()
            .expose_secret(),
        "{\"v\":1}"
    );
    // ...but a forced refresh (a provider refused the cached credential) reports the outage.
    assert!(matches!(
        src.get(SecretName::Whatsapp, true).await,
        Err(SecretError::Unavailable(_))
    ));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn aws_secrets_refresh_sees_a_new_value_the_cache_serves_the_old_one() {
    let m = moto();
    let arn = m
        .create_secret("carteiro-smtp", r#"{"smtp_password":"old"}"#)
        .await;
    let src = secrets_source(
        SecretIds {
            smtp: Some(arn.clone()),
            ..SecretIds::default()
        },
        Duration::from_secs(300),
    )
    .await;
    let read = |refresh| {
        let src = &src;
        async move {
            src.get(SecretName::Smtp, refresh)
                .await
                .unwrap()
                .expose_secret()
                .to_owned()
        }
    };
    assert_eq!(read(false).await, r#"{"smtp_password":"old"}"#);

    m.secretsmanager()
        .await
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"smtp_password":"new"}"#)
        .send()
        .await
        .unwrap();
    // Within the TTL the cached value is served...
    assert_eq!(read(false).await, r#"{"smtp_password":"old"}"#);
    // ...until a refresh is asked for, which updates the cache too.
    assert_eq!(read(true).await, r#"{"smtp_password":"new"}"#);
    assert_eq!(read(false).await, r#"{"smtp_password":"new"}"#);
}

#[tokio::test]
async fn aws_secrets_pick_up_a_rotation_once_the_ttl_passed() {
    let m = moto();
    let arn = m.create_secret("carteiro-api-keys", r#"{"keys":[]}"#).await;
    let src = secrets_source(
        SecretIds {
            api_keys: Some(arn.clone()),
            ..SecretIds::default()
        },
        Duration::from_secs(1),
    )
    .await;
    let read = || async {
        src.get(SecretName::ApiKeys, false)
            .await
            .unwrap()
            .expose_secret()
            .to_owned()
    };
    assert_eq!(read().await, r#"{"keys":[]}"#);
    m.secretsmanager()
        .await
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"keys":[{"id":"a","key":"k"}]}"#)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The expired entry is checked with DescribeSecret; AWSCURRENT moved, so it is re-read.
    assert_eq!(read().await, r#"{"keys":[{"id":"a","key":"k"}]}"#);
}

async fn dynamo_limits() -> carteiro_shared::adapters::aws::DynamoLimits {
    let m = moto();
    let table = m.create_table().await;
    carteiro_shared::adapters::aws::DynamoLimits::new(m.dynamodb().await, table)
}

#[tokio::test]
async fn aws_limits_documents_are_versioned_and_expire() {
    conformance::limits_documents_are_versioned_and_expire(&dynamo_limits().await).await;
}

#[tokio::test]
async fn aws_limits_a_shared_bucket_is_never_overdrawn() {
    conformance::limits_a_shared_bucket_is_never_overdrawn(&dynamo_limits().await).await;
}

#[tokio::test]
async fn aws_limits_a_paused_bucket_gives_nothing_until_the_pause_ends() {
    conformance::limits_a_paused_bucket_gives_nothing_until_the_pause_ends(&dynamo_limits().await)
        .await;
}

#[tokio::test]
async fn aws_suppressions_are_kept_listed_lapse_and_go() {
    let m = moto();
    let table = m.create_table().await;
    let store = carteiro_shared::adapters::aws::DynamoSuppressions::new(m.dynamodb().await, table);
    conformance::suppressions_are_kept_listed_lapse_and_go(&store).await;
}
