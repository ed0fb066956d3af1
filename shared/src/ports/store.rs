//! The delivery store: delivery records, written only by conditional writes; *kept
//! records* — inbound messages, account events, statuses awaiting their record, idempotency
//! keys, events for the app — each written at most once per key and kept until it expires;
//! and *state documents* — a callback endpoint's health, a contact's last message — small
//! versioned documents changed, like records, only over the version they were read at.

use crate::domain::delivery::DeliveryRecord;
use crate::domain::ids::{MessageId, Wamid};
use crate::domain::time::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// A record with that id exists already; nothing was written.
    AlreadyExists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceOutcome {
    Replaced,
    /// The stored version was not the expected one (or the record is gone): re-read and retry.
    Conflict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// A kept record with the same kind, key and sub-key exists; nothing was written.
    Duplicate,
}

/// What a [`KeptRecord`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptKind {
    /// A message a user sent to the business; key = its wamid.
    Message,
    /// A status for a wamid no delivery record claims (yet); key = wamid, sub-key = status.
    OrphanStatus,
    /// Any other webhook field (template status, quality, account update, errors...);
    /// key = a digest of the event.
    AccountEvent,
    /// A send API `Idempotency-Key`; key = API key id and a digest of the key.
    IdempotencyKey,
    /// An event for the app (a callback's content); key = its event id.
    Event,
}

impl KeptKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::OrphanStatus => "orphan_status",
            Self::AccountEvent => "account_event",
            Self::IdempotencyKey => "idempotency_key",
            Self::Event => "event",
        }
    }
}

/// A write-once record kept until `expires_at`: something Meta told us that is not (or not
/// yet) part of a delivery record, or an idempotency key the send API has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptRecord {
    pub kind: KeptKind,
    pub key: String,
    /// Distinguishes several records under one key (the status of an orphan); may be empty.
    #[serde(default)]
    pub sub_key: String,
    pub received_at: Timestamp,
    /// Stores drop the record after this; reads never return an expired one.
    pub expires_at: Timestamp,
    /// The event as received, in Carteiro's typed form.
    pub payload: serde_json::Value,
    /// For an inbound message: the sender's wa_id (digits), which lists it in that contact's
    /// conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// Where a listing stands: the position of the last item returned, newest-first order by
/// (time, id). Opaque to clients (`next_cursor`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub at_ms: i64,
    pub id: String,
}

impl Cursor {
    /// The sort key both stores index: zero-padded milliseconds, `#`, the id.
    pub fn sort_key(&self) -> String {
        format!("{:015}#{}", self.at_ms.max(0), self.id)
    }

    pub fn from_sort_key(key: &str) -> Option<Self> {
        let (ms, id) = key.split_once('#')?;
        Some(Self {
            at_ms: ms.parse().ok()?,
            id: id.to_owned(),
        })
    }

    /// The cursor as a client sees it.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sort_key())
    }

    pub fn decode(text: &str) -> Option<Self> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()?;
        Self::from_sort_key(std::str::from_utf8(&raw).ok()?)
    }
}

/// Which of an API key's messages to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub status: Option<crate::domain::delivery::DeliveryStatus>,
    pub channel: Option<crate::domain::delivery::Channel>,
    /// Created at or after.
    pub since: Option<Timestamp>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationItem {
    /// Sent to the contact through Carteiro.
    Outbound(Box<DeliveryRecord>),
    /// Sent by the contact (a kept [`KeptKind::Message`]).
    Inbound(KeptRecord),
}

impl ConversationItem {
    pub fn cursor(&self) -> Cursor {
        match self {
            Self::Outbound(r) => r.listing_cursor(),
            Self::Inbound(k) => Cursor {
                at_ms: k.received_at.as_millis(),
                id: k.key.clone(),
            },
        }
    }
}

/// A page of a listing, newest first; `next` continues it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// The first `limit` of `items` — fetched one beyond the limit, so that a next page is
    /// known to exist — with the cursor of the last one kept when there is more.
    pub fn from_overfetched(
        mut items: Vec<T>,
        limit: usize,
        cursor_of: impl Fn(&T) -> Cursor,
    ) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(cursor_of)
        } else {
            None
        };
        Self { items, next }
    }
}

impl DeliveryRecord {
    /// The record's position in a key's listing.
    pub fn listing_cursor(&self) -> Cursor {
        Cursor {
            at_ms: self.created_at.as_millis(),
            id: self.id.as_str().to_owned(),
        }
    }
}

/// A record the sweeper should look at: its id and [`DeliveryRecord::sweep_due_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRecord {
    pub id: MessageId,
    pub due_at: Timestamp,
}

/// How many buckets the `by-due` index is spread over, so that no one partition caps the
/// sweep; a record's bucket is a digest of its id.
pub const DUE_SHARDS: u32 = 16;

/// The `by-due` bucket of a record.
pub fn due_shard(id: &MessageId) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_str().as_bytes());
    u32::from(digest[0]) % DUE_SHARDS
}

/// What a [`StateDoc`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// A callback endpoint's health; key = the endpoint id.
    Endpoint,
    /// A WhatsApp contact; key = its wa_id (digits only).
    Contact,
    /// The last event queued for one (endpoint, conversation) of an `ordered` endpoint.
    Ordering,
}

impl StateKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::Contact => "contact",
            Self::Ordering => "ordering",
        }
    }
}

/// A small mutable document, written only over the version it was read at (version 0: not
/// stored yet). Change it through [`crate::ports::update::update_state`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    pub kind: StateKind,
    pub key: String,
    pub version: u64,
    pub body: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait DeliveryStore: Send + Sync + std::fmt::Debug {
    /// Writes `record` only if no record with its id exists.
    async fn create(&self, record: &DeliveryRecord) -> Result<CreateOutcome, StoreError>;

    /// Reads a record, strongly consistent.
    async fn get(&self, id: &MessageId) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Finds the record whose `provider_message_id` is `wamid`. On DynamoDB this goes through
    /// an eventually consistent index, so a record written a moment ago may not be found yet.
    async fn find_by_wamid(&self, wamid: &Wamid) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Writes `record` only if the stored record's version is `expected_version`.
    /// `record.version` must already be the new version.
    async fn replace(
        &self,
        record: &DeliveryRecord,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError>;

    /// Records with work pending whose [`DeliveryRecord::sweep_due_at`] is at or before
    /// `before`, earliest first within a bucket, at most `limit`. On DynamoDB through the
    /// sparse, eventually consistent `by-due` index: the caller re-reads each record.
    async fn list_due(&self, before: Timestamp, limit: usize)
    -> Result<Vec<DueRecord>, StoreError>;

    /// Writes a kept record unless an unexpired one with the same kind, key and sub-key exists.
    async fn put_kept(&self, record: &KeptRecord) -> Result<InsertOutcome, StoreError>;

    /// Every unexpired kept record of `kind` under `key`, ordered by sub-key.
    async fn list_kept(&self, kind: KeptKind, key: &str) -> Result<Vec<KeptRecord>, StoreError>;

    /// The messages created with API key `owner`, newest first, after `cursor`, at most
    /// `limit`. On DynamoDB through the eventually consistent `by-owner` index.
    async fn list_messages(
        &self,
        owner: &str,
        filter: &MessageFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<DeliveryRecord>, StoreError>;

    /// The messages to and from the WhatsApp contact `wa_id` (digits), newest first, after
    /// `cursor`, at most `limit`. On DynamoDB through the eventually consistent `by-contact`
    /// index.
    async fn list_conversation(
        &self,
        wa_id: &str,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<ConversationItem>, StoreError>;

    /// Reads a state document, strongly consistent.
    async fn get_state(&self, kind: StateKind, key: &str) -> Result<Option<StateDoc>, StoreError>;

    /// Writes `doc` only if the stored version is `expected_version` (0: only if none is
    /// stored). `doc.version` must already be the new version.
    async fn put_state(
        &self,
        doc: &StateDoc,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError>;
}
