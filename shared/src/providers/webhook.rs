//! The callback sender: the provider of the `webhook` channel. One attempt is one signed POST
//! of the event's envelope to its endpoint:
//!
//! - **Signed** with Standard Webhooks: `webhook-id` (the event id, the same on every attempt),
//!   `webhook-timestamp` (this attempt, unix seconds), `webhook-signature` (one `v1,` entry per
//!   secret during a rotation).
//! - **Checked** before it leaves: HTTPS only, to public addresses only, resolved here and
//!   connected to as checked ([`super::ssrf`]); redirects are never followed. The local
//!   runtime's development allowlist adds plain http to loopback.
//! - **Judged**: 2xx delivered; 410 Gone disables the endpoint; 429 and 503 wait for their
//!   `Retry-After`; anything else, a timeout or a reset is retried on the callback schedule.
//!   An endpoint failing for `CARTEIRO_CALLBACK_DISABLE_AFTER` is disabled; a disabled one is
//!   not called at all until `POST /v1/endpoints/{id}/enable`.
//!
//! A callback has no ambiguous outcome: receivers deduplicate on `webhook-id`, so a timeout is
//! simply retried.

use super::ssrf::{AddressPolicy, Blocked, CheckedResolver, Lookup, SystemLookup, literal_ip};
use crate::callbacks::endpoints::{self, CallbackEndpoint};
use crate::callbacks::signing;
use crate::config::CallbackSettings;
use crate::domain::delivery::DeliveryError;
use crate::domain::ids::MessageId;
use crate::domain::outcome::{FailureClass, SendFailure, SendOutcome};
use crate::domain::payload::DeliveryPayload;
use crate::ports::clock::Clock;
use crate::ports::provider::Provider;
use crate::ports::store::DeliveryStore;
use crate::secrets::Secrets;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

const USER_AGENT: &str = concat!("Carteiro-Webhooks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum SenderBuildError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Sends callbacks. Built once per process.
#[derive(Debug, Clone)]
pub struct CallbackSender {
    /// HTTPS to allowed addresses.
    https: reqwest::Client,
    /// Plain http to loopback: the development allowlist only.
    loopback_http: Option<reqwest::Client>,
    secrets: Secrets,
    store: Arc<dyn DeliveryStore>,
    clock: Arc<dyn Clock>,
    settings: CallbackSettings,
}

impl CallbackSender {
    pub fn new(
        secrets: Secrets,
        store: Arc<dyn DeliveryStore>,
        clock: Arc<dyn Clock>,
        settings: CallbackSettings,
    ) -> Result<Self, SenderBuildError> {
        Self::with_lookup(secrets, store, clock, settings, Arc::new(SystemLookup))
    }

    /// With a given resolver (tests use a fixed table).
    pub fn with_lookup(
        secrets: Secrets,
        store: Arc<dyn DeliveryStore>,
        clock: Arc<dyn Clock>,
        settings: CallbackSettings,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, SenderBuildError> {
        let tls = crate::tls::graph_client_tls()?;
        let policy = AddressPolicy {
            allow_loopback: settings.allow_loopback_http,
        };
        let client = |policy: AddressPolicy| {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
                .dns_resolver(Arc::new(CheckedResolver {
                    policy,
                    lookup: lookup.clone(),
                }))
                .tls_backend_preconfigured(tls.clone())
                .build()
        };
        let loopback_http = if settings.allow_loopback_http {
            Some(client(policy)?)
        } else {
            None
        };
        Ok(Self {
            https: client(policy)?,
            loopback_http,
            secrets,
            store,
            clock,
            settings,
        })
    }

    async fn endpoint(&self, id: &str, fresh: bool) -> Result<CallbackEndpoint, SendFailure> {
        let doc = self
            .secrets
            .callbacks(fresh)
            .await
            .map_err(|e| super::secret_failure(&e, "callbacks_not_configured"))?;
        doc.endpoints
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| {
                SendFailure::carteiro(
                    FailureClass::Permanent,
                    "endpoint_removed",
                    format!("no endpoint {id:?} in the callbacks secret"),
                )
            })
    }

    /// The client for `url`, or why it may not be called.
    fn client_for(&self, url: &reqwest::Url) -> Result<&reqwest::Client, SendFailure> {
        let refused =
            |why: String| SendFailure::carteiro(FailureClass::Permanent, "blocked_url", why);
        let host = url.host_str().unwrap_or_default();
        let policy = AddressPolicy {
            allow_loopback: self.settings.allow_loopback_http,
        };
        if let Some(ip) = literal_ip(host)
            && !policy.allows(ip)
        {
            return Err(refused(format!(
                "{ip} is not an address callbacks may reach"
            )));
        }
        match url.scheme() {
            "https" => Ok(&self.https),
            "http" => {
                let loopback =
                    host == "localhost" || literal_ip(host).is_some_and(|ip| ip.is_loopback());
                match &self.loopback_http {
                    Some(client) if loopback => Ok(client),
                    _ => Err(refused(
                        "callbacks use https (plain http only to loopback in the local runtime)"
                            .to_owned(),
                    )),
                }
            }
            other => Err(refused(format!("the {other} scheme is not allowed"))),
        }
    }

    /// `HEAD url` through the checked client: the status of any HTTP answer, or why there was
    /// none (the health probe's question; no event is sent).
    pub async fn reach(&self, url: &str) -> Result<u16, String> {
        let url =
            reqwest::Url::parse(url).map_err(|e| format!("the endpoint URL is not valid: {e}"))?;
        let client = self.client_for(&url).map_err(|f| f.error.message)?;
        match client.head(url).send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(transport_failure(&e).error.message),
        }
    }

    async fn attempt(
        &self,
        endpoint: &CallbackEndpoint,
        event_id: &str,
        body: &str,
    ) -> SendOutcome {
        let url = match reqwest::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(e) => {
                return failed(SendFailure::carteiro(
                    FailureClass::Permanent,
                    "invalid_url",
                    format!("the endpoint URL is not valid: {e}"),
                ));
            }
        };
        let client = match self.client_for(&url) {
            Ok(c) => c,
            Err(f) => return failed(f),
        };
        let keys: Result<Vec<Vec<u8>>, _> = endpoint
            .signing_secrets()
            .into_iter()
            .map(signing::secret_key)
            .collect();
        let keys = match keys {
            Ok(keys) if !keys.is_empty() => keys,
            _ => {
                return failed(SendFailure::carteiro(
                    FailureClass::Permanent,
                    "invalid_secret",
                    "the endpoint has no valid whsec_ signing secret",
                ));
            }
        };
        let timestamp = self.clock.now().as_secs();
        let signature = signing::sign(&keys, event_id, timestamp, body.as_bytes());
        let sent = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return failed(transport_failure(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = read_truncated(response, self.settings.response_max_bytes).await;
        if status.is_success() {
            return SendOutcome::Accepted {
                provider_message_id: event_id.to_owned(),
                message_status: Some(status.as_u16().to_string()),
                response: Some(answer).filter(|a| !a.is_empty()),
            };
        }
        let class = match status.as_u16() {
            410 => FailureClass::Permanent,
            429 | 503 => FailureClass::Throttled,
            _ => FailureClass::Retryable,
        };
        let message = match (status.is_redirection(), location) {
            (true, Some(to)) => {
                format!("the endpoint answered {status} (to {to}); redirects are not followed")
            }
            (true, None) => format!("the endpoint answered {status}; redirects are not followed"),
            _ => format!("the endpoint answered {status}"),
        };
        failed(SendFailure {
            class,
            error: DeliveryError {
                source: "webhook".to_owned(),
                code: status.as_u16().to_string(),
                message,
                details: Some(answer).filter(|a| !a.is_empty()),
            },
            retry_after,
        })
    }
}

fn failed(f: SendFailure) -> SendOutcome {
    SendOutcome::Failed(f)
}

#[async_trait]
impl Provider for CallbackSender {
    async fn send(
        &self,
        _id: &MessageId,
        payload: &DeliveryPayload,
        fresh_credentials: bool,
    ) -> SendOutcome {
        let DeliveryPayload::WebhookV1 {
            endpoint_id,
            event_id,
            body,
            ..
        } = payload
        else {
            return failed(super::wrong_channel(payload));
        };
        let endpoint = match self.endpoint(endpoint_id, fresh_credentials).await {
            Ok(e) => e,
            Err(f) => return failed(f),
        };
        match endpoints::endpoint_state(self.store.as_ref(), endpoint_id).await {
            Ok(state) => {
                if let Some(disabled) = state.disabled {
                    return failed(SendFailure::carteiro(
                        FailureClass::Permanent,
                        "endpoint_disabled",
                        format!(
                            "endpoint {endpoint_id} is disabled ({}); POST /v1/endpoints/{endpoint_id}/enable, then replay",
                            disabled.reason
                        ),
                    ));
                }
            }
            Err(e) => {
                return failed(SendFailure::carteiro(
                    FailureClass::Retryable,
                    "store_unavailable",
                    e.to_string(),
                ));
            }
        }
        let outcome = self.attempt(&endpoint, event_id.as_str(), body).await;
        let now = self.clock.now();
        let store = self.store.as_ref();
        match &outcome {
            SendOutcome::Accepted { .. } => {
                if let Err(e) = endpoints::note_success(store, endpoint_id, now).await {
                    tracing::warn!(error = %e, endpoint = endpoint_id.as_str(), "endpoint success not recorded");
                }
            }
            SendOutcome::Failed(f) if f.error.source == "webhook" => {
                let gone = f.error.code == "410";
                match endpoints::note_failure(
                    store,
                    endpoint_id,
                    gone,
                    self.settings.disable_after,
                    now,
                )
                .await
                {
                    Ok(Some(reason)) if !gone => {
                        return failed(SendFailure {
                            class: FailureClass::Permanent,
                            error: DeliveryError {
                                code: "endpoint_disabled".to_owned(),
                                message: format!(
                                    "{}; the endpoint is now disabled ({reason})",
                                    f.error.message
                                ),
                                ..f.error.clone()
                            },
                            retry_after: None,
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, endpoint = endpoint_id.as_str(), "endpoint failure not recorded")
                    }
                }
            }
            SendOutcome::Failed(_) => {}
        }
        outcome
    }
}

fn transport_failure(e: &reqwest::Error) -> SendFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(blocked) = err.downcast_ref::<Blocked>() {
            return SendFailure::carteiro(
                FailureClass::Permanent,
                "blocked_address",
                blocked.to_string(),
            );
        }
        source = err.source();
    }
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect_failed"
    } else {
        "transport_failed"
    };
    SendFailure {
        class: FailureClass::Retryable,
        error: DeliveryError {
            source: "webhook".to_owned(),
            code: code.to_owned(),
            message: format!("the request did not complete: {code}"),
            details: None,
        },
        retry_after: None,
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// At most `limit` bytes of the body, as text; the rest is not read.
async fn read_truncated(response: reqwest::Response, limit: usize) -> String {
    let mut response = response;
    let mut kept = Vec::new();
    while kept.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(limit);
    String::from_utf8_lossy(&kept).into_owned()
}
