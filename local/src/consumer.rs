//! In-process queue consumers: what SQS's event source mapping does on AWS. Each poll takes a
//! batch, hands it to the shared batch handler, acknowledges what succeeded, and moves a
//! message that failed too often to the dead-letter queue (SQS's redrive policy).

use crate::{Gateway, INBOUND_DLQ};
use carteiro_shared::inbound::{self, QueuedEvent};
use carteiro_shared::ports::queue::{MAX_BATCH, OutgoingMessage, Queue, ReceivedMessage};
use std::time::Duration;
use tokio::sync::watch;

/// As template.yaml's `maxReceiveCount`.
pub const MAX_RECEIVES: u32 = 5;

/// As template.yaml's visibility timeout for the inbound queue.
pub const VISIBILITY: Duration = Duration::from_secs(180);

/// Consumes the inbound queue until shutdown.
pub async fn run_inbound(gateway: Gateway, idle_wait: Duration, mut shutdown: watch::Receiver<bool>) {
    let queue = gateway.intake.queue.clone();
    let dlq = gateway.db.queue(INBOUND_DLQ);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let busy = match poll_once(queue.as_ref(), &dlq, &gateway).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = %e, "inbound consumer poll failed");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(idle_wait) => {}
                changed = shutdown.changed() => {
                    // The sender is gone: nobody can ask us to stop any more, so stop now.
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// One receive-process-acknowledge round; returns how many messages it received.
pub async fn poll_once(
    queue: &dyn Queue,
    dlq: &dyn Queue,
    gateway: &Gateway,
) -> Result<usize, carteiro_shared::ports::QueueError> {
    let received = queue.receive(MAX_BATCH, VISIBILITY).await?;
    let count = received.len();
    let (exhausted, live): (Vec<ReceivedMessage>, Vec<ReceivedMessage>) = received
        .into_iter()
        .partition(|m| m.receive_count > MAX_RECEIVES);
    for message in exhausted {
        tracing::error!(message_id = %message.message_id, "inbound event failed {MAX_RECEIVES} times; moved to the dead-letter queue");
        let mut dead = OutgoingMessage::new(message.body.clone());
        dead.attributes = message.attributes.clone();
        dlq.send_batch(&[dead]).await?;
        queue.ack(&message.receipt_handle).await?;
    }
    let events: Vec<QueuedEvent> = live
        .iter()
        .map(|m| QueuedEvent {
            message_id: m.message_id.clone(),
            body: m.body.clone(),
        })
        .collect();
    let failed = inbound::process_batch(&gateway.inbound, &events).await;
    for message in live.iter().filter(|m| !failed.contains(&m.message_id)) {
        queue.ack(&message.receipt_handle).await?;
    }
    Ok(count)
}
