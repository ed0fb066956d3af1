//! The outbound queue's message body.

use crate::domain::ids::MessageId;
use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A dispatch job: the record to send. Everything else is in the record, so a job put on the
/// queue twice (a redelivery, the sweeper and a delayed retry together) still sends once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchJob {
    pub id: MessageId,
    /// Carried from the request that created the record into every consumer's log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// For a scheduled retry: the `next_attempt_at` this job was queued for. A job that finds
    /// the record scheduled for another time is a leftover duplicate and is dropped, so
    /// duplicate jobs never multiply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
}

impl DispatchJob {
    pub fn new(id: MessageId, correlation_id: Option<String>) -> Self {
        Self {
            id,
            correlation_id,
            due_at: None,
        }
    }

    #[must_use]
    pub fn for_retry_at(mut self, at: Timestamp) -> Self {
        self.due_at = Some(at);
        self
    }
}
