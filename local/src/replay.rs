//! `carteiro replay EVENT_ID`: sends an event to its endpoints again, over the embedded store
//! (the same [`carteiro_shared::callbacks::replay`] as `POST /v1/events/{id}/replay`). A
//! running gateway picks the queued deliveries up; otherwise the next start does.

use crate::OUTBOUND_QUEUE;
use carteiro_shared::adapters::embedded::{DEFAULT_FILE_NAME, EmbeddedDb};
use carteiro_shared::callbacks::{Replayed, replay};
use carteiro_shared::domain::Timestamp;
use carteiro_shared::domain::app_event::EventId;
use std::path::Path;

/// Replays `event_id` in the store under `data_dir`; the deliveries as they are now.
pub async fn run(data_dir: &Path, event_id: &str) -> Result<Vec<Replayed>, String> {
    let id = EventId::parse(event_id).map_err(|e| format!("{event_id:?}: {}", e.reason))?;
    let path = data_dir.join(DEFAULT_FILE_NAME);
    if !path.exists() {
        return Err(format!("no embedded store at {}", path.display()));
    }
    let db = EmbeddedDb::open(&path).map_err(|e| e.to_string())?;
    let store = db.store();
    match replay(&store, &db.queue(OUTBOUND_QUEUE), &id, Timestamp::now()).await {
        Ok(Some((_, deliveries))) => Ok(deliveries),
        Ok(None) => Err(format!(
            "no event {event_id} (events are kept for CARTEIRO_EVENT_TTL_DAYS)"
        )),
        Err(e) => Err(e.to_string()),
    }
}
