//! The provider port: one trait every channel implements. Dispatch hands a provider the
//! payload built when the message was accepted and gets back a channel-neutral
//! [`SendOutcome`]; it never knows whether Meta or an SMTP server was behind it.

use crate::domain::delivery::Channel;
use crate::domain::ids::MessageId;
use crate::domain::outcome::{FailureClass, SendFailure, SendOutcome};
use crate::domain::payload::DeliveryPayload;
use crate::resilience::rate::Rate;
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

/// Sends one prepared delivery.
#[async_trait]
pub trait Provider: Send + Sync + Debug {
    /// Makes one provider call for `payload`. With `fresh_credentials` the provider re-reads
    /// its credential, bypassing every cache, before calling (after a `Token` failure).
    async fn send(
        &self,
        id: &MessageId,
        payload: &DeliveryPayload,
        fresh_credentials: bool,
    ) -> SendOutcome;

    /// The per-second rate the endpoint `payload` goes through takes, when its configuration
    /// sets one (an SMTP relay's `rate_limit`); dispatch keeps every instance inside it.
    async fn rate(&self, _payload: &DeliveryPayload) -> Option<Rate> {
        None
    }
}

/// The `Token` rule, once for every channel: send with the cached credential; if the provider
/// refuses it (Meta 190 / 0, SMTP 535), re-read it and send once more. A refused credential is
/// refused before anything is sent, so the second call cannot duplicate the message. The
/// second outcome is returned as it is (a second `Token` is left for the retry policy).
pub async fn send_refreshing_credentials(
    provider: &dyn Provider,
    id: &MessageId,
    payload: &DeliveryPayload,
) -> SendOutcome {
    let first = provider.send(id, payload, false).await;
    if first.failure_class() != Some(FailureClass::Token) {
        return first;
    }
    tracing::warn!(
        channel = ?payload.channel(),
        "the provider refused the credential; re-reading the secret and retrying once"
    );
    provider.send(id, payload, true).await
}

/// The provider of each channel.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    by_channel: HashMap<Channel, Arc<dyn Provider>>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn with(mut self, channel: Channel, provider: Arc<dyn Provider>) -> Self {
        self.by_channel.insert(channel, provider);
        self
    }

    /// The configured rate of the endpoint `payload` goes through, if any.
    pub async fn rate(&self, payload: &DeliveryPayload) -> Option<Rate> {
        self.by_channel.get(&payload.channel())?.rate(payload).await
    }

    /// Sends through the channel's provider, applying the token rule.
    pub async fn send(&self, id: &MessageId, payload: &DeliveryPayload) -> SendOutcome {
        let channel = payload.channel();
        match self.by_channel.get(&channel) {
            Some(provider) => send_refreshing_credentials(provider.as_ref(), id, payload).await,
            None => SendOutcome::Failed(SendFailure::carteiro(
                FailureClass::Permanent,
                "not_configured",
                format!("no provider is configured for the {channel:?} channel"),
            )),
        }
    }
}
