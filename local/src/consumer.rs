//! In-process queue consumers: what SQS's event source mapping does on AWS. Each poll takes a
//! batch, hands it to the shared batch handler, acknowledges what succeeded, and moves a
//! message that failed too often to the dead-letter queue (SQS's redrive policy).

use crate::{Gateway, INBOUND_DLQ, INBOUND_QUEUE, OUTBOUND_DLQ, OUTBOUND_QUEUE};
use carteiro_shared::batch::QueuedEvent;
use carteiro_shared::ports::queue::{
    MAX_BATCH, OutgoingMessage, Queue, QueueError, ReceivedMessage,
};
use carteiro_shared::{dispatch, inbound};
use std::time::Duration;
use tokio::sync::watch;

/// As template.yaml's `maxReceiveCount`.
pub const MAX_RECEIVES: u32 = 5;

/// The queues consumed in-process, each with the handler its Lambda runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Webhook events → the inbound-events handler.
    Inbound,
    /// Send jobs → the dispatch handler.
    Dispatch,
}

impl Consumer {
    const fn queues(self) -> (&'static str, &'static str) {
        match self {
            Self::Inbound => (INBOUND_QUEUE, INBOUND_DLQ),
            Self::Dispatch => (OUTBOUND_QUEUE, OUTBOUND_DLQ),
        }
    }

    /// Batches handled at once, as SQS's event source mapping runs several invocations side by
    /// side: one slow provider call does not hold up every other message.
    pub const fn pollers(self) -> usize {
        match self {
            Self::Inbound => 2,
            Self::Dispatch => 4,
        }
    }

    /// As template.yaml's visibility timeouts (6 × the function timeout).
    const fn visibility(self) -> Duration {
        match self {
            Self::Inbound => Duration::from_secs(180),
            Self::Dispatch => Duration::from_secs(360),
        }
    }

    async fn process(self, gateway: &Gateway, events: &[QueuedEvent]) -> Vec<String> {
        match self {
            Self::Inbound => inbound::process_batch(&gateway.inbound, events).await,
            Self::Dispatch => dispatch::process_batch(&gateway.dispatch, events).await,
        }
    }
}

/// Consumes one queue until shutdown.
pub async fn run(
    kind: Consumer,
    gateway: Gateway,
    idle_wait: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let (queue, dlq) = kind.queues();
    let queue = gateway.db.queue(queue);
    let dlq = gateway.db.queue(dlq);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let busy = match poll_once(kind, &queue, &dlq, &gateway, kind.visibility()).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(consumer = ?kind, error = %e, "queue poll failed");
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

/// One receive-process-acknowledge round; returns how many messages it received. A message
/// that fails stays on the queue, visible again after `visibility`.
pub async fn poll_once(
    kind: Consumer,
    queue: &dyn Queue,
    dlq: &dyn Queue,
    gateway: &Gateway,
    visibility: Duration,
) -> Result<usize, QueueError> {
    let received = queue.receive(MAX_BATCH, visibility).await?;
    let count = received.len();
    let (exhausted, live): (Vec<ReceivedMessage>, Vec<ReceivedMessage>) = received
        .into_iter()
        .partition(|m| m.receive_count > MAX_RECEIVES);
    for message in exhausted {
        tracing::error!(consumer = ?kind, message_id = %message.message_id, "message failed {MAX_RECEIVES} times; moved to the dead-letter queue");
        let mut dead = OutgoingMessage::new(message.body.clone());
        dead.attributes = message.attributes.clone();
        dlq.send_batch(&[dead]).await?;
        queue.ack(&message.receipt_handle).await?;
    }
    let events: Vec<QueuedEvent> = live.iter().map(QueuedEvent::from).collect();
    let failed = kind.process(gateway, &events).await;
    for message in &live {
        if !failed.contains(&message.message_id) {
            queue.ack(&message.receipt_handle).await?;
        }
    }
    Ok(count)
}
