//! [`DeliveryStore`] over one DynamoDB table (the schema in [`super::schema`]).
//!
//! **Delivery records** live at `pk = msg#<id>`, `sk = record`, serialised with serde_dynamo,
//! so every field is a top-level attribute: `provider_message_id` feeds the `by-provider-id`
//! index, and a record with work pending also carries `due_bucket = "pending#<shard>"` and
//! `due_at` (epoch ms), which put it in the sparse `by-due` index the sweeper scans, one
//! query per shard. `create` and `replace` are conditional `PutItem`s
//! (`attribute_not_exists(pk)` and `#version = :expected`), so each transition is
//! compare-and-swap on the record's version. `get` is a strongly consistent read.
//!
//! `find_by_wamid` queries `by-provider-id` and then reads the base item strongly consistent.
//! Global secondary indexes are **eventually consistent**: a wamid written a moment ago may
//! not be found yet (the caller parks the status as an orphan and reconciles it later), and
//! an index entry may be stale, which is why the base item is re-read and its
//! `provider_message_id` checked.
//!
//! **Inbound records** live at `pk = <kind>#<key>`, `sk = <sub_key>` (or `-` when empty).
//! `expires_at` is the table's TTL attribute and is therefore stored in epoch **seconds**
//! (rounded up, so TTL never removes a record early); the exact millisecond instant is kept
//! in `expires_at_ms`. TTL deletion is lazy (typically within two days), so reads drop
//! expired records themselves, and `put_kept` may overwrite a record that expired but is
//! still stored.
//!
//! **State documents** live at `pk = state#<kind>#<key>`, `sk = state`, with `version` (N) and
//! `body` (S, the JSON document); `put_state` is a conditional `PutItem` on the version
//! (`attribute_not_exists(pk)` for the first write).

use super::describe_sdk_error;
use super::schema;
use crate::domain::delivery::DeliveryRecord;
use crate::domain::ids::{MessageId, Wamid};
use crate::domain::time::Timestamp;
use crate::ports::clock::{Clock, SystemClock};
use crate::ports::store::{
    ConversationItem, CreateOutcome, Cursor, DUE_SHARDS, DeliveryStore, DueRecord, InsertOutcome,
    KeptKind, KeptRecord, MessageFilter, Page, ReplaceOutcome, StateDoc, StateKind, StoreError,
    due_shard,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
use std::collections::HashMap;
use std::sync::Arc;

type Item = HashMap<String, AttributeValue>;

/// The exact expiry of an inbound record, in epoch ms (`expires_at` holds seconds for TTL).
const EXPIRES_AT_MS: &str = "expires_at_ms";

/// A [`DeliveryStore`] backed by one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl DynamoStore {
    /// The store on the table named by `CARTEIRO_TABLE_NAME`.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        env: crate::config::Env<'_>,
    ) -> Result<Self, crate::config::ConfigError> {
        let table = env.required("CARTEIRO_TABLE_NAME")?;
        Ok(Self::new(aws_sdk_dynamodb::Client::new(sdk), table))
    }

    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` to decide which inbound records have expired (tests pin time with it).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(schema::PK, AttributeValue::S(pk))
            .key(schema::SK, AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(describe_sdk_error("GetItem", &e)))?;
        Ok(out.item)
    }

    /// Puts `item` under `condition`; `Ok(false)` when the condition failed.
    async fn put_conditional(
        &self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        put_conditional(&self.client, &self.table, item, condition, names, values).await
    }

    /// Runs a query to the end, page by page.
    async fn query_all(
        &self,
        index: Option<&str>,
        hash_name: &str,
        hash_value: String,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression("#h = :h")
                .expression_attribute_names("#h", hash_name)
                .expression_attribute_values(":h", AttributeValue::S(hash_value.clone()))
                .consistent_read(consistent)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(describe_sdk_error("Query", &e)))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// Puts `item` in `table` under `condition`; `Ok(false)` when the condition failed. Every
/// conditional write of the delivery store and of the limits goes through here.
pub(super) async fn put_conditional(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    item: Item,
    condition: &str,
    names: &[(&str, &str)],
    values: Vec<(&str, AttributeValue)>,
) -> Result<bool, StoreError> {
    let mut req = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition);
    for (k, v) in names {
        req = req.expression_attribute_names(*k, *v);
    }
    for (k, v) in values {
        req = req.expression_attribute_values(k, v);
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(StoreError::Unavailable(describe_sdk_error("PutItem", &e))),
    }
}

fn due_bucket(shard: u32) -> String {
    format!("{}{shard}", schema::DUE_BUCKET_PREFIX)
}

fn message_pk(id: &MessageId) -> String {
    format!("{}{}", schema::MESSAGE_PK_PREFIX, id.as_str())
}

fn inbound_pk(kind: KeptKind, key: &str) -> String {
    format!("{}#{key}", kind.as_str())
}

fn inbound_sk(sub_key: &str) -> &str {
    if sub_key.is_empty() {
        schema::EMPTY_SUB_KEY_SK
    } else {
        sub_key
    }
}

/// Epoch seconds, rounded up.
fn ceil_secs(t: Timestamp) -> i64 {
    let ms = t.as_millis();
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0)
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// The item for a delivery record, with its keys and index attributes.
fn record_item(record: &DeliveryRecord) -> Result<Item, StoreError> {
    let mut item: Item = to_item(record).map_err(|e| {
        StoreError::Corrupt(format!(
            "delivery record {} could not be encoded: {e}",
            record.id
        ))
    })?;
    item.insert(
        schema::PK.to_owned(),
        AttributeValue::S(message_pk(&record.id)),
    );
    item.insert(
        schema::SK.to_owned(),
        AttributeValue::S(schema::RECORD_SK.to_owned()),
    );
    // An index key may not be an empty string; an empty provider id means none.
    if record.provider_message_id.as_deref() == Some("") {
        item.remove(schema::PROVIDER_MESSAGE_ID);
    }
    // The listings' sparse indexes (a callback has no owner and no contact).
    let at = Cursor {
        at_ms: record.created_at.as_millis(),
        id: record.id.as_str().to_owned(),
    }
    .sort_key();
    if let Some(owner) = record.api_key_id.as_deref().filter(|o| !o.is_empty()) {
        item.insert(
            schema::OWNER.to_owned(),
            AttributeValue::S(owner.to_owned()),
        );
        item.insert(schema::OWNER_AT.to_owned(), AttributeValue::S(at.clone()));
    }
    if let Some(contact) = record.conversation_contact().filter(|c| !c.is_empty()) {
        item.insert(schema::CONTACT.to_owned(), AttributeValue::S(contact));
        item.insert(schema::CONTACT_AT.to_owned(), AttributeValue::S(at));
    }
    if let Some(due_at) = record.sweep_due_at() {
        item.insert(
            schema::DUE_BUCKET.to_owned(),
            AttributeValue::S(due_bucket(due_shard(&record.id))),
        );
        item.insert(schema::DUE_AT.to_owned(), number(due_at.as_millis()));
    } else {
        item.remove(schema::DUE_BUCKET);
        item.remove(schema::DUE_AT);
    }
    Ok(item)
}

fn record_from_item(item: Item) -> Result<DeliveryRecord, StoreError> {
    let pk = match item.get(schema::PK) {
        Some(AttributeValue::S(pk)) => pk.clone(),
        _ => String::from("(no pk)"),
    };
    from_item(item)
        .map_err(|e| StoreError::Corrupt(format!("delivery record {pk} could not be decoded: {e}")))
}

/// The item for an inbound record: `expires_at` in epoch seconds for TTL, the exact instant
/// in `expires_at_ms`.
fn inbound_item(record: &KeptRecord) -> Result<Item, StoreError> {
    let pk = inbound_pk(record.kind, &record.key);
    let mut item: Item = to_item(record).map_err(|e| {
        StoreError::Corrupt(format!("inbound record {pk} could not be encoded: {e}"))
    })?;
    item.insert(schema::PK.to_owned(), AttributeValue::S(pk));
    item.insert(
        schema::SK.to_owned(),
        AttributeValue::S(inbound_sk(&record.sub_key).to_owned()),
    );
    item.insert(
        schema::TTL_ATTRIBUTE.to_owned(),
        number(ceil_secs(record.expires_at)),
    );
    item.insert(
        EXPIRES_AT_MS.to_owned(),
        number(record.expires_at.as_millis()),
    );
    // `contact` is the record's own field; with it, the conversation index's range key.
    if record.contact.as_deref().is_some_and(|c| !c.is_empty()) {
        let at = Cursor {
            at_ms: record.received_at.as_millis(),
            id: record.key.clone(),
        };
        item.insert(
            schema::CONTACT_AT.to_owned(),
            AttributeValue::S(at.sort_key()),
        );
    } else {
        item.remove(schema::CONTACT);
    }
    Ok(item)
}

fn inbound_from_item(mut item: Item) -> Result<KeptRecord, StoreError> {
    let pk = match item.get(schema::PK) {
        Some(AttributeValue::S(pk)) => pk.clone(),
        _ => String::from("(no pk)"),
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("inbound record {pk}: {what}"));
    let expires_ms = match item.remove(EXPIRES_AT_MS) {
        Some(AttributeValue::N(ms)) => ms
            .parse::<i64>()
            .map_err(|_| corrupt("expires_at_ms is not a whole number"))?,
        // Written by something else: only the TTL seconds are known.
        _ => match item.get(schema::TTL_ATTRIBUTE) {
            Some(AttributeValue::N(secs)) => secs
                .parse::<i64>()
                .map_err(|_| corrupt("expires_at is not a whole number"))?
                .saturating_mul(1000),
            _ => return Err(corrupt("expires_at is missing")),
        },
    };
    item.insert(schema::TTL_ATTRIBUTE.to_owned(), number(expires_ms));
    from_item(item).map_err(|e| corrupt(&format!("could not be decoded: {e}")))
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn create(&self, record: &DeliveryRecord) -> Result<CreateOutcome, StoreError> {
        let item = record_item(record)?;
        let created = self
            .put_conditional(
                item,
                "attribute_not_exists(#pk)",
                &[("#pk", schema::PK)],
                Vec::new(),
            )
            .await?;
        Ok(if created {
            CreateOutcome::Created
        } else {
            CreateOutcome::AlreadyExists
        })
    }

    async fn get(&self, id: &MessageId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.get_item(message_pk(id), schema::RECORD_SK)
            .await?
            .map(record_from_item)
            .transpose()
    }

    async fn find_by_wamid(&self, wamid: &Wamid) -> Result<Option<DeliveryRecord>, StoreError> {
        // The index is eventually consistent and not unique: re-read each candidate's base
        // item and keep the first that still carries this wamid.
        let keys = self
            .query_all(
                Some(schema::GSI_BY_PROVIDER_ID),
                schema::PROVIDER_MESSAGE_ID,
                wamid.as_str().to_owned(),
                false,
            )
            .await?;
        for key in keys {
            let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) =
                (key.get(schema::PK), key.get(schema::SK))
            else {
                continue;
            };
            if sk != schema::RECORD_SK || !pk.starts_with(schema::MESSAGE_PK_PREFIX) {
                continue;
            }
            if let Some(item) = self.get_item(pk.clone(), sk).await? {
                let record = record_from_item(item)?;
                if record.provider_message_id.as_deref() == Some(wamid.as_str()) {
                    return Ok(Some(record));
                }
            }
        }
        Ok(None)
    }

    async fn replace(
        &self,
        record: &DeliveryRecord,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let item = record_item(record)?;
        let replaced = self
            .put_conditional(
                item,
                "#version = :expected",
                &[("#version", "version")],
                vec![(":expected", AttributeValue::N(expected_version.to_string()))],
            )
            .await?;
        Ok(if replaced {
            ReplaceOutcome::Replaced
        } else {
            ReplaceOutcome::Conflict
        })
    }

    async fn list_due(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueRecord>, StoreError> {
        let mut due = Vec::new();
        for shard in 0..DUE_SHARDS {
            let mut start: Option<Item> = None;
            while due.len() < limit {
                let page = i32::try_from(limit - due.len())
                    .unwrap_or(i32::MAX)
                    .min(1_000);
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(schema::GSI_BY_DUE)
                    .key_condition_expression("#b = :b AND #d <= :d")
                    .expression_attribute_names("#b", schema::DUE_BUCKET)
                    .expression_attribute_names("#d", schema::DUE_AT)
                    .expression_attribute_values(":b", AttributeValue::S(due_bucket(shard)))
                    .expression_attribute_values(":d", number(before.as_millis()))
                    .limit(page)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| StoreError::Unavailable(describe_sdk_error("Query", &e)))?;
                for item in out.items.unwrap_or_default() {
                    let id = match item.get(schema::PK) {
                        Some(AttributeValue::S(pk)) => pk.strip_prefix(schema::MESSAGE_PK_PREFIX),
                        _ => None,
                    }
                    .and_then(|id| MessageId::parse(id).ok());
                    let at = match item.get(schema::DUE_AT) {
                        Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
                        _ => None,
                    };
                    if let (Some(id), Some(at)) = (id, at) {
                        due.push(DueRecord {
                            id,
                            due_at: Timestamp::from_millis(at),
                        });
                    }
                }
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        due.truncate(limit);
        Ok(due)
    }

    async fn put_kept(&self, record: &KeptRecord) -> Result<InsertOutcome, StoreError> {
        let item = inbound_item(record)?;
        let now = self.clock.now();
        // A record that expired but that TTL has not removed yet is as good as absent.
        let inserted = self
            .put_conditional(
                item,
                "attribute_not_exists(#pk) OR #exp <= :now",
                &[("#pk", schema::PK), ("#exp", EXPIRES_AT_MS)],
                vec![(":now", number(now.as_millis()))],
            )
            .await?;
        Ok(if inserted {
            InsertOutcome::Inserted
        } else {
            InsertOutcome::Duplicate
        })
    }

    async fn list_kept(&self, kind: KeptKind, key: &str) -> Result<Vec<KeptRecord>, StoreError> {
        let now = self.clock.now();
        let items = self
            .query_all(None, schema::PK, inbound_pk(kind, key), true)
            .await?;
        let mut records = Vec::with_capacity(items.len());
        for item in items {
            let record = inbound_from_item(item)?;
            if record.expires_at > now {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.sub_key.cmp(&b.sub_key));
        Ok(records)
    }

    async fn list_messages(
        &self,
        owner: &str,
        filter: &MessageFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let since = filter.since.map(Timestamp::as_millis);
        let items = self
            .collect_listing(
                (schema::GSI_BY_OWNER, schema::OWNER, schema::OWNER_AT),
                owner,
                cursor,
                limit,
                move |at| since.is_some_and(|s| at.at_ms < s),
                move |pk| async move {
                    let Some(id) = pk
                        .strip_prefix(schema::MESSAGE_PK_PREFIX)
                        .and_then(|id| MessageId::parse(id).ok())
                    else {
                        return Ok(None);
                    };
                    Ok(self.get(&id).await?.filter(|r| {
                        r.api_key_id.as_deref() == Some(owner)
                            && filter.status.is_none_or(|s| s == r.status)
                            && filter.channel.is_none_or(|c| c == r.channel)
                    }))
                },
            )
            .await?;
        Ok(Page::from_overfetched(
            items,
            limit,
            DeliveryRecord::listing_cursor,
        ))
    }

    async fn list_conversation(
        &self,
        wa_id: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<ConversationItem>, StoreError> {
        let now = self.clock.now();
        let items = self
            .collect_listing(
                (schema::GSI_BY_CONTACT, schema::CONTACT, schema::CONTACT_AT),
                wa_id,
                cursor,
                limit,
                |_| false,
                move |pk| async move {
                    if let Some(id) = pk.strip_prefix(schema::MESSAGE_PK_PREFIX) {
                        let Ok(id) = MessageId::parse(id) else {
                            return Ok(None);
                        };
                        return Ok(self
                            .get(&id)
                            .await?
                            .filter(|r| r.conversation_contact().as_deref() == Some(wa_id))
                            .map(|r| ConversationItem::Outbound(Box::new(r))));
                    }
                    let Some(item) = self.get_item(pk, schema::EMPTY_SUB_KEY_SK).await? else {
                        return Ok(None);
                    };
                    let kept = inbound_from_item(item)?;
                    Ok(
                        (kept.expires_at > now && kept.contact.as_deref() == Some(wa_id))
                            .then_some(ConversationItem::Inbound(kept)),
                    )
                },
            )
            .await?;
        Ok(Page::from_overfetched(
            items,
            limit,
            ConversationItem::cursor,
        ))
    }

    async fn get_state(&self, kind: StateKind, key: &str) -> Result<Option<StateDoc>, StoreError> {
        let pk = state_pk(kind, key);
        let Some(item) = self.get_item(pk.clone(), STATE_SK).await? else {
            return Ok(None);
        };
        let version = match item.get("version") {
            Some(AttributeValue::N(n)) => n.parse::<u64>().ok(),
            _ => None,
        };
        let body = match item.get("body") {
            Some(AttributeValue::S(b)) => serde_json::from_str(b).ok(),
            _ => None,
        };
        match (version, body) {
            (Some(version), Some(body)) => Ok(Some(StateDoc {
                kind,
                key: key.to_owned(),
                version,
                body,
            })),
            _ => Err(StoreError::Corrupt(format!(
                "state document {pk} could not be decoded"
            ))),
        }
    }

    async fn put_state(
        &self,
        doc: &StateDoc,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let body = serde_json::to_string(&doc.body)
            .map_err(|e| StoreError::Unavailable(format!("state body: {e}")))?;
        let item: Item = HashMap::from([
            (
                schema::PK.to_owned(),
                AttributeValue::S(state_pk(doc.kind, &doc.key)),
            ),
            (
                schema::SK.to_owned(),
                AttributeValue::S(STATE_SK.to_owned()),
            ),
            (
                "version".to_owned(),
                AttributeValue::N(doc.version.to_string()),
            ),
            ("body".to_owned(), AttributeValue::S(body)),
        ]);
        let written = if expected_version == 0 {
            self.put_conditional(
                item,
                "attribute_not_exists(#pk)",
                &[("#pk", schema::PK)],
                vec![],
            )
            .await?
        } else {
            self.put_conditional(
                item,
                "#version = :expected",
                &[("#version", "version")],
                vec![(":expected", AttributeValue::N(expected_version.to_string()))],
            )
            .await?
        };
        Ok(if written {
            ReplaceOutcome::Replaced
        } else {
            ReplaceOutcome::Conflict
        })
    }
}

impl DynamoStore {
    /// Up to `limit + 1` items of a listing index after `cursor`, newest first: each index
    /// entry's base item is loaded by `load` (which drops stale or filtered ones), until
    /// `stop` says an entry is past the listing's end.
    #[allow(clippy::too_many_arguments)]
    async fn collect_listing<T, F>(
        &self,
        (index, hash, range): (&str, &str, &str),
        value: &str,
        cursor: Option<&Cursor>,
        limit: usize,
        stop: impl Fn(&Cursor) -> bool + Send,
        mut load: impl FnMut(String) -> F + Send,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send,
        F: Future<Output = Result<Option<T>, StoreError>> + Send,
    {
        let mut items = Vec::new();
        let mut after = cursor.cloned();
        while items.len() <= limit {
            let keys = self
                .index_page(index, (hash, range), value, after.as_ref(), limit + 1)
                .await?;
            if keys.is_empty() {
                break;
            }
            for (pk, at) in keys {
                if stop(&at) {
                    return Ok(items);
                }
                after = Some(at);
                if let Some(item) = load(pk).await? {
                    items.push(item);
                    if items.len() > limit {
                        return Ok(items);
                    }
                }
            }
        }
        Ok(items)
    }

    /// One page of a listing index, newest first, strictly after `after`: each entry's `pk`
    /// and its position.
    async fn index_page(
        &self,
        index: &str,
        (hash, range): (&str, &str),
        value: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(String, Cursor)>, StoreError> {
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX).clamp(1, 1_000))
            .expression_attribute_names("#h", hash)
            .expression_attribute_values(":h", AttributeValue::S(value.to_owned()));
        req = match after {
            Some(c) => req
                .key_condition_expression("#h = :h AND #r < :r")
                .expression_attribute_names("#r", range)
                .expression_attribute_values(":r", AttributeValue::S(c.sort_key())),
            None => req.key_condition_expression("#h = :h"),
        };
        let out = req
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(describe_sdk_error("Query", &e)))?;
        Ok(out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let pk = match item.get(schema::PK) {
                    Some(AttributeValue::S(pk)) => pk.clone(),
                    _ => return None,
                };
                let at = match item.get(range) {
                    Some(AttributeValue::S(at)) => Cursor::from_sort_key(at)?,
                    _ => return None,
                };
                Some((pk, at))
            })
            .collect())
    }
}

/// Sort key of a state document.
const STATE_SK: &str = "state";

fn state_pk(kind: StateKind, key: &str) -> String {
    format!("state#{}#{key}", kind.as_str())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::domain::delivery::{Channel, DeliveryStatus};

    fn record() -> DeliveryRecord {
        DeliveryRecord::new_queued(
            MessageId::generate(),
            Channel::Whatsapp,
            "+5511999990001",
            serde_json::json!({"text": {"body": "Olá"}, "n": 1.5, "list": [1, null, "x"]}),
            Timestamp::from_millis(1_767_225_600_123),
        )
    }

    #[test]
    fn delivery_items_round_trip_with_keys_and_index_attributes() {
        let mut r = record();
        r.provider_message_id = Some("wamid.X".into());
        r.next_attempt_at = Some(Timestamp::from_millis(42));
        r.status = DeliveryStatus::RetryScheduled;
        let item = record_item(&r).unwrap();
        assert_eq!(item[schema::PK], AttributeValue::S(format!("msg#{}", r.id)));
        assert_eq!(item[schema::SK], AttributeValue::S("record".into()));
        assert_eq!(
            item[schema::PROVIDER_MESSAGE_ID],
            AttributeValue::S("wamid.X".into())
        );
        assert_eq!(
            item[schema::DUE_BUCKET],
            AttributeValue::S(format!("pending#{}", due_shard(&r.id)))
        );
        assert_eq!(item[schema::DUE_AT], AttributeValue::N("42".into()));
        assert_eq!(record_from_item(item).unwrap(), r);
    }

    #[test]
    fn terminal_records_stay_out_of_the_due_index() {
        let mut r = record();
        // A queued record is in it from creation, for the sweeper's grace-period check.
        assert!(record_item(&r).unwrap().contains_key(schema::DUE_BUCKET));
        r.next_attempt_at = Some(Timestamp::from_millis(42));
        r.status = DeliveryStatus::Failed;
        assert!(!record_item(&r).unwrap().contains_key(schema::DUE_BUCKET));
    }

    #[test]
    fn inbound_items_keep_ttl_in_seconds_and_round_trip_exactly() {
        let rec = KeptRecord {
            kind: KeptKind::OrphanStatus,
            key: "wamid.Y".into(),
            sub_key: String::new(),
            received_at: Timestamp::from_millis(1_000),
            expires_at: Timestamp::from_millis(1_767_225_600_001),
            payload: serde_json::json!({"status": "sent"}),
            contact: None,
        };
        let item = inbound_item(&rec).unwrap();
        assert_eq!(
            item[schema::PK],
            AttributeValue::S("orphan_status#wamid.Y".into())
        );
        assert_eq!(item[schema::SK], AttributeValue::S("-".into()));
        assert_eq!(
            item[schema::TTL_ATTRIBUTE],
            AttributeValue::N("1767225601".into())
        );
        assert_eq!(inbound_from_item(item).unwrap(), rec);
    }

    #[test]
    fn ceil_secs_rounds_up_only_partial_seconds() {
        assert_eq!(ceil_secs(Timestamp::from_millis(2_000)), 2);
        assert_eq!(ceil_secs(Timestamp::from_millis(2_001)), 3);
        assert_eq!(ceil_secs(Timestamp::from_millis(-1)), 0);
    }
}
