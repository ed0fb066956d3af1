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
use async_trait::async_trait;
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
}
