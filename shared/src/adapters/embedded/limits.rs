//! The limits port in SQLite: `limits` holds each document under its key; an expired row
//! counts as absent.

use super::EmbeddedDb;
use crate::domain::time::Timestamp;
use crate::ports::limits::{LimitDoc, LimitStore};
use crate::ports::store::{ReplaceOutcome, StoreError};
use async_trait::async_trait;
use rusqlite::OptionalExtension;

/// The [`LimitStore`] of an [`EmbeddedDb`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedLimits {
    db: EmbeddedDb,
}

impl EmbeddedLimits {
    pub(super) fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Unavailable(format!("version {v} out of range")))
}

#[async_trait]
impl LimitStore for EmbeddedLimits {
    async fn get_limit(&self, key: &str) -> Result<Option<LimitDoc>, StoreError> {
        let key = key.to_owned();
        let row = self
            .db
            .run(move |conn, now| {
                Ok(conn
                    .prepare_cached(
                        "SELECT version, body, expires_at FROM limits WHERE key = ?1 AND expires_at > ?2",
                    )?
                    .query_row(rusqlite::params![key, now], |r| {
                        Ok((key.clone(), r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                    })
                    .optional()?)
            })
            .await?;
        row.map(|(key, version, body, expires_at)| {
            Ok(LimitDoc {
                body: serde_json::from_str(&body).map_err(|e| {
                    StoreError::Corrupt(format!("limit {key}: {}", super::json_error(&e)))
                })?,
                key,
                version: u64::try_from(version).unwrap_or(0),
                expires_at: Timestamp::from_millis(expires_at),
            })
        })
        .transpose()
    }

    async fn put_limit(
        &self,
        doc: &LimitDoc,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let key = doc.key.clone();
        let version = to_i64(doc.version)?;
        let expected = to_i64(expected_version)?;
        let expires_at = doc.expires_at.as_millis();
        let body = serde_json::to_string(&doc.body)
            .map_err(|e| StoreError::Unavailable(format!("limit body: {e}")))?;
        let written = self
            .db
            .run(move |conn, now| {
                Ok(if expected == 0 {
                    // Absent, or expired: as good as absent.
                    conn.prepare_cached(
                        "INSERT INTO limits (key, version, body, expires_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (key) DO UPDATE
                         SET version = excluded.version, body = excluded.body, expires_at = excluded.expires_at
                         WHERE limits.expires_at <= ?5",
                    )?
                    .execute(rusqlite::params![key, version, body, expires_at, now])?
                } else {
                    conn.prepare_cached(
                        "UPDATE limits SET version = ?2, body = ?3, expires_at = ?4
                         WHERE key = ?1 AND version = ?5 AND expires_at > ?6",
                    )?
                    .execute(rusqlite::params![key, version, body, expires_at, expected, now])?
                })
            })
            .await?;
        Ok(if written == 1 {
            ReplaceOutcome::Replaced
        } else {
            ReplaceOutcome::Conflict
        })
    }
}
