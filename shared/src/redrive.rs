//! Redrive: moves messages from a dead-letter queue back to the queue they came from, the same
//! way on SQS and on the embedded queue (`carteiro redrive`). Each message is sent to the
//! source before it is deleted from the dead-letter queue, so a crash in between leaves a
//! duplicate, which the consumers absorb, never a loss.

use crate::domain::time::Timestamp;
use crate::ports::queue::{MAX_BATCH, OutgoingMessage, Queue, QueueError};
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;

/// Which dead letters to move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedriveFilter {
    /// Only messages first sent at or after this.
    pub since: Option<Timestamp>,
    /// Only messages first sent before this.
    pub until: Option<Timestamp>,
    /// Report what would move; move nothing.
    pub dry_run: bool,
}

/// One message redrive looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveItem {
    pub message_id: String,
    pub sent_at: Option<Timestamp>,
    /// The body, cut to 200 characters for the report.
    pub body: String,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Moved (or, with `dry_run`, that would move).
    pub moved: Vec<RedriveItem>,
    /// Left in the dead-letter queue by the time filter.
    pub skipped: usize,
    pub dry_run: bool,
}

/// How long a message looked at stays hidden in the dead-letter queue, so one pass does not
/// see it twice: a dry run's (short, so a real run right after it sees every message again)
/// and a real run's (for a message the time filter leaves where it is).
const DRY_RUN_VISIBILITY: Duration = Duration::from_secs(5);
const LOOK_VISIBILITY: Duration = Duration::from_secs(60);

/// Moves the dead letters of `dlq` that match `filter` to `source`.
pub async fn redrive(
    dlq: &dyn Queue,
    source: &dyn Queue,
    filter: RedriveFilter,
) -> Result<RedriveReport, QueueError> {
    let mut report = RedriveReport {
        dry_run: filter.dry_run,
        ..RedriveReport::default()
    };
    let mut seen = HashSet::new();
    loop {
        let visibility = if filter.dry_run {
            DRY_RUN_VISIBILITY
        } else {
            LOOK_VISIBILITY
        };
        let batch = dlq.receive(MAX_BATCH, visibility).await?;
        if batch.is_empty() || batch.iter().all(|m| seen.contains(&m.message_id)) {
            return Ok(report);
        }
        for m in batch {
            if !seen.insert(m.message_id.clone()) {
                continue;
            }
            let in_window = m.sent_at.is_none_or(|at| {
                filter.since.is_none_or(|s| at >= s) && filter.until.is_none_or(|u| at < u)
            });
            if !in_window {
                report.skipped += 1;
                continue;
            }
            if !filter.dry_run {
                let mut out = OutgoingMessage::new(m.body.clone());
                out.attributes = m.attributes.clone();
                source.send_batch(&[out]).await?;
                dlq.ack(&m.receipt_handle).await?;
            }
            report.moved.push(RedriveItem {
                message_id: m.message_id,
                sent_at: m.sent_at,
                body: m.body.chars().take(200).collect(),
            });
        }
    }
}
