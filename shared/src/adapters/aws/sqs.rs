//! [`Queue`] over Amazon SQS (standard queues).
//!
//! - `send_batch` sends one `SendMessageBatch` per [`MAX_BATCH`] messages (entry ids `"0"`…`"9"`),
//!   with `DelaySeconds` and string message attributes; a chunk is cut short where its
//!   messages would exceed SQS's 1 MiB per-request total. Entries SQS reports as failed are sent
//!   once more (unless SQS blames the request itself: `SenderFault` entries would fail again);
//!   anything still failing makes the call return [`QueueError::Partial`]. The other chunks
//!   are still sent, so a caller that retries the whole slice may enqueue duplicates —
//!   consumers are idempotent anyway (at-least-once).
//! - `receive` is a short poll (`WaitTimeSeconds=0`) that asks for every message attribute and
//!   `ApproximateReceiveCount`. Sub-second visibility timeouts round up to whole seconds.
//! - `ack` deletes the message; a receipt handle SQS calls invalid counts as acknowledged.
//!
//! SQS refuses empty attribute values, so an attribute whose value is empty is not sent and
//! the receiver sees it as absent.

use super::describe_sdk_error;
use crate::ports::queue::{
    MAX_BATCH, MAX_DELAY, OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage,
};
use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, MessageAttributeValue, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// SQS's maximum visibility timeout: 12 hours.
const MAX_VISIBILITY_SECS: u64 = 12 * 60 * 60;

/// SQS's limit on the total size of the messages of one `SendMessageBatch`.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// A message's size as SQS counts it: body plus each attribute's name, type and value.
fn sqs_size(m: &OutgoingMessage) -> usize {
    m.body.len()
        + m.attributes
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| k.len() + "String".len() + v.len())
            .sum::<usize>()
}

/// Splits `messages` into chunks of at most [`MAX_BATCH`] messages and, where possible,
/// [`MAX_BATCH_BYTES`] (a message too large on its own gets a chunk of its own, for SQS to
/// refuse).
fn chunks(messages: &[OutgoingMessage]) -> Vec<Vec<&OutgoingMessage>> {
    let mut out: Vec<Vec<&OutgoingMessage>> = Vec::new();
    let mut current: Vec<&OutgoingMessage> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let size = sqs_size(m);
        if !current.is_empty() && (current.len() == MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(m);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A [`Queue`] backed by one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    /// The queue whose URL the environment variable `url_var` holds.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        env: crate::config::Env<'_>,
        url_var: &'static str,
    ) -> Result<Self, crate::config::ConfigError> {
        let url = env.required(url_var)?;
        Ok(Self::new(aws_sdk_sqs::Client::new(sdk), url))
    }

    /// The dead-letter queues the status report counts, by name: `outbound-dlq` from
    /// `CARTEIRO_OUTBOUND_DLQ_URL`, `inbound-dlq` from `CARTEIRO_INBOUND_DLQ_URL` (each
    /// optional).
    pub fn dead_letters_from_env(
        sdk: &aws_config::SdkConfig,
        env: crate::config::Env<'_>,
    ) -> Result<crate::ports::queue::NamedQueues, crate::config::ConfigError> {
        let mut queues: crate::ports::queue::NamedQueues = Vec::new();
        for (name, var) in [
            ("outbound-dlq", "CARTEIRO_OUTBOUND_DLQ_URL"),
            ("inbound-dlq", "CARTEIRO_INBOUND_DLQ_URL"),
        ] {
            if env.optional(var).is_some() {
                queues.push((
                    name.to_owned(),
                    std::sync::Arc::new(Self::from_env(sdk, env, var)?),
                ));
            }
        }
        Ok(queues)
    }

    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one chunk (at most [`MAX_BATCH`] messages); returns the indexes into `chunk` that
    /// SQS reported as failed, with SQS's error entry for each.
    async fn send_chunk(
        &self,
        chunk: &[&OutgoingMessage],
    ) -> Result<Vec<(usize, BatchResultErrorEntry)>, QueueError> {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| entry(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(describe_sdk_error("SendMessageBatch", &e)))?;

        let mut failed = Vec::new();
        for f in out.failed {
            match f.id.parse::<usize>() {
                Ok(i) if i < chunk.len() => failed.push((i, f)),
                _ => {
                    return Err(QueueError::Unavailable(format!(
                        "SendMessageBatch: the response names an unknown entry id {:?}",
                        f.id
                    )));
                }
            }
        }
        // Every entry must be accounted for, as sent or as failed.
        if out.successful.len() + failed.len() != chunk.len() {
            return Err(QueueError::Unavailable(format!(
                "SendMessageBatch: {} entries sent, {} results returned",
                chunk.len(),
                out.successful.len() + failed.len()
            )));
        }
        Ok(failed)
    }
}

/// Builds the batch entry for `message`, with entry id `index`.
fn entry(
    index: usize,
    message: &OutgoingMessage,
) -> Result<SendMessageBatchRequestEntry, QueueError> {
    let delay = message.delay.min(MAX_DELAY).as_secs();
    let mut builder = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(&message.body)
        .delay_seconds(i32::try_from(delay).unwrap_or(i32::MAX));
    for (name, value) in &message.attributes {
        if value.is_empty() {
            continue;
        }
        let attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| QueueError::Unavailable(format!("message attribute {name:?}: {e}")))?;
        builder = builder.message_attributes(name, attr);
    }
    builder
        .build()
        .map_err(|e| QueueError::Unavailable(format!("SendMessageBatch entry: {e}")))
}

fn describe_entry_error(e: &BatchResultErrorEntry) -> String {
    match e.message() {
        Some(m) => format!("{}: {m}", e.code()),
        None => e.code().to_owned(),
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        let mut failed = 0usize;
        let mut first_reason: Option<String> = None;

        for chunk in chunks(messages) {
            let first = self.send_chunk(&chunk).await?;
            if first.is_empty() {
                continue;
            }

            // Retry once what SQS could not take, except entries it refused as malformed.
            let (retryable, refused): (Vec<_>, Vec<_>) =
                first.into_iter().partition(|(_, e)| !e.sender_fault());
            failed += refused.len();
            if first_reason.is_none() {
                first_reason = refused.first().map(|(_, e)| describe_entry_error(e));
            }
            if retryable.is_empty() {
                continue;
            }
            let again: Vec<&OutgoingMessage> = retryable.iter().map(|(i, _)| chunk[*i]).collect();
            let still = self.send_chunk(&again).await?;
            failed += still.len();
            if first_reason.is_none() {
                first_reason = still.first().map(|(_, e)| describe_entry_error(e));
            }
        }

        if failed == 0 {
            Ok(())
        } else {
            Err(QueueError::Partial {
                failed,
                total: messages.len(),
                reason: first_reason.unwrap_or_else(|| "unknown".to_owned()),
            })
        }
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut visibility_secs = visibility.as_secs();
        if visibility.subsec_nanos() > 0 {
            visibility_secs += 1;
        }
        let visibility_secs = visibility_secs.min(MAX_VISIBILITY_SECS);

        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .visibility_timeout(i32::try_from(visibility_secs).unwrap_or(i32::MAX))
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(describe_sdk_error("ReceiveMessage", &e)))?;

        let mut received = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let (Some(message_id), Some(receipt_handle)) = (m.message_id, m.receipt_handle) else {
                return Err(QueueError::Unavailable(
                    "ReceiveMessage: a message without id or receipt handle".to_owned(),
                ));
            };
            let receive_count = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(1);
            let sent_at = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|n| n.parse::<i64>().ok())
                .map(crate::domain::time::Timestamp::from_millis);
            let attributes: BTreeMap<String, String> = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(name, value)| value.string_value.map(|v| (name, v)))
                .collect();
            received.push(ReceivedMessage {
                message_id,
                receipt_handle,
                body: m.body.unwrap_or_default(),
                attributes,
                receive_count,
                sent_at,
            });
        }
        Ok(received)
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(describe_sdk_error("GetQueueAttributes", &e)))?;
        let attrs = out.attributes.unwrap_or_default();
        let n = |a: A| {
            attrs
                .get(&a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let in_flight = n(A::ApproximateNumberOfMessagesNotVisible);
        Ok(QueueDepth {
            messages: n(A::ApproximateNumberOfMessages)
                + in_flight
                + n(A::ApproximateNumberOfMessagesDelayed),
            in_flight,
            oldest_age_secs: None,
        })
    }

    async fn ack(&self, receipt_handle: &str) -> Result<(), QueueError> {
        match self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let stale = e.as_service_error().is_some_and(|s| {
                    #[allow(deprecated)]
                    let typed = s.is_receipt_handle_is_invalid() || s.is_invalid_id_format();
                    // Emulators and older endpoints answer with the legacy query-protocol codes.
                    typed
                        || matches!(
                            s.code(),
                            Some(
                                "ReceiptHandleIsInvalid"
                                    | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
                                    | "InvalidIdFormat"
                            )
                        )
                });
                if stale {
                    Ok(())
                } else {
                    Err(QueueError::Unavailable(describe_sdk_error(
                        "DeleteMessage",
                        &e,
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn chunks_hold_at_most_ten_messages_and_one_mebibyte() {
        let small: Vec<_> = (0..25)
            .map(|i| OutgoingMessage::new(format!("m{i}")))
            .collect();
        let sizes: Vec<_> = chunks(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);

        let big = OutgoingMessage::new("x".repeat(300 * 1024)).with_attribute("k", "v");
        let mixed = vec![
            big.clone(),
            big.clone(),
            big.clone(),
            big.clone(),
            small[0].clone(),
        ];
        let sizes: Vec<_> = chunks(&mixed).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 2]);

        let huge = vec![
            OutgoingMessage::new("x".repeat(2 * 1024 * 1024)),
            small[0].clone(),
        ];
        let sizes: Vec<_> = chunks(&huge).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1]);
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn entries_carry_delay_and_non_empty_attributes() {
        let m = OutgoingMessage::new("body")
            .with_delay(Duration::from_secs(5000))
            .with_attribute("correlation_id", "c-1")
            .with_attribute("empty", "");
        let e = entry(7, &m).unwrap();
        assert_eq!(e.id(), "7");
        assert_eq!(e.delay_seconds(), Some(900));
        let attrs = e.message_attributes().unwrap();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs["correlation_id"].string_value(), Some("c-1"));
    }
}
