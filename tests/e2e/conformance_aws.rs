//! The AWS adapters (`SqsQueue`, `DynamoStore`, `SecretsManagerSource`) against moto: the
//! generic conformance suite, plus what only the AWS side has (chunking into
//! `SendMessageBatch` calls, `DelaySeconds`, the table's index and TTL attributes, the secrets
//! cache).

use carteiro_e2e::moto::moto;
use carteiro_shared::adapters::aws::{DynamoStore, SecretIds, SecretsManagerSource, SqsQueue, schema};
use carteiro_shared::domain::delivery::{Channel, DeliveryRecord, DeliveryStatus};
use carteiro_shared::domain::ids::{MessageId, Wamid};
use carteiro_shared::domain::time::Timestamp;
use carteiro_shared::ports::{
    CreateOutcome, DeliveryStore, InboundKind, InboundRecord, InsertOutcome, OutgoingMessage,
    Queue, QueueError, ReceivedMessage, ReplaceOutcome, SecretError, SecretName, SecretSource,
    StoreError,
};
use aws_sdk_dynamodb::types::AttributeValue;
use secrecy::ExposeSecret;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

async fn sqs_queue() -> SqsQueue {
    let m = moto();
    let url = m.create_queue("carteiro-test").await;
    SqsQueue::new(m.sqs().await, url)
}

async fn dynamo_store() -> DynamoStore {
    let m = moto();
    let table = m.create_table().await;
    DynamoStore::new(m.dynamodb().await, table)
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

fn queued_record() -> DeliveryRecord {
    DeliveryRecord::new_queued(
        MessageId::generate(),
        Channel::Whatsapp,
        "+5511999990001",
        serde_json::json!({"channel": "whatsapp", "to": "+5511999990001",
                           "text": {"body": "Olá", "preview_url": false}, "n": 1.5}),
        Timestamp::now(),
    )
}

fn inbound(kind: InboundKind, key: &str, sub_key: &str, expires_at: Timestamp) -> InboundRecord {
    InboundRecord {
        kind,
        key: key.to_owned(),
        sub_key: sub_key.to_owned(),
        received_at: Timestamp::now(),
        expires_at,
        payload: serde_json::json!({"sub": sub_key}),
    }
}

// ---------------------------------------------------------------------------------------------
// SQS

#[tokio::test]
async fn aws_sqs_round_trips_body_attributes_and_receive_count() {
    let q = sqs_queue().await;
    let msg = OutgoingMessage::new("{\"hello\":\"olá\"}").with_attribute("correlation_id", "corr-1");
    q.send_batch(std::slice::from_ref(&msg)).await.unwrap();

    let got = receive_all(&q, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.body, msg.body);
    assert_eq!(m.attributes.get("correlation_id").map(String::as_str), Some("corr-1"));
    assert_eq!(m.receive_count, 1);
    q.ack(&m.receipt_handle).await.unwrap();
    // Acknowledging twice is not an error.
    q.ack(&m.receipt_handle).await.unwrap();
    assert!(q.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn aws_sqs_batch_of_25_is_chunked_and_arrives_as_25() {
    let q = sqs_queue().await;
    let msgs: Vec<_> = (0..25).map(|i| OutgoingMessage::new(format!("m{i}"))).collect();
    q.send_batch(&msgs).await.unwrap();

    let got = receive_all(&q, 25, Duration::from_secs(10)).await;
    let bodies: BTreeSet<_> = got.iter().map(|m| m.body.clone()).collect();
    let want: BTreeSet<_> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want);
    assert_eq!(got.len(), 25, "no duplicates");
}

#[tokio::test]
async fn aws_sqs_delay_is_honoured() {
    let q = sqs_queue().await;
    let sent_at = Instant::now();
    q.send_batch(&[OutgoingMessage::new("later").with_delay(Duration::from_secs(2))])
        .await
        .unwrap();
    let early = q.receive(10, Duration::from_secs(30)).await.unwrap();
    if sent_at.elapsed() < Duration::from_millis(1500) {
        assert!(early.is_empty(), "a delayed message was visible at once");
    }
    let got = receive_all(&q, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "later");
    assert!(sent_at.elapsed() >= Duration::from_millis(1900), "arrived after {:?}", sent_at.elapsed());
}

#[tokio::test]
async fn aws_sqs_visibility_timeout_redelivers_with_a_higher_receive_count() {
    let q = sqs_queue().await;
    q.send_batch(&[OutgoingMessage::new("again")]).await.unwrap();
    let first = q.receive(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(q.receive(1, Duration::from_secs(1)).await.unwrap().is_empty(), "hidden while in flight");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = q.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2);
    q.ack(&second[0].receipt_handle).await.unwrap();
}

#[tokio::test]
async fn aws_sqs_failures_are_unavailable_and_carry_no_credentials() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "AKIDCARTEIROTEST",
            "s3cr3t-access-key-never-logged",
            Some("session-token-never-logged".into()),
            None,
            "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let q = SqsQueue::new(aws_sdk_sqs::Client::from_conf(config), "http://127.0.0.1/123456789012/q");
    let err = q.send_batch(&[OutgoingMessage::new("x")]).await.unwrap_err();
    let QueueError::Unavailable(msg) = &err else { panic!("{err:?}") };
    for secret in ["s3cr3t", "session-token"] {
        assert!(!msg.contains(secret), "{msg}");
        assert!(!format!("{err:?}").contains(secret));
    }
    assert!(matches!(q.receive(1, Duration::from_secs(1)).await, Err(QueueError::Unavailable(_))));
}

// ---------------------------------------------------------------------------------------------
// DynamoDB

#[tokio::test]
async fn aws_dynamo_create_is_conditional_and_get_round_trips() {
    let s = dynamo_store().await;
    let r = queued_record();
    assert_eq!(s.create(&r).await.unwrap(), CreateOutcome::Created);
    assert_eq!(s.create(&r).await.unwrap(), CreateOutcome::AlreadyExists);
    assert_eq!(s.get(&r.id).await.unwrap(), Some(r));
    assert_eq!(s.get(&MessageId::generate()).await.unwrap(), None);
}

#[tokio::test]
async fn aws_dynamo_replace_is_compare_and_swap_on_version() {
    let s = dynamo_store().await;
    let mut r = queued_record();
    s.create(&r).await.unwrap();
    r.version = 2;
    r.status = DeliveryStatus::Sending;
    assert_eq!(s.replace(&r, 1).await.unwrap(), ReplaceOutcome::Replaced);
    // A writer that read version 1 loses.
    let mut stale = r.clone();
    stale.version = 2;
    stale.status = DeliveryStatus::Cancelled;
    assert_eq!(s.replace(&stale, 1).await.unwrap(), ReplaceOutcome::Conflict);
    assert_eq!(s.get(&r.id).await.unwrap(), Some(r));
    // Replacing a record that does not exist is a conflict too.
    let ghost = queued_record();
    assert_eq!(s.replace(&ghost, 0).await.unwrap(), ReplaceOutcome::Conflict);
    assert_eq!(s.get(&ghost.id).await.unwrap(), None);
}

#[tokio::test]
async fn aws_dynamo_find_by_wamid_goes_through_the_index() {
    let s = dynamo_store().await;
    let mut r = queued_record();
    s.create(&r).await.unwrap();
    let wamid = Wamid::parse(&format!("wamid.{}", uuid::Uuid::now_v7().simple())).unwrap();
    assert_eq!(s.find_by_wamid(&wamid).await.unwrap(), None);
    r.version = 2;
    r.status = DeliveryStatus::Sent;
    r.provider_message_id = Some(wamid.as_str().to_owned());
    s.replace(&r, 1).await.unwrap();
    // moto's indexes are immediately consistent; DynamoDB's are not (hence the retry loop a
    // real caller would not have).
    let mut found = None;
    for _ in 0..20 {
        found = s.find_by_wamid(&wamid).await.unwrap();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found, Some(r));
}

#[tokio::test]
async fn aws_dynamo_items_carry_the_sparse_due_bucket_only_while_work_is_due() {
    let m = moto();
    let table = m.create_table().await;
    let client = m.dynamodb().await;
    let s = DynamoStore::new(client.clone(), table.clone());

    let mut r = queued_record();
    s.create(&r).await.unwrap();
    let due = |client: aws_sdk_dynamodb::Client, table: String| async move {
        client
            .query()
            .table_name(table)
            .index_name(schema::GSI_BY_DUE)
            .key_condition_expression("#b = :b AND #n <= :n")
            .expression_attribute_names("#b", schema::DUE_BUCKET)
            .expression_attribute_names("#n", schema::NEXT_ATTEMPT_AT)
            .expression_attribute_values(":b", AttributeValue::S(schema::DUE_BUCKET_PENDING.into()))
            .expression_attribute_values(":n", AttributeValue::N(i64::MAX.to_string()))
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
            .len()
    };
    assert_eq!(due(client.clone(), table.clone()).await, 0, "queued without next attempt");

    r.version = 2;
    r.status = DeliveryStatus::RetryScheduled;
    r.next_attempt_at = Some(Timestamp::now().plus(Duration::from_secs(3600)));
    s.replace(&r, 1).await.unwrap();
    assert_eq!(due(client.clone(), table.clone()).await, 1, "retry scheduled");

    r.version = 3;
    r.status = DeliveryStatus::Dead;
    s.replace(&r, 2).await.unwrap();
    assert_eq!(due(client.clone(), table.clone()).await, 0, "terminal, even with next_attempt_at");
    assert_eq!(s.get(&r.id).await.unwrap(), Some(r));
}

#[tokio::test]
async fn aws_dynamo_inbound_records_are_written_once_and_listed_by_sub_key() {
    let s = dynamo_store().await;
    let key = format!("wamid.{}", uuid::Uuid::now_v7().simple());
    let later = Timestamp::now().plus(Duration::from_secs(7 * 24 * 3600));
    let read = inbound(InboundKind::OrphanStatus, &key, "read", later);
    let sent = inbound(InboundKind::OrphanStatus, &key, "sent", later);
    let delivered = inbound(InboundKind::OrphanStatus, &key, "delivered", later);
    for r in [&read, &sent, &delivered] {
        assert_eq!(s.put_inbound(r).await.unwrap(), InsertOutcome::Inserted);
    }
    assert_eq!(s.put_inbound(&sent).await.unwrap(), InsertOutcome::Duplicate);
    // Same key, other kind: a different record.
    let msg = inbound(InboundKind::Message, &key, "", later);
    assert_eq!(s.put_inbound(&msg).await.unwrap(), InsertOutcome::Inserted);
    assert_eq!(s.put_inbound(&msg).await.unwrap(), InsertOutcome::Duplicate);

    let listed = s.list_inbound(InboundKind::OrphanStatus, &key).await.unwrap();
    assert_eq!(listed, vec![delivered, read, sent]);
    assert_eq!(s.list_inbound(InboundKind::Message, &key).await.unwrap(), vec![msg]);
    assert!(s.list_inbound(InboundKind::AccountEvent, &key).await.unwrap().is_empty());
}

#[tokio::test]
async fn aws_dynamo_inbound_expiry_is_ttl_seconds_and_filtered_on_read() {
    let m = moto();
    let table = m.create_table().await;
    let client = m.dynamodb().await;
    let s = DynamoStore::new(client.clone(), table.clone());
    let key = format!("evt-{}", uuid::Uuid::now_v7().simple());

    let expires = Timestamp::from_millis(Timestamp::now().as_millis() + 3_600_500);
    let live = inbound(InboundKind::AccountEvent, &key, "live", expires);
    let gone = inbound(InboundKind::AccountEvent, &key, "gone", Timestamp::from_secs(1_000));
    s.put_inbound(&live).await.unwrap();
    s.put_inbound(&gone).await.unwrap();

    let item = client
        .get_item()
        .table_name(&table)
        .key(schema::PK, AttributeValue::S(format!("account_event#{key}")))
        .key(schema::SK, AttributeValue::S("live".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let ttl = item[schema::TTL_ATTRIBUTE].as_n().unwrap().parse::<i64>().unwrap();
    assert_eq!(ttl, expires.as_millis() / 1000 + 1, "epoch seconds, rounded up");

    // Expired but not yet removed by TTL: never listed, and a new write may take its place.
    assert_eq!(s.list_inbound(InboundKind::AccountEvent, &key).await.unwrap(), vec![live]);
    let again = inbound(InboundKind::AccountEvent, &key, "gone", expires);
    assert_eq!(s.put_inbound(&again).await.unwrap(), InsertOutcome::Inserted);
    assert_eq!(s.list_inbound(InboundKind::AccountEvent, &key).await.unwrap().len(), 2);
}

#[tokio::test]
async fn aws_dynamo_missing_table_is_unavailable() {
    let m = moto();
    let s = DynamoStore::new(m.dynamodb().await, "no-such-table");
    assert!(matches!(s.get(&MessageId::generate()).await, Err(StoreError::Unavailable(_))));
}

// ---------------------------------------------------------------------------------------------
// Secrets Manager

async fn secrets_source(ids: SecretIds, ttl: Duration) -> SecretsManagerSource {
    let config = moto().sdk_config().await;
    SecretsManagerSource::from_sdk_config(&config, ids, ttl).await.unwrap()
}

#[tokio::test]
async fn aws_secrets_returns_the_stored_json_and_missing_for_unset_names() {
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
    assert!(matches!(src.get(SecretName::ApiKeys, false).await, Err(SecretError::Missing(SecretName::ApiKeys))));
    assert!(matches!(src.get(SecretName::Smtp, false).await, Err(SecretError::Missing(SecretName::Smtp))));
    let debug = format!("{src:?}");
    assert!(debug.contains(&arn) && !debug.contains("EAAG-token"), "{debug}");
}

#[tokio::test]
async fn aws_secrets_refresh_sees_a_new_value_and_the_cache_serves_the_old_one() {
    let m = moto();
    let arn = m.create_secret("carteiro-smtp", r#"{"smtp_password":"old"}"#).await;
    let src = secrets_source(
        SecretIds { smtp: Some(arn.clone()), ..SecretIds::default() },
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(src.get(SecretName::Smtp, false).await.unwrap().expose_secret(), r#"{"smtp_password":"old"}"#);

    m.secretsmanager()
        .await
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"smtp_password":"new"}"#)
        .send()
        .await
        .unwrap();
    // Within the TTL the cached value is served...
    assert_eq!(src.get(SecretName::Smtp, false).await.unwrap().expose_secret(), r#"{"smtp_password":"old"}"#);
    // ...until a refresh is asked for, which also updates the cache.
    assert_eq!(src.get(SecretName::Smtp, true).await.unwrap().expose_secret(), r#"{"smtp_password":"new"}"#);
    assert_eq!(src.get(SecretName::Smtp, false).await.unwrap().expose_secret(), r#"{"smtp_password":"new"}"#);
}

#[tokio::test]
async fn aws_secrets_after_the_ttl_a_rotation_is_picked_up() {
    let m = moto();
    let arn = m.create_secret("carteiro-api-keys", r#"{"keys":[]}"#).await;
    let src = secrets_source(
        SecretIds { api_keys: Some(arn.clone()), ..SecretIds::default() },
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(src.get(SecretName::ApiKeys, false).await.unwrap().expose_secret(), r#"{"keys":[]}"#);
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
    assert_eq!(
        src.get(SecretName::ApiKeys, false).await.unwrap().expose_secret(),
        r#"{"keys":[{"id":"a","key":"k"}]}"#
    );
}
