//! The WhatsApp Cloud API provider: one `POST /{version}/{phone-number-id}/messages` per send,
//! classified by Meta's `error.code` (REFERENCE §1.6), never by the HTTP status alone.
//!
//! - [`GraphClient`] holds the one `reqwest::Client` built at init (timeouts from
//!   [`GraphSettings`], no redirects). The token, phone number id, Graph version and base URL
//!   come from the [`WhatsAppSecret`] passed to each call, so a rotated secret takes effect on
//!   the next send and tests can point `graph_base_url` at a mock server.
//! - [`classify`] is the pure error table; [`parse_error_body`] reads `{"error":{...}}`.
//! - [`SandboxOutbox`] stands in for Meta when no access token is configured (local runtime).
//! - [`WhatsAppProvider`] is the channel's [`Provider`]: the secret, then a sender; the `Token`
//!   rule is the port's, shared by every channel.
//!
//! The token never reaches a log line or an error: it is only ever put into a header value
//! marked sensitive.
//!
//! ## Ambiguity and "never send twice"
//! Meta documents no idempotency key for sends. Outcomes are therefore split by what they prove:
//! - `connect_error`: the request never left; resending cannot duplicate.
//! - `timeout` / `transport_error`: the request may have reached Meta. They are `Unknown`:
//!   dispatch waits the reconciliation window for a status webhook (which carries our id in
//!   `biz_opaque_callback_data`) before it may try again.
//! - A 2xx whose body has no `messages[0].id` (or cannot be read) means Meta *accepted* the
//!   message. It is reported as `Failed` / `Permanent` with code `unexpected_response`, not as
//!   a retry (a resend would duplicate it) and not as `Accepted` with an invented id (which no
//!   status webhook could ever match). The delivery's status webhooks still carry our
//!   `biz_opaque_callback_data`, and a `delivered` outranks `failed` in the record's state
//!   machine, so such a record heals itself if the message does arrive.

use crate::domain::delivery::DeliveryError;
use crate::domain::ids::MessageId;
use crate::domain::payload::DeliveryPayload;
use crate::domain::time::Timestamp;
use crate::domain::webhook::MetaError;
use crate::ports::provider::Provider;
use crate::providers::{FailureClass, SendFailure, SendOutcome};
use crate::secrets::{Secrets, WhatsAppSecret};
use async_trait::async_trait;
use reqwest::header::{self, HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Carteiro's own failures (configuration, transport, unreadable responses) use this source;
/// Meta's errors use `whatsapp`.
const SOURCE_CARTEIRO: &str = "carteiro";
const SOURCE_WHATSAPP: &str = "whatsapp";

/// Responses from Meta are a few hundred bytes; anything past this is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of an unparseable error body (an HTML page from a proxy) is kept in `details`.
const MAX_DETAILS_CHARS: usize = 256;

use crate::config::GraphSettings;

/// Sends one Graph API message body. Implemented by [`GraphClient`] (Meta) and
/// [`SandboxOutbox`] (in memory).
#[async_trait]
pub trait WhatsAppSender: Send + Sync + Debug {
    /// `body` is [`crate::domain::message::WhatsAppMessage::graph_body`]'s output.
    async fn send(&self, secret: &WhatsAppSecret, body: &Value) -> SendOutcome;
}

/// Why the Graph API client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GraphClientError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The Graph API client: one connection pool for the life of the process.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    request_timeout: Duration,
}

impl GraphClient {
    /// Builds the one `reqwest::Client`: connect and request timeouts, no redirects (a Graph
    /// send never redirects; following one would resend the token elsewhere), the compiled-in
    /// root certificates, and a `carteiro/<version>` user agent.
    pub fn new(settings: &GraphSettings) -> Result<Self, GraphClientError> {
        // The compiled-in roots: no system store read at INIT (see crate::tls).
        let tls = crate::tls::graph_client_tls()?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("carteiro/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            request_timeout: settings.request_timeout,
        })
    }

    /// The pooled HTTP client, for the health probes' reads of the Graph API.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `POST {graph_base_url}/{graph_api_version}/{phone_number_id}/messages`.
    pub async fn send(&self, secret: &WhatsAppSecret, body: &Value) -> SendOutcome {
        let (url, authorization) = match request_target(secret) {
            Ok(target) => target,
            Err(failure) => return SendOutcome::Failed(failure),
        };
        let started = std::time::Instant::now();
        let sent = self
            .http
            .post(&url)
            .header(header::AUTHORIZATION, authorization)
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return SendOutcome::Failed(self.transport_failure(&e)),
        };
        let status = response.status().as_u16();
        log_meta_headers(status, response.headers(), started.elapsed());
        let retry_after = retry_after(response.headers());
        let bytes = read_capped(response, MAX_RESPONSE_BYTES).await;

        if (200..300).contains(&status) {
            return match bytes {
                Ok(bytes) => accepted(&bytes),
                Err(e) => {
                    tracing::error!(
                        status,
                        error = %error_chain(&e),
                        "the Graph API accepted the message but its response could not be read; not retrying"
                    );
                    SendOutcome::Failed(unexpected_response("the response body could not be read"))
                }
            };
        }

        let bytes = bytes.unwrap_or_default();
        let meta_error = parse_error_body(&bytes);
        let class = classify(status, meta_error.as_ref());
        let error = match &meta_error {
            Some(e) => {
                tracing::warn!(
                    status,
                    code = e.code,
                    subcode = e.error_subcode,
                    fbtrace_id = e
                        .extra
                        .get("fbtrace_id")
                        .and_then(serde_json::Value::as_str),
                    class = class.as_str(),
                    "the Graph API refused the message"
                );
                e.to_delivery_error()
            }
            None => {
                tracing::warn!(
                    status,
                    class = class.as_str(),
                    "the Graph API answered an error without a Meta error body"
                );
                http_error(status, &bytes)
            }
        };
        SendOutcome::Failed(SendFailure {
            class,
            error,
            retry_after,
        })
    }

    fn transport_failure(&self, e: &reqwest::Error) -> SendFailure {
        let details = Some(error_chain(e));
        // A connect error (a connect timeout included) proves nothing was sent.
        let (class, code, message) = if e.is_connect() {
            (
                FailureClass::Retryable,
                "connect_error",
                "could not connect to the Graph API; the message was not sent".to_owned(),
            )
        } else if e.is_timeout() {
            // The request was written and no answer came: Meta may have the message.
            (
                FailureClass::Unknown,
                "timeout",
                format!(
                    "no answer from the Graph API within {} ms; Meta may have accepted the message",
                    self.request_timeout.as_millis()
                ),
            )
        } else if e.is_builder() {
            // The request could not even be built: retrying the same input cannot help.
            (
                FailureClass::Permanent,
                "invalid_request",
                "the request to the Graph API could not be built; nothing was sent".to_owned(),
            )
        } else {
            (
                FailureClass::Unknown,
                "transport_error",
                "the connection to the Graph API failed; Meta may have accepted the message"
                    .to_owned(),
            )
        };
        tracing::warn!(code, error = %error_chain(e), "Graph API request failed");
        SendFailure {
            class,
            error: DeliveryError {
                source: SOURCE_CARTEIRO.to_owned(),
                code: code.to_owned(),
                message,
                details,
            },
            retry_after: None,
        }
    }
}

#[async_trait]
impl WhatsAppSender for GraphClient {
    async fn send(&self, secret: &WhatsAppSecret, body: &Value) -> SendOutcome {
        GraphClient::send(self, secret, body).await
    }
}

/// The WhatsApp channel's [`Provider`]: the current `whatsapp` secret and a
/// [`WhatsAppSender`] (Meta's Graph API, or the local sandbox).
#[derive(Debug, Clone)]
pub struct WhatsAppProvider {
    sender: Arc<dyn WhatsAppSender>,
    secrets: Secrets,
}

impl WhatsAppProvider {
    pub fn new(sender: Arc<dyn WhatsAppSender>, secrets: Secrets) -> Self {
        Self { sender, secrets }
    }
}

#[async_trait]
impl Provider for WhatsAppProvider {
    async fn send(
        &self,
        _id: &MessageId,
        payload: &DeliveryPayload,
        fresh_credentials: bool,
    ) -> SendOutcome {
        let DeliveryPayload::WhatsappGraphV1 { body, .. } = payload else {
            return SendOutcome::Failed(super::wrong_channel(payload));
        };
        match self.secrets.whatsapp(fresh_credentials).await {
            Ok(secret) => self.sender.send(&secret, body).await,
            Err(e) => SendOutcome::Failed(super::secret_failure(&e, "not_configured")),
        }
    }
}

/// The URL and `Authorization` header for a send, or a `not_configured` failure.
fn request_target(secret: &WhatsAppSecret) -> Result<(String, HeaderValue), SendFailure> {
    let token = access_token(secret)?;
    let phone_number_id = phone_number_id(secret)?;
    let url = format!("{}/{phone_number_id}/messages", graph_root(secret)?);
    let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        // The error names no value.
        .map_err(|_| not_configured("whatsapp.access_token is not a valid header value"))?;
    authorization.set_sensitive(true);
    Ok((url, authorization))
}

/// The secret's access token, trimmed, or a `not_configured` failure.
pub(crate) fn access_token(secret: &WhatsAppSecret) -> Result<&str, SendFailure> {
    secret
        .access_token
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| not_configured("whatsapp.access_token is not configured"))
}

/// The secret's phone number id, checked to be one URL path segment, or a `not_configured`
/// failure.
pub(crate) fn phone_number_id(secret: &WhatsAppSecret) -> Result<&str, SendFailure> {
    let id = secret
        .phone_number_id
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| not_configured("whatsapp.phone_number_id is not configured"))?;
    if !segment_ok(id) {
        return Err(not_configured(
            "whatsapp.phone_number_id must be a Meta id (digits)",
        ));
    }
    Ok(id)
}

/// Whether `s` may go into a URL path as one segment unchanged.
pub(crate) fn segment_ok(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// `{graph_base_url}/{graph_api_version}`, checked.
pub(crate) fn graph_root(secret: &WhatsAppSecret) -> Result<String, SendFailure> {
    let version = secret.graph_api_version.trim();
    if version.is_empty() || !segment_ok(version) {
        return Err(not_configured(
            "whatsapp.graph_api_version must look like v23.0",
        ));
    }
    let base = secret.graph_base_url.trim().trim_end_matches('/');
    match reqwest::Url::parse(base) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.query().is_none() => {}
        _ => {
            return Err(not_configured(
                "whatsapp.graph_base_url must be an http(s) URL",
            ));
        }
    }
    Ok(format!("{base}/{version}"))
}

pub(crate) fn not_configured(message: &str) -> SendFailure {
    SendFailure {
        class: FailureClass::Permanent,
        error: DeliveryError {
            source: SOURCE_CARTEIRO.to_owned(),
            code: "not_configured".to_owned(),
            message: message.to_owned(),
            details: None,
        },
        retry_after: None,
    }
}

fn unexpected_response(details: &str) -> SendFailure {
    SendFailure {
        class: FailureClass::Permanent,
        error: DeliveryError {
            source: SOURCE_CARTEIRO.to_owned(),
            code: "unexpected_response".to_owned(),
            message: "the Graph API accepted the message (HTTP 2xx) but returned no message id; \
                      not retried, since a resend could deliver it twice"
                .to_owned(),
            details: Some(details.to_owned()),
        },
        retry_after: None,
    }
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    message_status: Option<String>,
}

fn accepted(bytes: &[u8]) -> SendOutcome {
    let parsed: Option<SendResponse> = serde_json::from_slice(bytes).ok();
    let first = parsed.and_then(|r| r.messages.into_iter().next());
    match first {
        Some(SentMessage {
            id: Some(id),
            message_status,
        }) if !id.trim().is_empty() => {
            tracing::debug!(
                wamid = %id,
                message_status = message_status.as_deref(),
                "the Graph API accepted the message"
            );
            SendOutcome::Accepted {
                provider_message_id: id,
                message_status,
                response: None,
            }
        }
        _ => {
            tracing::error!(
                body_bytes = bytes.len(),
                "the Graph API accepted the message but returned no messages[0].id; not retrying"
            );
            SendOutcome::Failed(unexpected_response("no messages[0].id in the 2xx response"))
        }
    }
}

/// A failure without a Meta error body (a proxy's HTML page, an empty 503).
fn http_error(status: u16, body: &[u8]) -> DeliveryError {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status");
    let text = String::from_utf8_lossy(body);
    let snippet: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_DETAILS_CHARS)
        .collect();
    DeliveryError {
        source: SOURCE_WHATSAPP.to_owned(),
        code: format!("http_{status}"),
        message: format!("HTTP {status} {reason}"),
        details: (!snippet.is_empty()).then_some(snippet),
    }
}

/// Reads `{"error":{...}}`; other top-level members (some proxies add `"code":500`) are ignored.
/// `None` for anything else, such as an HTML page.
pub fn parse_error_body(bytes: &[u8]) -> Option<MetaError> {
    #[derive(Deserialize)]
    struct Envelope {
        error: MetaError,
    }
    serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .map(|e| e.error)
}

/// How a failed send should be handled: Meta's `error.code` decides (REFERENCE §1.6); the
/// HTTP status only decides for codes the table does not know, or when there is no Meta error.
pub fn classify(status: u16, error: Option<&MetaError>) -> FailureClass {
    error
        .and_then(|e| classify_code(e.code, e.details()))
        .unwrap_or_else(|| classify_status(status))
}

/// Unknown codes and bodies: 429 → throttled, 5xx → retryable, anything else → permanent.
fn classify_status(status: u16) -> FailureClass {
    match status {
        429 => FailureClass::Throttled,
        500..=599 => FailureClass::Retryable,
        _ => FailureClass::Permanent,
    }
}

/// The error table. `None` means Meta's code is not in it.
fn classify_code(code: i64, details: Option<&str>) -> Option<FailureClass> {
    use FailureClass::{PairLimited, Permanent, Retryable, Throttled, Token};
    let class = match code {
        // RETRY: unknown / service errors, maintenance mode, server unavailable.
        1 | 2 | 131_000 | 131_016 | 131_057 | 133_004 => Retryable,
        // THROTTLE: app rate limit, management API, per-number throughput, register rate,
        // flow throttled.
        4 | 80_007 | 130_429 | 133_016 | 132_069 => Throttled,
        // Pair rate limit: this one recipient, later.
        131_056 => PairLimited,
        // AUTH: refresh the token once, then retry.
        0 | 190 => Token,
        // Media upload or link fetch: permanent unless the media host was only busy.
        131_053 => {
            if details.is_some_and(is_transient_media_host_error) {
                Retryable
            } else {
                Permanent
            }
        }
        // PERM (and PAUSE/OPS, which need a person, not a retry): kept with Meta's code.
        3 | 10 | 33 | 100 | 200..=299 | 368 | 470 => Permanent,
        130_403 | 130_472 | 130_497 => Permanent,
        131_005 | 131_008 | 131_009 | 131_021 | 131_026 | 131_030 | 131_031 | 131_037 | 131_042
        | 131_045 | 131_047 | 131_048 | 131_049 | 131_050 | 131_051 | 131_052 | 131_064 => {
            Permanent
        }
        132_000 | 132_001 | 132_005 | 132_007 | 132_012 | 132_015 | 132_016 | 132_068 => Permanent,
        133_000 | 133_010 | 135_000 => Permanent,
        _ => return None,
    };
    Some(class)
}

/// 131053's `details` quote the media host's answer, e.g. "Downloading media from weblink
/// failed with http code 429, status message Too Many Requests": a 429 or 5xx there is the
/// host being busy, not the media being bad.
fn is_transient_media_host_error(details: &str) -> bool {
    let lower = details.to_ascii_lowercase();
    lower.match_indices("http code").any(|(i, needle)| {
        let rest = lower[i + needle.len()..].trim_start_matches([' ', ':']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        matches!(digits.parse::<u16>(), Ok(429 | 500..=599))
    })
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Meta and is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Meta's tracing and usage headers, for support tickets and throttling analysis.
fn log_meta_headers(status: u16, headers: &HeaderMap, elapsed: Duration) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    tracing::debug!(
        status,
        elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        x_fb_trace_id = get("x-fb-trace-id"),
        x_fb_request_id = get("x-fb-request-id"),
        x_business_use_case_usage = get("x-business-use-case-usage"),
        facebook_api_version = get("facebook-api-version"),
        www_authenticate = get("www-authenticate"),
        "Graph API response"
    );
}

/// The body, up to `cap` bytes (the rest is not read).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    Ok(out)
}

/// The error and its causes, without the URL (short, and the same for every send).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One message the sandbox took.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxMessage {
    /// The wamid the sandbox answered with.
    pub wamid: String,
    /// The body's `to` (digits, as sent to Meta).
    pub to: String,
    /// The exact Graph API body that would have been posted.
    pub body: Value,
    pub accepted_at: Timestamp,
}

/// A [`WhatsAppSender`] that keeps messages in memory and accepts them all, with
/// `message_status: "sandbox"` so every record shows it never reached Meta. The local runtime
/// uses it when no access token is configured, so apps can be developed without a Meta account.
#[derive(Debug, Default)]
pub struct SandboxOutbox {
    messages: Mutex<Vec<SandboxMessage>>,
    /// Told of every message taken (the local runtime answers with status webhooks).
    listener: Option<tokio::sync::mpsc::UnboundedSender<SandboxMessage>>,
}

impl SandboxOutbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sandbox that hands every message it takes to `listener` as well.
    pub fn with_listener(listener: tokio::sync::mpsc::UnboundedSender<SandboxMessage>) -> Self {
        Self {
            messages: Mutex::default(),
            listener: Some(listener),
        }
    }

    /// Every message taken so far, oldest first.
    pub fn messages(&self) -> Vec<SandboxMessage> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl WhatsAppSender for SandboxOutbox {
    async fn send(&self, _secret: &WhatsAppSecret, body: &Value) -> SendOutcome {
        let id = format!("wamid.sandbox.{}", uuid::Uuid::now_v7());
        let to = body
            .get("to")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let taken = SandboxMessage {
            wamid: id.clone(),
            to,
            body: body.clone(),
            accepted_at: Timestamp::now(),
        };
        if let Some(listener) = &self.listener {
            // The listener is gone only when the runtime is stopping.
            let _ = listener.send(taken.clone());
        }
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(taken);
        tracing::info!(wamid = %id, "sandbox: message kept in memory, not sent to Meta");
        SendOutcome::Accepted {
            provider_message_id: id,
            message_status: Some("sandbox".to_owned()),
            response: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_host_details_are_read_for_429_and_5xx_only() {
        for (details, transient) in [
            (
                "Downloading media from weblink failed with http code 429, status message Too Many Requests",
                true,
            ),
            (
                "Downloading media from weblink failed with http code 503",
                true,
            ),
            ("HTTP code: 500", true),
            (
                "Downloading media from weblink failed with http code 404, status message Not Found",
                false,
            ),
            ("Media upload error", false),
            ("http code", false),
        ] {
            assert_eq!(
                is_transient_media_host_error(details),
                transient,
                "{details}"
            );
        }
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        assert_eq!(classify_code(999_999, None), None);
        assert_eq!(classify_status(429), FailureClass::Throttled);
        assert_eq!(classify_status(502), FailureClass::Retryable);
        assert_eq!(classify_status(404), FailureClass::Permanent);
    }
}
