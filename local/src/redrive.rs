//! `carteiro redrive` over the embedded store: the dead-letter queue of `outbound` or
//! `inbound` back to its source, through the shared redrive (the same code moves SQS's).

use crate::{INBOUND_DLQ, INBOUND_QUEUE, OUTBOUND_DLQ, OUTBOUND_QUEUE};
use carteiro_shared::adapters::embedded::{DEFAULT_FILE_NAME, EmbeddedDb};
use carteiro_shared::redrive::{RedriveFilter, RedriveReport, redrive};
use std::path::Path;

/// Redrives `queue` (`outbound` or `inbound`) in the store under `data_dir`.
pub async fn run(
    data_dir: &Path,
    queue: &str,
    filter: RedriveFilter,
) -> Result<RedriveReport, String> {
    let (source, dlq) = match queue {
        "outbound" => (OUTBOUND_QUEUE, OUTBOUND_DLQ),
        "inbound" => (INBOUND_QUEUE, INBOUND_DLQ),
        other => return Err(format!("unknown queue {other:?} (outbound or inbound)")),
    };
    let path = data_dir.join(DEFAULT_FILE_NAME);
    if !path.exists() {
        return Err(format!("no embedded store at {}", path.display()));
    }
    let db = EmbeddedDb::open(&path).map_err(|e| e.to_string())?;
    redrive(&db.queue(dlq), &db.queue(source), filter)
        .await
        .map_err(|e| e.to_string())
}
