//! The delivery store in SQLite: `records` holds each delivery record as JSON next to the
//! columns queries need (version, provider message id, status, next attempt); `inbound` holds
//! inbound records under (kind, key, sub_key); `state` the state documents under (kind, key).

use super::{DbError, EmbeddedDb};
use crate::domain::delivery::DeliveryRecord;
use crate::domain::ids::{MessageId, Wamid};
use crate::domain::time::Timestamp;
use crate::ports::store::{
    ConversationItem, CreateOutcome, Cursor, DeliveryStore, DueRecord, InsertOutcome, KeptKind,
    KeptRecord, MessageFilter, Page, ReplaceOutcome, StateDoc, StateKind, StoreError,
};
use async_trait::async_trait;
use rusqlite::OptionalExtension;

/// The [`DeliveryStore`] of an [`EmbeddedDb`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: EmbeddedDb,
}

impl EmbeddedStore {
    pub(super) fn new(db: EmbeddedDb) -> Self {
        Self { db }
    }
}

/// The columns of a `records` row, taken from the record before it crosses to the blocking pool.
struct RecordRow {
    id: String,
    version: i64,
    provider_message_id: Option<String>,
    status: &'static str,
    next_attempt_at: Option<i64>,
    due_at: Option<i64>,
    owner: Option<String>,
    channel: String,
    contact: Option<String>,
    created_at: i64,
    body: String,
}

impl RecordRow {
    fn of(record: &DeliveryRecord) -> Result<Self, StoreError> {
        Ok(Self {
            id: record.id.as_str().to_owned(),
            version: version(record.version)?,
            provider_message_id: record.provider_message_id.clone(),
            status: record.status.as_str(),
            next_attempt_at: record.next_attempt_at.map(Timestamp::as_millis),
            due_at: record.sweep_due_at().map(Timestamp::as_millis),
            owner: record.api_key_id.clone(),
            channel: channel_name(record.channel).to_owned(),
            contact: record.conversation_contact(),
            created_at: record.created_at.as_millis(),
            body: serde_json::to_string(record).map_err(|e| {
                StoreError::Unavailable(format!("record {} cannot be serialised: {e}", record.id))
            })?,
        })
    }
}

fn channel_name(c: crate::domain::delivery::Channel) -> &'static str {
    match c {
        crate::domain::delivery::Channel::Whatsapp => "whatsapp",
        crate::domain::delivery::Channel::Email => "email",
        crate::domain::delivery::Channel::Webhook => "webhook",
    }
}

fn version(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Unavailable(format!("version {v} out of range")))
}

fn decode_record(id: &str, body: &str) -> Result<DeliveryRecord, DbError> {
    serde_json::from_str(body).map_err(|e| {
        DbError::Corrupt(format!(
            "record {id} is not a valid delivery record: {}",
            super::json_error(&e)
        ))
    })
}

#[async_trait]
impl DeliveryStore for EmbeddedStore {
    async fn create(&self, record: &DeliveryRecord) -> Result<CreateOutcome, StoreError> {
        let row = RecordRow::of(record)?;
        let inserted = self
            .db
            .run(move |conn, _| {
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO records
                            (id, version, provider_message_id, status, next_attempt_at, body, due_at,
                             owner, channel, contact, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(rusqlite::params![
                        row.id,
                        row.version,
                        row.provider_message_id,
                        row.status,
                        row.next_attempt_at,
                        row.body,
                        row.due_at,
                        row.owner,
                        row.channel,
                        row.contact,
                        row.created_at
                    ])?)
            })
            .await?;
        Ok(if inserted == 1 {
            CreateOutcome::Created
        } else {
            CreateOutcome::AlreadyExists
        })
    }

    async fn get(&self, id: &MessageId) -> Result<Option<DeliveryRecord>, StoreError> {
        let id = id.as_str().to_owned();
        Ok(self
            .db
            .run(move |conn, _| {
                let body: Option<String> = conn
                    .prepare_cached("SELECT body FROM records WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?;
                body.map(|b| decode_record(&id, &b)).transpose()
            })
            .await?)
    }

    async fn find_by_wamid(&self, wamid: &Wamid) -> Result<Option<DeliveryRecord>, StoreError> {
        let wamid = wamid.as_str().to_owned();
        Ok(self
            .db
            .run(move |conn, _| {
                let row: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT id, body FROM records WHERE provider_message_id = ?1
                         ORDER BY id LIMIT 1",
                    )?
                    .query_row([&wamid], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                row.map(|(id, b)| decode_record(&id, &b)).transpose()
            })
            .await?)
    }

    async fn replace(
        &self,
        record: &DeliveryRecord,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let row = RecordRow::of(record)?;
        let expected = version(expected_version)?;
        let updated = self
            .db
            .run(move |conn, _| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE records
                         SET version = ?2, provider_message_id = ?3, status = ?4,
                             next_attempt_at = ?5, body = ?6, due_at = ?8, owner = ?9,
                             channel = ?10, contact = ?11, created_at = ?12
                         WHERE id = ?1 AND version = ?7",
                    )?
                    .execute(rusqlite::params![
                        row.id,
                        row.version,
                        row.provider_message_id,
                        row.status,
                        row.next_attempt_at,
                        row.body,
                        expected,
                        row.due_at,
                        row.owner,
                        row.channel,
                        row.contact,
                        row.created_at
                    ])?)
            })
            .await?;
        Ok(if updated == 1 {
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
        let before = before.as_millis();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db
            .run(move |conn, _| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, due_at FROM records
                     WHERE due_at IS NOT NULL AND due_at <= ?1
                     ORDER BY due_at LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(rusqlite::params![before, limit], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(id, due_at)| {
                let id = MessageId::parse(&id)
                    .map_err(|_| StoreError::Corrupt(format!("record id {id:?} is not valid")))?;
                Ok(DueRecord {
                    id,
                    due_at: Timestamp::from_millis(due_at),
                })
            })
            .collect()
    }

    async fn put_kept(&self, record: &KeptRecord) -> Result<InsertOutcome, StoreError> {
        let kind = record.kind.as_str();
        let key = record.key.clone();
        let sub_key = record.sub_key.clone();
        let received_at = record.received_at.as_millis();
        let expires_at = record.expires_at.as_millis();
        let payload = serde_json::to_string(&record.payload)
            .map_err(|e| StoreError::Unavailable(format!("inbound payload: {e}")))?;
        let contact = record.contact.clone();
        let written = self
            .db
            .run(move |conn, now| {
                // Insert if absent; an expired row counts as absent and is overwritten.
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO inbound
                            (kind, key, sub_key, received_at, expires_at, payload, contact)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8)
                         ON CONFLICT (kind, key, sub_key) DO UPDATE
                         SET received_at = excluded.received_at,
                             expires_at = excluded.expires_at,
                             payload = excluded.payload,
                             contact = excluded.contact
                         WHERE inbound.expires_at <= ?7",
                    )?
                    .execute(rusqlite::params![
                        kind,
                        key,
                        sub_key,
                        received_at,
                        expires_at,
                        payload,
                        now,
                        contact
                    ])?)
            })
            .await?;
        Ok(if written == 1 {
            InsertOutcome::Inserted
        } else {
            InsertOutcome::Duplicate
        })
    }

    async fn list_kept(&self, kind: KeptKind, key: &str) -> Result<Vec<KeptRecord>, StoreError> {
        let kind_str = kind.as_str();
        let key = key.to_owned();
        let rows = self
            .db
            .run(move |conn, now| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, sub_key, received_at, expires_at, payload, contact
                     FROM inbound
                     WHERE kind = ?1 AND key = ?2 AND expires_at > ?3
                     ORDER BY sub_key",
                )?;
                let rows = stmt
                    .query_map(rusqlite::params![kind_str, key, now], kept_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        // The query matched `kind` exactly, so every row is of that kind.
        rows.into_iter().map(|row| decode_kept(kind, row)).collect()
    }

    async fn list_messages(
        &self,
        owner: &str,
        filter: &MessageFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let owner = owner.to_owned();
        let status = filter.status.map(|s| s.as_str());
        let channel = filter.channel.map(channel_name);
        let since = filter.since.map(Timestamp::as_millis);
        let (c_at, c_id) = cursor_parts(cursor);
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
            .db
            .run(move |conn, _| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, body FROM records
                     WHERE owner = ?1 AND (?2 IS NULL OR status = ?2)
                       AND (?3 IS NULL OR channel = ?3) AND (?4 IS NULL OR created_at >= ?4)
                       AND (?5 IS NULL OR created_at < ?5 OR (created_at = ?5 AND id < ?6))
                     ORDER BY created_at DESC, id DESC LIMIT ?7",
                )?;
                let rows = stmt
                    .query_map(
                        rusqlite::params![owner, status, channel, since, c_at, c_id, fetch],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.iter()
                    .map(|(id, body)| decode_record(id, body))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(Page::from_overfetched(
            rows,
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
        let contact = wa_id.to_owned();
        let (c_at, c_id) = cursor_parts(cursor);
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let (out, inbound) = self
            .db
            .run(move |conn, now| {
                let out = conn
                    .prepare_cached(
                        "SELECT id, body FROM records
                         WHERE contact = ?1
                           AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
                         ORDER BY created_at DESC, id DESC LIMIT ?4",
                    )?
                    .query_map(rusqlite::params![contact, c_at, c_id, fetch], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let inbound = conn
                    .prepare_cached(
                        "SELECT key, sub_key, received_at, expires_at, payload, contact FROM inbound
                         WHERE contact = ?1 AND kind = 'message' AND expires_at > ?5
                           AND (?2 IS NULL OR received_at < ?2 OR (received_at = ?2 AND key < ?3))
                         ORDER BY received_at DESC, key DESC LIMIT ?4",
                    )?
                    .query_map(rusqlite::params![contact, c_at, c_id, fetch, now], kept_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                let out = out
                    .iter()
                    .map(|(id, body)| decode_record(id, body))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((out, inbound))
            })
            .await?;
        let mut items: Vec<ConversationItem> = out
            .into_iter()
            .map(|r| ConversationItem::Outbound(Box::new(r)))
            .collect();
        for row in inbound {
            items.push(ConversationItem::Inbound(decode_kept(
                KeptKind::Message,
                row,
            )?));
        }
        items.sort_by_key(|i| std::cmp::Reverse(i.cursor()));
        Ok(Page::from_overfetched(
            items,
            limit,
            ConversationItem::cursor,
        ))
    }

    async fn get_state(&self, kind: StateKind, key: &str) -> Result<Option<StateDoc>, StoreError> {
        let key = key.to_owned();
        let row = self
            .db
            .run(move |conn, _| {
                Ok(conn
                    .prepare_cached("SELECT version, body FROM state WHERE kind = ?1 AND key = ?2")?
                    .query_row(rusqlite::params![kind.as_str(), key], |r| {
                        Ok((key.clone(), r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()?)
            })
            .await?;
        row.map(|(key, version, body)| {
            let body = serde_json::from_str(&body).map_err(|e| {
                StoreError::Corrupt(format!(
                    "state {}/{key}: {}",
                    kind.as_str(),
                    super::json_error(&e)
                ))
            })?;
            Ok(StateDoc {
                kind,
                key,
                version: u64::try_from(version).unwrap_or(0),
                body,
            })
        })
        .transpose()
    }

    async fn put_state(
        &self,
        doc: &StateDoc,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let kind = doc.kind.as_str();
        let key = doc.key.clone();
        let new_version = version(doc.version)?;
        let expected = version(expected_version)?;
        let body = serde_json::to_string(&doc.body)
            .map_err(|e| StoreError::Unavailable(format!("state body: {e}")))?;
        let written = self
            .db
            .run(move |conn, _| {
                let sql = if expected == 0 {
                    "INSERT INTO state (kind, key, version, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, key) DO NOTHING"
                } else {
                    "UPDATE state SET version = ?3, body = ?4
                     WHERE kind = ?1 AND key = ?2 AND version = ?5"
                };
                let mut stmt = conn.prepare_cached(sql)?;
                Ok(if expected == 0 {
                    stmt.execute(rusqlite::params![kind, key, new_version, body])?
                } else {
                    stmt.execute(rusqlite::params![kind, key, new_version, body, expected])?
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

type KeptRow = (String, String, i64, i64, String, Option<String>);

fn kept_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeptRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn decode_kept(kind: KeptKind, row: KeptRow) -> Result<KeptRecord, StoreError> {
    let (key, sub_key, received_at, expires_at, payload, contact) = row;
    let payload = serde_json::from_str(&payload).map_err(|e| {
        StoreError::Corrupt(format!(
            "inbound record {}/{key}/{sub_key}: {}",
            kind.as_str(),
            super::json_error(&e)
        ))
    })?;
    Ok(KeptRecord {
        kind,
        key,
        sub_key,
        received_at: Timestamp::from_millis(received_at),
        expires_at: Timestamp::from_millis(expires_at),
        payload,
        contact,
    })
}

fn cursor_parts(cursor: Option<&Cursor>) -> (Option<i64>, Option<String>) {
    (cursor.map(|c| c.at_ms), cursor.map(|c| c.id.clone()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::delivery::Channel;

    #[tokio::test]
    async fn unreadable_rows_are_corrupt_and_do_not_quote_the_data() {
        let db = EmbeddedDb::in_memory().unwrap();
        let store = db.store();
        let record = DeliveryRecord::new_queued(
            MessageId::generate(),
            Channel::Whatsapp,
            "+5511999990001",
            serde_json::Value::Null,
            Timestamp::from_secs(1_000),
        );
        store.create(&record).await.unwrap();
        let wamid = Wamid::parse("wamid.CORRUPT").unwrap();
        let id = record.id.as_str().to_owned();
        db.run(move |conn, _| {
            conn.execute(
                "UPDATE records SET provider_message_id = 'wamid.CORRUPT',
                    body = '{\"id\": \"' || id || '\", \"recipient\": 5511999990001}'
                 WHERE id = ?1",
                [&id],
            )?;
            conn.execute(
                "INSERT INTO inbound VALUES ('message', 'k', '', 0, 9999999999999, '{\"a\":', NULL)",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();

        for err in [
            store.get(&record.id).await.unwrap_err(),
            store.find_by_wamid(&wamid).await.unwrap_err(),
            store.list_kept(KeptKind::Message, "k").await.unwrap_err(),
        ] {
            assert!(matches!(&err, StoreError::Corrupt(_)), "{err}");
            assert!(!err.to_string().contains("5511999990001"), "{err}");
        }
    }
}
