//! The one versioned-update helper: read a value, change it, write it only over the version
//! it was read at, and on a conflict re-read and change the fresher copy, a bounded number of
//! times. Every state transition — the dispatch claim and finish, status webhooks, the sweeper,
//! cancel and retry — goes through [`update_record`] or [`update_from`], and every change to a
//! state document (endpoint health, a contact's last message) through [`update_state`]; all
//! three are [`update_versioned`], so this is the one place a write race is handled.

use crate::domain::delivery::DeliveryRecord;
use crate::domain::ids::MessageId;
use crate::ports::store::{DeliveryStore, ReplaceOutcome, StateDoc, StateKind, StoreError};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Writes that lose this many races in a row give up; the caller's queue retries later.
pub const MAX_WRITE_RACES: usize = 8;

/// What a change function decided for the copy it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Write the changed copy.
    Write(T),
    /// Nothing to write; the stored value stays as it is (changes to the copy are dropped).
    Keep(T),
}

/// The value after an update, and what the change function said.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated<T, R = DeliveryRecord> {
    /// The record (or document) as stored now.
    pub record: R,
    pub value: T,
    /// Whether this call wrote it.
    pub written: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("lost {MAX_WRITE_RACES} write races in a row on {0}")]
    Contended(String),
}

/// A value stored with a version that every write bumps.
pub trait Versioned: Clone + Send + Sync {
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    /// Names the value in errors and logs.
    fn label(&self) -> String;
    /// Called after a write, with the value as it was read.
    fn written(&self, _before: &Self) {}
}

/// Where a [`Versioned`] value is re-read and written with a version check.
#[async_trait]
pub trait VersionedStore<T: Versioned>: Send + Sync {
    /// The stored copy of `stale`, `None` if it is gone.
    async fn reread(&self, stale: &T) -> Result<Option<T>, StoreError>;
    /// Writes `value` only if the stored version is `expected`.
    async fn write(&self, value: &T, expected: u64) -> Result<ReplaceOutcome, StoreError>;
}

/// Applies `change` to a value already read, re-reading it on a conflict. `change` may run
/// several times, each time on the freshest copy, so it must decide from the value alone.
pub async fn update_versioned<T: Versioned, V>(
    store: &dyn VersionedStore<T>,
    mut current: T,
    mut change: impl FnMut(&mut T) -> Change<V>,
) -> Result<Updated<V, T>, UpdateError> {
    for _ in 0..MAX_WRITE_RACES {
        let read_version = current.version();
        let mut copy = current.clone();
        let value = match change(&mut copy) {
            Change::Keep(value) => {
                return Ok(Updated {
                    record: current,
                    value,
                    written: false,
                });
            }
            Change::Write(value) => value,
        };
        copy.set_version(read_version + 1);
        match store.write(&copy, read_version).await? {
            ReplaceOutcome::Replaced => {
                copy.written(&current);
                return Ok(Updated {
                    record: copy,
                    value,
                    written: true,
                });
            }
            ReplaceOutcome::Conflict => match store.reread(&current).await? {
                Some(fresh) => current = fresh,
                None => return Err(UpdateError::Contended(current.label())),
            },
        }
    }
    Err(UpdateError::Contended(current.label()))
}

impl Versioned for DeliveryRecord {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn label(&self) -> String {
        self.id.to_string()
    }
    fn written(&self, before: &Self) {
        if self.status != before.status {
            crate::observability::metrics::transition(self.channel.as_str(), self.status.as_str());
            tracing::debug!(
                id = %self.id,
                from = before.status.as_str(),
                to = self.status.as_str(),
                version = self.version,
                "delivery transition"
            );
        }
    }
}

impl Versioned for StateDoc {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn label(&self) -> String {
        format!("state {}/{}", self.kind.as_str(), self.key)
    }
}

/// Delivery records of a [`DeliveryStore`], as a [`VersionedStore`].
struct Records<'a>(&'a dyn DeliveryStore);

#[async_trait]
impl VersionedStore<DeliveryRecord> for Records<'_> {
    async fn reread(&self, stale: &DeliveryRecord) -> Result<Option<DeliveryRecord>, StoreError> {
        self.0.get(&stale.id).await
    }
    async fn write(
        &self,
        value: &DeliveryRecord,
        expected: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        self.0.replace(value, expected).await
    }
}

/// State documents of a [`DeliveryStore`], as a [`VersionedStore`]. A document that is not
/// stored yet reads as version 0 with a null body.
struct States<'a>(&'a dyn DeliveryStore);

#[async_trait]
impl VersionedStore<StateDoc> for States<'_> {
    async fn reread(&self, stale: &StateDoc) -> Result<Option<StateDoc>, StoreError> {
        Ok(Some(read_state(self.0, stale.kind, &stale.key).await?))
    }
    async fn write(&self, value: &StateDoc, expected: u64) -> Result<ReplaceOutcome, StoreError> {
        self.0.put_state(value, expected).await
    }
}

async fn read_state(
    store: &dyn DeliveryStore,
    kind: StateKind,
    key: &str,
) -> Result<StateDoc, StoreError> {
    Ok(store.get_state(kind, key).await?.unwrap_or(StateDoc {
        kind,
        key: key.to_owned(),
        version: 0,
        body: serde_json::Value::Null,
    }))
}

/// Reads the record `id` and applies `change` to it; `None` when there is no such record.
pub async fn update_record<T>(
    store: &dyn DeliveryStore,
    id: &MessageId,
    change: impl FnMut(&mut DeliveryRecord) -> Change<T>,
) -> Result<Option<Updated<T>>, UpdateError> {
    match store.get(id).await? {
        Some(record) => update_from(store, record, change).await.map(Some),
        None => Ok(None),
    }
}

/// Applies `change` to a record already read, re-reading it on a conflict.
pub async fn update_from<T>(
    store: &dyn DeliveryStore,
    record: DeliveryRecord,
    change: impl FnMut(&mut DeliveryRecord) -> Change<T>,
) -> Result<Updated<T>, UpdateError> {
    update_versioned(&Records(store), record, change).await
}

/// Reads the state document `kind`/`key` as a `D` (its `Default` when none is stored yet),
/// applies `change` and writes it back over the version read. Returns the document as stored
/// now and what `change` said.
pub async fn update_state<D, V>(
    store: &dyn DeliveryStore,
    kind: StateKind,
    key: &str,
    mut change: impl FnMut(&mut D) -> Change<V>,
) -> Result<(D, V), UpdateError>
where
    D: Serialize + DeserializeOwned + Default,
{
    let current = read_state(store, kind, key).await?;
    let mut corrupt = None;
    let updated = update_versioned(&States(store), current, |doc| {
        let mut body: D = match decode_state(doc) {
            Ok(body) => body,
            Err(e) => {
                corrupt = Some(e);
                return Change::Keep(None);
            }
        };
        let decision = change(&mut body);
        match serde_json::to_value(&body) {
            Ok(json) => doc.body = json,
            Err(e) => {
                corrupt = Some(StoreError::Corrupt(format!("{}: {e}", doc.label())));
                return Change::Keep(None);
            }
        }
        match decision {
            Change::Write(v) => Change::Write(Some(v)),
            Change::Keep(v) => Change::Keep(Some(v)),
        }
    })
    .await?;
    if let Some(e) = corrupt {
        return Err(e.into());
    }
    let value = updated
        .value
        .ok_or_else(|| StoreError::Corrupt(updated.record.label()))?;
    Ok((decode_state(&updated.record)?, value))
}

/// Reads the state document `kind`/`key` as a `D`; its `Default` when none is stored.
pub async fn get_state<D: DeserializeOwned + Default>(
    store: &dyn DeliveryStore,
    kind: StateKind,
    key: &str,
) -> Result<D, StoreError> {
    decode_state(&read_state(store, kind, key).await?)
}

fn decode_state<D: DeserializeOwned + Default>(doc: &StateDoc) -> Result<D, StoreError> {
    if doc.body.is_null() {
        return Ok(D::default());
    }
    serde_json::from_value(doc.body.clone())
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", doc.label())))
}
