//! The suppressions port in SQLite: `suppressions` holds each one under its listing key; a
//! lapsed row counts as absent.

use super::EmbeddedDb;
use crate::domain::suppression::{SuppressedChannel, Suppression, key};
use crate::ports::store::StoreError;
use crate::ports::suppressions::{SuppressionPage, SuppressionStore};
use async_trait::async_trait;
use rusqlite::OptionalExtension;

/// The [`SuppressionStore`] of an [`EmbeddedDb`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedSuppressions {
    db: EmbeddedDb,
}

impl EmbeddedSuppressions {
    pub(super) fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }
}

fn decode(key: &str, body: &str) -> Result<Suppression, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("suppression {key}: {}", super::json_error(&e))))
}

#[async_trait]
impl SuppressionStore for EmbeddedSuppressions {
    async fn put_suppression(&self, suppression: &Suppression) -> Result<(), StoreError> {
        let key = suppression.key();
        let until = suppression.until.map(|u| u.as_millis());
        let body = serde_json::to_string(suppression)
            .map_err(|e| StoreError::Unavailable(format!("suppression body: {e}")))?;
        self.db
            .run(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO suppressions (key, body, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET body = excluded.body, until = excluded.until",
                )?
                .execute(rusqlite::params![key, body, until])?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn get_suppression(
        &self,
        channel: SuppressedChannel,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        let key = key(channel, address);
        let lookup = key.clone();
        let body = self
            .db
            .run(move |conn, now| {
                Ok(conn
                    .prepare_cached(
                        "SELECT body FROM suppressions WHERE key = ?1 AND (until IS NULL OR until > ?2)",
                    )?
                    .query_row(rusqlite::params![lookup, now], |r| r.get::<_, String>(0))
                    .optional()?)
            })
            .await?;
        body.map(|b| decode(&key, &b)).transpose()
    }

    async fn delete_suppression(
        &self,
        channel: SuppressedChannel,
        address: &str,
    ) -> Result<bool, StoreError> {
        let key = key(channel, address);
        let deleted = self
            .db
            .run(move |conn, _| {
                Ok(conn
                    .prepare_cached("DELETE FROM suppressions WHERE key = ?1")?
                    .execute([key])?)
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn list_suppressions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SuppressionPage, StoreError> {
        let after = after.unwrap_or("").to_owned();
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
            .db
            .run(move |conn, now| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, body FROM suppressions
                     WHERE key > ?1 AND (until IS NULL OR until > ?2) ORDER BY key LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(rusqlite::params![after, now, take], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let items = rows
            .iter()
            .map(|(k, b)| decode(k, b))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SuppressionPage::of(items, limit))
    }
}
