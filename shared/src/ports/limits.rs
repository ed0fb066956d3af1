//! The limits port: state that rate limits (and, later, circuit breakers) share across every
//! instance — a token bucket per API key, per phone number, per recipient pair. It is its own
//! trait, not part of the delivery store: limits are hot, tiny, short-lived items written on
//! every send, with their own scaling story (docs/architecture.md, "Limits").
//!
//! A limit document is a versioned JSON body under a key, written only over the version it was
//! read at, and dropped after `expires_at` (TTL on DynamoDB; a bucket left alone refills, so
//! forgetting it is the same as keeping it full).

use crate::domain::time::Timestamp;
use crate::ports::store::{ReplaceOutcome, StoreError};
use crate::ports::update::{Change, UpdateError, Versioned, VersionedStore, update_versioned};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One limit's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitDoc {
    /// `api_key:<id>`, `pnid:<phone number id>`, `pair:<pnid>:<wa_id>`, ...
    pub key: String,
    /// 0: not stored yet.
    pub version: u64,
    pub body: serde_json::Value,
    /// Stores may drop the document after this.
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait LimitStore: Send + Sync + std::fmt::Debug {
    /// Reads a limit document, strongly consistent; `None` when absent or expired.
    async fn get_limit(&self, key: &str) -> Result<Option<LimitDoc>, StoreError>;

    /// Writes `doc` only if the stored version is `expected_version` (0: only if none is
    /// stored, or the stored one expired). `doc.version` must already be the new version.
    async fn put_limit(
        &self,
        doc: &LimitDoc,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError>;

    /// How long after a write is decided it may take to come back, as a bound the limits
    /// plan for: a rate limit counted at the write and spent on a call right after it
    /// keeps this much headroom, and a token whose write came back later is not spent
    /// ([`crate::resilience::rate::per_second_ceiling`]).
    fn write_lag(&self) -> std::time::Duration {
        DEFAULT_WRITE_LAG
    }
}

/// [`LimitStore::write_lag`] of a store on the same machine.
pub const DEFAULT_WRITE_LAG: std::time::Duration = std::time::Duration::from_millis(5);

impl Versioned for LimitDoc {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn label(&self) -> String {
        format!("limit {}", self.key)
    }
}

/// The limits port as a [`VersionedStore`], so limit documents change through the one update
/// helper. A document that is gone (or expired) reads as version 0.
struct Limits<'a>(&'a dyn LimitStore);

#[async_trait]
impl VersionedStore<LimitDoc> for Limits<'_> {
    async fn reread(&self, stale: &LimitDoc) -> Result<Option<LimitDoc>, StoreError> {
        Ok(Some(self.0.get_limit(&stale.key).await?.unwrap_or(
            LimitDoc {
                version: 0,
                body: serde_json::Value::Null,
                ..stale.clone()
            },
        )))
    }
    async fn write(&self, value: &LimitDoc, expected: u64) -> Result<ReplaceOutcome, StoreError> {
        self.0.put_limit(value, expected).await
    }
}

/// Reads the limit document `key` as a `D` (its `Default` when absent, expired or unreadable:
/// a limit that forgot its state starts afresh), applies `change` — which also says until when
/// the document is worth keeping — and writes it back over the version read.
pub async fn update_limit<D, V>(
    store: &dyn LimitStore,
    key: &str,
    now: Timestamp,
    mut change: impl FnMut(&mut D) -> (Change<V>, Timestamp),
) -> Result<V, UpdateError>
where
    D: Serialize + DeserializeOwned + Default,
{
    let current = store.get_limit(key).await?.unwrap_or(LimitDoc {
        key: key.to_owned(),
        version: 0,
        body: serde_json::Value::Null,
        expires_at: now,
    });
    let updated = update_versioned(&Limits(store), current, |doc| {
        let mut body: D = serde_json::from_value(doc.body.clone()).unwrap_or_default();
        let (decision, keep_until) = change(&mut body);
        doc.body = serde_json::to_value(&body).unwrap_or(serde_json::Value::Null);
        doc.expires_at = keep_until;
        decision
    })
    .await?;
    Ok(updated.value)
}
