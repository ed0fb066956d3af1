//! The embedded adapter set: one SQLite database holding the delivery store and every queue of
//! the local runtime.
//!
//! - [`EmbeddedDb::open`] opens (creating if needed) a file-backed database in WAL mode;
//!   [`EmbeddedDb::in_memory`] gives a private in-memory one for tests.
//! - [`EmbeddedDb::queue`] hands out an [`EmbeddedQueue`] with SQS semantics (delay, visibility
//!   timeout, a fresh receipt handle per receive); [`EmbeddedDb::store`] an [`EmbeddedStore`].
//! - Time comes from the [`Clock`] given at open (the system clock by default), in milliseconds.
//!
//! There is one connection, behind a `std::sync::Mutex`; every call runs on
//! [`tokio::task::spawn_blocking`], takes the lock, does its statements and lets go before
//! returning, so no lock is ever held across an `.await`. Other processes may open the same file
//! (a `carteiro` subcommand next to a running server): WAL mode and a busy timeout let them
//! take turns.
//!
//! The schema is versioned with `PRAGMA user_version` and migrated on open; a database written
//! by a newer build is refused rather than misread.

mod limits;
mod queue;
mod store;
mod suppressions;

pub use limits::EmbeddedLimits;
pub use queue::{EmbeddedQueue, QueueCounts, QueueSignal};
pub use store::EmbeddedStore;
pub use suppressions::EmbeddedSuppressions;

use crate::ports::clock::{Clock, SystemClock};
use crate::ports::store::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// The file name the local runtime uses inside its data directory.
pub const DEFAULT_FILE_NAME: &str = "carteiro.sqlite3";

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
/// Never edit an entry once released: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: queues, delivery records, inbound records.
    "
    CREATE TABLE queue_messages (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        queue          TEXT    NOT NULL,
        message_id     TEXT    NOT NULL UNIQUE,
        body           TEXT    NOT NULL,
        attributes     TEXT    NOT NULL,           -- JSON object of strings
        sent_at        INTEGER NOT NULL,           -- ms since the epoch
        visible_at     INTEGER NOT NULL,           -- ms since the epoch
        receive_count  INTEGER NOT NULL DEFAULT 0,
        receipt_handle TEXT                        -- of the latest receive; NULL before
    );
    CREATE INDEX queue_messages_visible ON queue_messages (queue, visible_at, seq);
    CREATE UNIQUE INDEX queue_messages_receipt ON queue_messages (receipt_handle)
        WHERE receipt_handle IS NOT NULL;

    CREATE TABLE records (
        id                  TEXT    PRIMARY KEY,
        version             INTEGER NOT NULL,
        provider_message_id TEXT,
        status              TEXT    NOT NULL,
        next_attempt_at     INTEGER,               -- ms since the epoch
        body                TEXT    NOT NULL        -- JSON of the DeliveryRecord
    );
    CREATE INDEX records_provider_message_id ON records (provider_message_id)
        WHERE provider_message_id IS NOT NULL;
    CREATE INDEX records_due ON records (status, next_attempt_at);

    CREATE TABLE inbound (
        kind        TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        sub_key     TEXT    NOT NULL,
        received_at INTEGER NOT NULL,              -- ms since the epoch
        expires_at  INTEGER NOT NULL,              -- ms since the epoch
        payload     TEXT    NOT NULL,              -- JSON
        PRIMARY KEY (kind, key, sub_key)
    );
    CREATE INDEX inbound_expires_at ON inbound (expires_at);
    ",
    // 2: when the sweeper should look at a record (NULL once nothing is pending).
    "
    ALTER TABLE records ADD COLUMN due_at INTEGER;   -- ms since the epoch
    CREATE INDEX records_sweep_due ON records (due_at) WHERE due_at IS NOT NULL;
    ",
    // 3: state documents (endpoint health, contacts, ordering chains).
    "
    CREATE TABLE state (
        kind    TEXT    NOT NULL,
        key     TEXT    NOT NULL,
        version INTEGER NOT NULL,
        body    TEXT    NOT NULL,                  -- JSON
        PRIMARY KEY (kind, key)
    );
    ",
    // 4: listings: a key's messages, a contact's conversation (backfilled from the JSON).
    "
    ALTER TABLE records ADD COLUMN owner TEXT;
    ALTER TABLE records ADD COLUMN channel TEXT;
    ALTER TABLE records ADD COLUMN contact TEXT;
    ALTER TABLE records ADD COLUMN created_at INTEGER;   -- ms since the epoch
    UPDATE records SET
        owner = json_extract(body, '$.api_key_id'),
        channel = json_extract(body, '$.channel'),
        created_at = json_extract(body, '$.created_at'),
        contact = CASE WHEN json_extract(body, '$.channel') = 'whatsapp'
                       THEN ltrim(json_extract(body, '$.recipient'), '+') END;
    CREATE INDEX records_owner ON records (owner, created_at, id) WHERE owner IS NOT NULL;
    CREATE INDEX records_contact ON records (contact, created_at, id) WHERE contact IS NOT NULL;
    ALTER TABLE inbound ADD COLUMN contact TEXT;
    UPDATE inbound SET contact = json_extract(payload, '$.message.from') WHERE kind = 'message';
    CREATE INDEX inbound_contact ON inbound (contact, received_at, key) WHERE contact IS NOT NULL;
    ",
    // 5: the limits port's documents (token buckets).
    "
    CREATE TABLE limits (
        key        TEXT    PRIMARY KEY,
        version    INTEGER NOT NULL,
        body       TEXT    NOT NULL,               -- JSON
        expires_at INTEGER NOT NULL                -- ms since the epoch
    );
    ",
    // 6: the suppressions port (recipients not to send to).
    "
    CREATE TABLE suppressions (
        key   TEXT PRIMARY KEY,                    -- <channel>/<address>
        body  TEXT NOT NULL,                       -- JSON
        until INTEGER                              -- ms since the epoch; NULL: until removed
    );
    ",
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// A handle on one embedded database. Cheap to clone; every clone, queue and store made from
/// it shares the one connection.
#[derive(Clone)]
pub struct EmbeddedDb {
    shared: Arc<Shared>,
}

struct Shared {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    path: Option<PathBuf>,
    /// Bumped after every successful send, so idle consumers can wake at once.
    sends: watch::Sender<u64>,
}

impl fmt::Debug for EmbeddedDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedDb")
            .field("path", &self.shared.path)
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

impl EmbeddedDb {
    /// Opens the database file at `path`, creating it (and its parent directory) if needed,
    /// with the system clock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// Opens the database file at `path` with the given clock.
    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create the directory of {shown}: {e}"))
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {shown}: {e}")))?;
        Self::init(conn, clock, Some(path.to_path_buf()))
            .map_err(|e| StoreError::Unavailable(format!("{shown}: {e}")))
    }

    /// A private in-memory database with the system clock; gone when the last handle drops.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::in_memory_with_clock(Arc::new(SystemClock))
    }

    /// A private in-memory database with the given clock.
    pub fn in_memory_with_clock(clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| StoreError::Unavailable(format!("cannot open an in-memory db: {e}")))?;
        Self::init(conn, clock, None).map_err(StoreError::from)
    }

    fn init(
        mut conn: Connection,
        clock: Arc<dyn Clock>,
        path: Option<PathBuf>,
    ) -> Result<Self, DbError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if path.is_some() {
            // WAL: readers never block the writer; FULL sync: a committed send survives a
            // power cut, which is what "an accepted message is never lost" needs.
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(DbError::Schema(format!(
                    "the database refused WAL mode (journal_mode is {mode})"
                )));
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        migrate(&mut conn)?;
        let (sends, _) = watch::channel(0);
        Ok(Self {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                clock,
                path,
                sends,
            }),
        })
    }

    /// The file behind this database; `None` when in memory.
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    /// The named queue. Queues need no creation: a name is a queue.
    pub fn queue(&self, name: &str) -> EmbeddedQueue {
        EmbeddedQueue::new(self.clone(), name)
    }

    /// The delivery store.
    pub fn store(&self) -> EmbeddedStore {
        EmbeddedStore::new(self.clone())
    }

    /// The limits port.
    pub fn limits(&self) -> EmbeddedLimits {
        EmbeddedLimits::new(self.clone())
    }

    /// The suppressions port.
    pub fn suppressions(&self) -> EmbeddedSuppressions {
        EmbeddedSuppressions::new(self.clone())
    }

    /// Deletes inbound records whose `expires_at` has passed (reads skip them anyway; this
    /// reclaims the space). Returns how many went.
    pub async fn purge_expired_kept(&self) -> Result<usize, StoreError> {
        self.run(|conn, now| Ok(conn.execute("DELETE FROM inbound WHERE expires_at <= ?1", [now])?))
            .await
            .map_err(StoreError::from)
    }

    /// Runs `f` with the connection and the current time (ms) on the blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, i64) -> Result<T, DbError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves no half-done work behind: an open
            // transaction rolls back when dropped. So a poisoned lock is safe to take over.
            let mut conn = shared.conn.lock().unwrap_or_else(PoisonError::into_inner);
            let now = shared.clock.now().as_millis();
            f(&mut conn, now)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    pub(crate) fn notify_sent(&self) {
        self.shared.sends.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe_sends(&self) -> watch::Receiver<u64> {
        self.shared.sends.subscribe()
    }
}

/// Brings the schema up to [`SCHEMA_VERSION`], one migration per transaction. The version is
/// re-read under the write lock so two processes opening a fresh file do not both migrate.
fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let applied = usize::try_from(version).unwrap_or(usize::MAX);
        if applied == MIGRATIONS.len() {
            return Ok(());
        }
        let Some(migration) = MIGRATIONS.get(applied) else {
            return Err(DbError::Schema(format!(
                "schema version {version} is newer than this build supports ({SCHEMA_VERSION}); \
                 use a newer carteiro"
            )));
        };
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", version.saturating_add(1))?;
        tx.commit()?;
    }
}

pub(crate) use crate::json::describe_error as json_error;

/// What can go wrong inside the adapter, before it is mapped to a port's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Schema(String),
    #[error("blocking task failed: {0}")]
    Task(String),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Corrupt(m) => Self::Corrupt(m),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn user_version(db: &EmbeddedDb) -> i64 {
        let conn = db.shared.conn.lock().unwrap();
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn open_migrates_once_and_reopening_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let db = EmbeddedDb::open(&path).unwrap();
        assert_eq!(user_version(&db), i64::from(SCHEMA_VERSION));
        let mode: String = db
            .shared
            .conn
            .lock()
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(db);
        let db = EmbeddedDb::open(&path).unwrap();
        assert_eq!(user_version(&db), i64::from(SCHEMA_VERSION));
        assert_eq!(
            user_version(&EmbeddedDb::in_memory().unwrap()),
            i64::from(SCHEMA_VERSION)
        );
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(EmbeddedDb::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = EmbeddedDb::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable(m) if m.contains("newer")),
            "{err}"
        );
    }

    #[test]
    fn an_unopenable_path_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        // A path under a regular file can be neither created nor opened.
        let err = EmbeddedDb::open(&file.join("db.sqlite")).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }
}
