//! The suppressions port: who is not to be sent to (see [`crate::domain::suppression`]).
//! Written rarely (a preference webhook, a refused address), read at acceptance and before
//! each attempt, listed by operators; last write wins, as for a preference.

use crate::domain::suppression::{SuppressedChannel, Suppression};
use crate::ports::store::StoreError;
use async_trait::async_trait;

/// One page of suppressions, ordered by [`Suppression::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionPage {
    pub items: Vec<Suppression>,
    /// The key to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

impl SuppressionPage {
    /// The page of `limit` from `items` read in key order, one more than `limit` if there is
    /// more: that extra one says a next page exists, and is not shown.
    pub fn of(mut items: Vec<Suppression>, limit: usize) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(Suppression::key)
        } else {
            None
        };
        Self { items, next }
    }
}

#[async_trait]
pub trait SuppressionStore: Send + Sync + std::fmt::Debug {
    /// Writes (or replaces) the suppression of its channel and address.
    async fn put_suppression(&self, suppression: &Suppression) -> Result<(), StoreError>;

    /// The suppression of `address` (normalised), if one is stored and has not lapsed.
    async fn get_suppression(
        &self,
        channel: SuppressedChannel,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError>;

    /// Removes it; true when one was stored (lapsed or not).
    async fn delete_suppression(
        &self,
        channel: SuppressedChannel,
        address: &str,
    ) -> Result<bool, StoreError>;

    /// Suppressions that have not lapsed, in key order, after the key `after`, at most `limit`.
    async fn list_suppressions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SuppressionPage, StoreError>;
}
