//! `carteiro redrive`: a dead-letter queue back to its source, through the shared redrive —
//! over the embedded store ([`run`]: `outbound` or `inbound`), or over AWS SQS ([`run_sqs`],
//! with the `aws` feature: two queue URLs).

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

/// Redrives the SQS dead-letter queue at `dlq_url` into the queue at `queue_url`.
#[cfg(feature = "aws")]
pub async fn run_sqs(
    sdk: &aws_config::SdkConfig,
    dlq_url: &str,
    queue_url: &str,
    filter: RedriveFilter,
) -> Result<RedriveReport, String> {
    use carteiro_shared::adapters::aws::SqsQueue;
    let client = aws_sdk_sqs::Client::new(sdk);
    let dlq = SqsQueue::new(client.clone(), dlq_url.to_owned());
    let source = SqsQueue::new(client, queue_url.to_owned());
    redrive(&dlq, &source, filter)
        .await
        .map_err(|e| e.to_string())
}
