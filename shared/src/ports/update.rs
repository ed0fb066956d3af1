//! The one versioned-update helper: read a record, change it, write it only over the version
//! it was read at, and on a conflict re-read and change the fresher copy, a bounded number of
//! times. Every state transition — the dispatch claim and finish, status webhooks, the sweeper,
//! cancel and retry — goes through [`update_record`] or [`update_from`], so this is the one
//! place a transition can be observed.

use crate::domain::delivery::DeliveryRecord;
use crate::domain::ids::MessageId;
use crate::ports::store::{DeliveryStore, ReplaceOutcome, StoreError};

/// Writes that lose this many races in a row give up; the caller's queue retries later.
pub const MAX_WRITE_RACES: usize = 8;

/// What a change function decided for the copy it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Write the changed copy.
    Write(T),
    /// Nothing to write; the stored record stays as it is (changes to the copy are dropped).
    Keep(T),
}

/// The record after an update, and what the change function said.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated<T> {
    /// The record as stored now.
    pub record: DeliveryRecord,
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

/// Applies `change` to a record already read, re-reading it on a conflict. `change` may run
/// several times, each time on the freshest copy, so it must decide from the record alone.
pub async fn update_from<T>(
    store: &dyn DeliveryStore,
    mut record: DeliveryRecord,
    mut change: impl FnMut(&mut DeliveryRecord) -> Change<T>,
) -> Result<Updated<T>, UpdateError> {
    let id = record.id.clone();
    for _ in 0..MAX_WRITE_RACES {
        let read_version = record.version;
        let before = record.status;
        let mut copy = record.clone();
        let value = match change(&mut copy) {
            Change::Keep(value) => {
                return Ok(Updated {
                    record,
                    value,
                    written: false,
                });
            }
            Change::Write(value) => value,
        };
        copy.version = read_version + 1;
        match store.replace(&copy, read_version).await? {
            ReplaceOutcome::Replaced => {
                if copy.status != before {
                    tracing::debug!(
                        id = %id,
                        from = before.as_str(),
                        to = copy.status.as_str(),
                        version = copy.version,
                        "delivery transition"
                    );
                }
                return Ok(Updated {
                    record: copy,
                    value,
                    written: true,
                });
            }
            ReplaceOutcome::Conflict => match store.get(&id).await? {
                Some(fresh) => record = fresh,
                None => return Err(UpdateError::Contended(id.to_string())),
            },
        }
    }
    Err(UpdateError::Contended(id.to_string()))
}
