//! A message queue with SQS semantics: at-least-once delivery, per-message delay, a visibility
//! timeout after receive, and explicit acknowledgement.

use crate::domain::time::Timestamp;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

/// SQS's limit on `DelaySeconds`; longer waits belong to the retry sweeper.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// SQS's limit on entries per `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Capped at [`MAX_DELAY`].
    pub delay: Duration,
    /// String message attributes (`correlation_id`, ...).
    pub attributes: BTreeMap<String, String>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            delay: Duration::ZERO,
            attributes: BTreeMap::new(),
        }
    }

    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay.min(MAX_DELAY);
        self
    }
}

/// A message handed out by [`Queue::receive`]; invisible to other receivers until its
/// visibility timeout passes or it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Stable across redeliveries of the same message.
    pub message_id: String,
    /// Names this particular receipt; needed to acknowledge it.
    pub receipt_handle: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
    /// When it was first sent to this queue (SQS's `SentTimestamp`), if the queue says.
    pub sent_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Some entries of a batch were not accepted; the caller must treat the batch as not sent.
    #[error("the queue refused {failed} of {total} messages: {reason}")]
    Partial {
        failed: usize,
        total: usize,
        reason: String,
    },
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Enqueues every message durably or returns an error. Adapters split the slice into
    /// batches of [`MAX_BATCH`] (one `SendMessageBatch` call each).
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError>;

    /// Receives up to `max` visible messages (at most [`MAX_BATCH`]), hiding each for
    /// `visibility`. Returns at once when none is visible.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Deletes a received message. Acknowledging twice, or after the receipt went stale, is
    /// not an error.
    async fn ack(&self, receipt_handle: &str) -> Result<(), QueueError>;

    /// How many messages the queue holds, for the status page: SQS's approximate counts
    /// (one `GetQueueAttributes`), never a scan.
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
}

/// Queues by name (the dead-letter queues a status report counts).
pub type NamedQueues = Vec<(String, std::sync::Arc<dyn Queue>)>;

/// A queue's size, as [`Queue::depth`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct QueueDepth {
    /// Every message: waiting, delayed and being worked on.
    pub messages: u64,
    /// Received and not yet acknowledged.
    pub in_flight: u64,
    /// How long the oldest message has been in the queue, where the queue can say (SQS
    /// reports it as the CloudWatch metric `ApproximateAgeOfOldestMessage` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_secs: Option<u64>,
}
