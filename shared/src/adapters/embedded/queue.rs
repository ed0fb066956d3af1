//! Named queues with SQS semantics in one SQLite table.
//!
//! A message is visible when `visible_at <= now`. Sending sets `visible_at = now + delay`;
//! receiving sets `visible_at = now + visibility`, bumps `receive_count` and gives the message a
//! new random receipt handle, replacing the previous one. Acknowledging deletes the message only
//! if the receipt is its current one, so a consumer whose visibility timeout ran out cannot
//! delete a message someone else is now working on.

use super::{DbError, EmbeddedDb};
use crate::ports::queue::{
    MAX_BATCH, MAX_DELAY, OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage,
};
use async_trait::async_trait;
use rusqlite::TransactionBehavior;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// One named queue of an [`EmbeddedDb`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedQueue {
    db: EmbeddedDb,
    name: String,
}

/// How many messages a queue holds, as SQS's `ApproximateNumberOfMessages*` attributes count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Ready to be received now.
    pub visible: u64,
    /// Received and not yet acknowledged, their visibility timeout still running.
    pub in_flight: u64,
    /// Sent with a delay that has not yet passed.
    pub delayed: u64,
}

impl EmbeddedQueue {
    pub(super) fn new(db: EmbeddedDb, name: &str) -> Self {
        Self {
            db,
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A signal that fires when a message is sent to any queue through this [`EmbeddedDb`]
    /// handle or its clones, for idle consumers: receive, and when nothing came,
    /// `signal.wait(poll_interval)` before the next receive. Subscribe before the first receive
    /// so no send is missed. Sends from another process (or another `open` of the file),
    /// delays and expiring visibility timeouts do not fire it; the wait's limit covers those.
    pub fn subscribe(&self) -> QueueSignal {
        QueueSignal {
            rx: self.db.subscribe_sends(),
        }
    }

    /// Approximate message counts, for status pages and tests.
    pub async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let name = self.name.clone();
        self.db
            .run(move |conn, now| {
                let counts = conn.query_row(
                    "SELECT
                        COALESCE(SUM(visible_at <= ?2), 0),
                        COALESCE(SUM(visible_at > ?2 AND receive_count > 0), 0),
                        COALESCE(SUM(visible_at > ?2 AND receive_count = 0), 0)
                     FROM queue_messages WHERE queue = ?1",
                    rusqlite::params![name, now],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )?;
                let n = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok(QueueCounts {
                    visible: n(counts.0),
                    in_flight: n(counts.1),
                    delayed: n(counts.2),
                })
            })
            .await
            .map_err(unavailable)
    }
}

/// See [`EmbeddedQueue::subscribe`].
#[derive(Debug)]
pub struct QueueSignal {
    rx: watch::Receiver<u64>,
}

impl QueueSignal {
    /// Returns when a message was sent since the last call (at once if one already was), or
    /// after `max_wait`, whichever comes first.
    pub async fn wait(&mut self, max_wait: Duration) {
        // An error means the database is gone; the time limit still bounds the wait.
        let _ = tokio::time::timeout(max_wait, self.rx.changed()).await;
    }
}

fn unavailable(e: DbError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(messages.len());
        for m in messages {
            let attributes = serde_json::to_string(&m.attributes)
                .map_err(|e| QueueError::Unavailable(format!("attributes: {e}")))?;
            rows.push((
                uuid::Uuid::now_v7().to_string(),
                m.body.clone(),
                attributes,
                millis(m.delay.min(MAX_DELAY)),
            ));
        }
        let name = self.name.clone();
        self.db
            .run(move |conn, now| {
                // All or nothing: one transaction for the whole slice.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO queue_messages
                            (queue, message_id, body, attributes, sent_at, visible_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    for (id, body, attributes, delay) in &rows {
                        insert.execute(rusqlite::params![
                            name,
                            id,
                            body,
                            attributes,
                            now,
                            now.saturating_add(*delay)
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
            .map_err(unavailable)?;
        self.db.notify_sent();
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let counts = self.counts().await?;
        let name = self.name.clone();
        let oldest = self
            .db
            .run(move |conn, now| {
                let sent: Option<i64> = conn.query_row(
                    "SELECT MIN(sent_at) FROM queue_messages WHERE queue = ?1",
                    rusqlite::params![name],
                    |r| r.get(0),
                )?;
                Ok(sent.map(|t| u64::try_from((now - t) / 1_000).unwrap_or(0)))
            })
            .await
            .map_err(unavailable)?;
        Ok(QueueDepth {
            messages: counts.visible + counts.in_flight + counts.delayed,
            in_flight: counts.in_flight,
            oldest_age_secs: oldest,
        })
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(max).unwrap_or(1);
        let visibility = millis(visibility);
        let name = self.name.clone();
        let rows = self
            .db
            .run(move |conn, now| {
                // One statement, so atomic: no two receivers can pick the same message.
                let mut stmt = conn.prepare_cached(
                    "UPDATE queue_messages
                     SET visible_at = ?3,
                         receive_count = receive_count + 1,
                         receipt_handle = lower(hex(randomblob(16)))
                     WHERE seq IN (
                         SELECT seq FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2
                         ORDER BY visible_at, seq
                         LIMIT ?4)
                     RETURNING seq, message_id, receipt_handle, body, attributes, receive_count, sent_at",
                )?;
                let rows = stmt
                    .query_map(
                        rusqlite::params![name, now, now.saturating_add(visibility), limit],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, String>(4)?,
                                r.get::<_, i64>(5)?,
                                r.get::<_, i64>(6)?,
                            ))
                        },
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
            .map_err(unavailable)?;

        let mut rows = rows;
        rows.sort_by_key(|r| r.0);
        rows.into_iter()
            .map(
                |(_, message_id, receipt_handle, body, attributes, count, sent_at)| {
                    let attributes: BTreeMap<String, String> = serde_json::from_str(&attributes)
                        .map_err(|e| {
                            QueueError::Unavailable(format!(
                                "message {message_id} has unreadable attributes: {}",
                                super::json_error(&e)
                            ))
                        })?;
                    Ok(ReceivedMessage {
                        message_id,
                        receipt_handle,
                        body,
                        attributes,
                        receive_count: u32::try_from(count).unwrap_or(u32::MAX),
                        sent_at: Some(crate::domain::time::Timestamp::from_millis(sent_at)),
                    })
                },
            )
            .collect()
    }

    async fn ack(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let name = self.name.clone();
        let receipt = receipt_handle.to_owned();
        self.db
            .run(move |conn, _| {
                // Unknown, stale or already used receipts delete nothing, and that is fine.
                conn.prepare_cached(
                    "DELETE FROM queue_messages WHERE queue = ?1 AND receipt_handle = ?2",
                )?
                .execute(rusqlite::params![name, receipt])?;
                Ok(())
            })
            .await
            .map_err(unavailable)
    }
}
