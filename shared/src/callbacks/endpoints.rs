//! Callback endpoints: where the app wants its events (the `callbacks` secret document), and
//! how each endpoint is doing (a state document: disabled or not, failing since when).

use crate::domain::app_event::EventType;
use crate::domain::time::Timestamp;
use crate::ports::store::{DeliveryStore, StateKind, StoreError};
use crate::ports::update::{Change, UpdateError, get_state, update_state};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The `callbacks` document.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbacksSecret {
    #[serde(default)]
    pub endpoints: Vec<CallbackEndpoint>,
}

/// One endpoint of the `callbacks` document.
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackEndpoint {
    /// Names the endpoint in the API (`POST /v1/endpoints/{id}/enable`) and in logs.
    pub id: String,
    pub url: String,
    /// The `whsec_` signing secret.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// During a rotation: every secret to sign with (each attempt carries one signature per
    /// secret); takes the place of `secret`.
    #[serde(default)]
    pub secrets: Vec<SecretString>,
    /// The event types it takes; empty or absent: all of them.
    #[serde(default)]
    pub events: Vec<String>,
    /// Events of one contact reach it in the order Carteiro learnt of them: one is sent only
    /// once the one before it is delivered or given up.
    #[serde(default)]
    pub ordered: bool,
}

impl CallbackEndpoint {
    pub fn wants(&self, event_type: EventType) -> bool {
        self.events.is_empty()
            || self
                .events
                .iter()
                .any(|e| e == "*" || e == event_type.as_str())
    }

    /// The secrets to sign with: `secrets` when given, else `secret`.
    pub fn signing_secrets(&self) -> Vec<&str> {
        let many: Vec<&str> = self
            .secrets
            .iter()
            .map(|s| s.expose_secret())
            .filter(|s| !s.is_empty())
            .collect();
        if many.is_empty() {
            self.secret
                .iter()
                .map(|s| s.expose_secret())
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            many
        }
    }
}

/// The endpoints of the `callbacks` secret; none when it is not configured.
pub async fn configured(
    secrets: &crate::secrets::Secrets,
) -> Result<Vec<CallbackEndpoint>, crate::ports::secrets::SecretError> {
    match secrets.callbacks(false).await {
        Ok(doc) => Ok(doc.endpoints),
        Err(crate::ports::secrets::SecretError::Missing(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// How an endpoint is doing; kept as a state document keyed by the endpoint id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// No callback is attempted while set; `POST /v1/endpoints/{id}/enable` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
    /// The first failure since the last success; a success clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at: Timestamp,
    /// `gone` (the endpoint answered 410) or `failing` (it failed for too long).
    pub reason: String,
}

pub async fn endpoint_state(
    store: &dyn DeliveryStore,
    id: &str,
) -> Result<EndpointState, StoreError> {
    get_state(store, StateKind::Endpoint, id).await
}

/// Records a delivered callback: the endpoint is no longer failing.
pub async fn note_success(
    store: &dyn DeliveryStore,
    id: &str,
    now: Timestamp,
) -> Result<(), UpdateError> {
    update_state(store, StateKind::Endpoint, id, |s: &mut EndpointState| {
        if s.failing_since.is_none()
            && s.last_success_at
                .is_some_and(|t| now.as_millis() - t.as_millis() < 60_000)
        {
            return Change::Keep(());
        }
        s.failing_since = None;
        s.last_success_at = Some(now);
        Change::Write(())
    })
    .await
    .map(|_| ())
}

/// Records a failed callback; disables the endpoint when it answered 410 (`gone`) or has been
/// failing for `disable_after`. Returns the reason when this call disabled it.
pub async fn note_failure(
    store: &dyn DeliveryStore,
    id: &str,
    gone: bool,
    disable_after: std::time::Duration,
    now: Timestamp,
) -> Result<Option<String>, UpdateError> {
    let (_, disabled) = update_state(store, StateKind::Endpoint, id, |s: &mut EndpointState| {
        if s.disabled.is_some() {
            return Change::Keep(None);
        }
        let since = *s.failing_since.get_or_insert(now);
        let reason = if gone {
            Some("gone")
        } else if now >= since.plus(disable_after) {
            Some("failing")
        } else {
            None
        };
        if let Some(reason) = reason {
            s.disabled = Some(Disabled {
                at: now,
                reason: reason.to_owned(),
            });
        }
        Change::Write(reason.map(str::to_owned))
    })
    .await?;
    if let Some(reason) = &disabled {
        tracing::warn!(endpoint = id, reason, "callback endpoint disabled");
    }
    Ok(disabled)
}

/// Enables a disabled endpoint again (and forgets its failures). True if it was disabled.
pub async fn enable(
    store: &dyn DeliveryStore,
    id: &str,
    now: Timestamp,
) -> Result<bool, UpdateError> {
    let (_, was) = update_state(store, StateKind::Endpoint, id, |s: &mut EndpointState| {
        if s.disabled.is_none() && s.failing_since.is_none() {
            return Change::Keep(false);
        }
        let was = s.disabled.is_some();
        s.disabled = None;
        s.failing_since = None;
        s.last_success_at = Some(now);
        Change::Write(was)
    })
    .await?;
    if was {
        tracing::info!(endpoint = id, "callback endpoint enabled");
    }
    Ok(was)
}
