//! Webhook intake: `GET/POST /webhooks/whatsapp`.
//!
//! The GET answers Meta's verification handshake. The POST checks `X-Hub-Signature-256` over
//! the raw bytes before anything else looks at them, splits the payload into one
//! [`InboundEvent`] per status, message or field change, and answers 200 only once every event
//! is durably queued — any other answer makes Meta retry, for up to 7 days. Nothing is queued
//! for a request that is refused.

pub mod signature;

use crate::config::IntakeSettings;
use crate::domain::events::InboundEvent;
use crate::domain::webhook::WebhookPayload;
use crate::http::{self, ApiError, ApiRequest, ApiResponse};
use crate::ports::queue::{OutgoingMessage, Queue};
use crate::secrets::{Secrets, WhatsAppSecret};
use ::http::{HeaderMap, Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The route this handler serves.
pub const PATH: &str = "/webhooks/whatsapp";

/// Queue message attribute naming the event kind, for filtering and metrics.
pub const ATTR_EVENT_KIND: &str = "event_kind";
/// Queue message attribute carrying the request's correlation id.
pub use crate::batch::ATTR_CORRELATION_ID;

/// Longest `hub.challenge` echoed back; Meta sends a short number.
const MAX_CHALLENGE_LEN: usize = 256;

/// What the intake handler needs. Built once per process.
#[derive(Debug, Clone)]
pub struct IntakeContext {
    pub queue: Arc<dyn Queue>,
    pub secrets: Secrets,
    pub settings: IntakeSettings,
}

/// The body of a successful POST.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Accepted {
    /// `ok`, or `ignored` for a payload that is not about WhatsApp.
    pub status: &'static str,
    pub queued: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// What a verified POST body turned into.
#[derive(Debug)]
pub enum Prepared {
    /// Authentic, but for another Meta product (`object` is not `whatsapp_business_account`):
    /// acknowledged so Meta does not retry, and otherwise ignored.
    Ignored,
    Events(Vec<OutgoingMessage>),
}

/// Handles any request routed to [`PATH`].
pub async fn handle(ctx: &IntakeContext, req: ApiRequest) -> ApiResponse {
    let span = tracing::info_span!(
        "request",
        request_id = crate::http::request_id(req.headers()),
        method = %req.method(),
        route = PATH,
        correlation_id = crate::http::correlation_id(req.headers()).unwrap_or_default(),
    );
    tracing::Instrument::instrument(handle_in_span(ctx, req), span).await
}

async fn handle_in_span(ctx: &IntakeContext, req: ApiRequest) -> ApiResponse {
    let result = match *req.method() {
        Method::GET => handshake(ctx, &req).await,
        Method::POST => {
            let received = receive(ctx, &req).await;
            match &received {
                Ok(_) => crate::observability::metrics::webhook_received(),
                // A 5xx is ours, not the webhook's: Meta sends it again.
                Err(e) if e.status.is_client_error() => {
                    crate::observability::metrics::webhook_rejected(e.code)
                }
                Err(_) => {}
            }
            received
        }
        _ => Err(ApiError::method_not_allowed("GET or POST")),
    };
    result.unwrap_or_else(ApiError::into_response)
}

async fn whatsapp_secret(ctx: &IntakeContext) -> Result<WhatsAppSecret, ApiError> {
    ctx.secrets.whatsapp(false).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read the WhatsApp secret");
        ApiError::unavailable(
            "secrets_unavailable",
            "credentials are unavailable; retry later",
        )
    })
}

async fn handshake(ctx: &IntakeContext, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let mode = http::query_param(req, "hub.mode");
    let token = http::query_param(req, "hub.verify_token");
    let challenge = http::query_param(req, "hub.challenge");
    let (Some(mode), Some(token), Some(challenge)) = (mode, token, challenge) else {
        return Err(ApiError::bad_request(
            "missing_parameter",
            "hub.mode, hub.verify_token and hub.challenge are required",
        ));
    };
    if mode != "subscribe" {
        return Err(
            ApiError::bad_request("invalid_parameter", "hub.mode must be subscribe")
                .with_field("hub.mode"),
        );
    }
    if challenge.is_empty() || challenge.len() > MAX_CHALLENGE_LEN {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("hub.challenge must be 1 to {MAX_CHALLENGE_LEN} characters"),
        )
        .with_field("hub.challenge"));
    }
    let secret = whatsapp_secret(ctx).await?;
    let expected = secret.verify_token.expose_secret().as_bytes();
    // An unset verify token must not match an empty one.
    if expected.is_empty() || !bool::from(expected.ct_eq(token.as_bytes())) {
        tracing::warn!("webhook handshake with a wrong verify token");
        return Err(
            ApiError::forbidden("invalid_verify_token", "the verify token does not match")
                .with_field("hub.verify_token"),
        );
    }
    tracing::info!("webhook handshake accepted");
    Ok(http::text_response(StatusCode::OK, challenge))
}

async fn receive(ctx: &IntakeContext, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let limit = ctx.settings.max_body_bytes;
    if req.body().len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    let secret = whatsapp_secret(ctx).await?;
    let correlation_id = http::correlation_id(req.headers());
    let prepared = prepare(
        req.headers(),
        req.body(),
        &secret,
        correlation_id.as_deref(),
    )?;
    let messages = match prepared {
        Prepared::Ignored => {
            return Ok(http::json_response(
                StatusCode::OK,
                &Accepted {
                    status: "ignored",
                    queued: 0,
                    reason: Some("object is not whatsapp_business_account"),
                },
            ));
        }
        Prepared::Events(messages) => messages,
    };
    if !messages.is_empty() {
        ctx.queue.send_batch(&messages).await.map_err(|e| {
            tracing::error!(error = %e, events = messages.len(), "cannot queue webhook events");
            ApiError::unavailable(
                "queue_unavailable",
                "events could not be queued; retry later",
            )
        })?;
    }
    tracing::info!(events = messages.len(), "webhook events queued");
    Ok(http::json_response(
        StatusCode::OK,
        &Accepted {
            status: "ok",
            queued: messages.len(),
            reason: None,
        },
    ))
}

/// The CPU-bound part of a POST: verify, parse, split, serialise. Pure, so it can be
/// benchmarked and fuzzed without a queue.
pub fn prepare(
    headers: &HeaderMap,
    body: &[u8],
    secret: &WhatsAppSecret,
    correlation_id: Option<&str>,
) -> Result<Prepared, ApiError> {
    let header = headers
        .get(signature::HEADER)
        .map(|v| v.to_str().unwrap_or_default());
    match signature::verify(
        header,
        body,
        secret.app_secret_bytes(),
        secret.previous_app_secret_bytes(),
    ) {
        Ok(signature::SecretUsed::Current) => {}
        Ok(signature::SecretUsed::Previous) => {
            // Expected only for a while after an app-secret reset; alarm if it persists.
            tracing::warn!("webhook signed with the previous app secret");
        }
        Err(e) => {
            tracing::warn!(reason = %e, "webhook signature refused");
            return Err(ApiError::unauthorized("invalid_signature", e.to_string()));
        }
    }
    if !http::is_json(headers) {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    let payload = WebhookPayload::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    if !payload.is_whatsapp() {
        tracing::warn!(object = %payload.object, "webhook for another object ignored");
        return Ok(Prepared::Ignored);
    }
    let events = payload.into_events();
    let mut messages = Vec::with_capacity(events.len());
    for event in &events {
        messages.push(to_queue_message(event, correlation_id)?);
    }
    Ok(Prepared::Events(messages))
}

fn to_queue_message(
    event: &InboundEvent,
    correlation_id: Option<&str>,
) -> Result<OutgoingMessage, ApiError> {
    let body = serde_json::to_string(event).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise an inbound event");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?;
    let mut message = OutgoingMessage::new(body).with_attribute(ATTR_EVENT_KIND, event.kind());
    if let Some(id) = correlation_id {
        message = message.with_attribute(ATTR_CORRELATION_ID, id);
    }
    Ok(message)
}
