//! Queue batches, as SQS hands them to a Lambda and the embedded queue to the local runtime:
//! every message of a batch is processed concurrently, and the ids of those that failed are
//! reported back so only they are delivered again (partial batch failure).

use futures::StreamExt;
use std::fmt::Display;
use std::future::Future;

/// One queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub message_id: String,
    pub body: String,
    /// The `correlation_id` message attribute, when the producer set one.
    pub correlation_id: Option<String>,
}

/// The message attribute carrying a correlation id from producer to consumer.
pub const ATTR_CORRELATION_ID: &str = "correlation_id";

impl From<&crate::ports::queue::ReceivedMessage> for QueuedEvent {
    fn from(m: &crate::ports::queue::ReceivedMessage) -> Self {
        Self {
            message_id: m.message_id.clone(),
            body: m.body.clone(),
            correlation_id: m.attributes.get(ATTR_CORRELATION_ID).cloned(),
        }
    }
}

/// Runs `process` on every event, at most `concurrency` at a time, and returns the message
/// ids of the events it failed on. An empty id is returned as it is, never dropped: the caller
/// must fail the whole batch then.
pub async fn process_concurrently<'a, F, Fut, T, E>(
    events: &'a [QueuedEvent],
    concurrency: usize,
    process: F,
) -> Vec<String>
where
    F: Fn(&'a QueuedEvent) -> Fut,
    Fut: Future<Output = Result<T, E>> + 'a,
    T: std::fmt::Debug,
    E: Display,
{
    // Futures are built first: a stream over a borrowing closure would not be `Send`.
    let pending: Vec<_> = events
        .iter()
        .map(|event| {
            let fut = process(event);
            async move {
                match fut.await {
                    Ok(outcome) => {
                        tracing::debug!(message_id = %event.message_id, ?outcome, "queue message processed");
                        None
                    }
                    Err(e) => {
                        tracing::error!(message_id = %event.message_id, error = %e, "queue message failed");
                        Some(event.message_id.clone())
                    }
                }
            }
        })
        .collect();
    let results: Vec<Option<String>> = futures::stream::iter(pending)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().flatten().collect()
}
