//! The local HTTP front: exactly the routes of the public contract, each handed to the shared
//! handler its Lambda runs.

use crate::Gateway;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use carteiro_shared::http::{
    ApiError, ApiRequest, ApiResponse, REQUEST_ID, json_response, response,
};
use carteiro_shared::{intake, send_api};
use http::{Method, StatusCode};

/// API Gateway's own payload limit; the handlers apply their tighter ones.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

pub fn router(gateway: Gateway) -> Router {
    Router::new().fallback(handle).with_state(gateway)
}

async fn handle(State(gateway): State<Gateway>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    // Ours, as API Gateway's is on Lambda: a caller's own x-request-id is not trusted.
    let request_id = uuid::Uuid::now_v7().to_string();
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        parts.headers.insert(REQUEST_ID, value);
    }
    let mut response = match to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(bytes) => route(&gateway, ApiRequest::from_parts(parts, bytes)).await,
        Err(_) => ApiError::payload_too_large(MAX_REQUEST_BYTES).into_response(),
    };
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let (parts, bytes) = response.into_parts();
    Response::from_parts(parts, Body::from(bytes)).into_response()
}

/// Maps a request to its handler, as API Gateway's route table does.
pub async fn route(gateway: &Gateway, req: ApiRequest) -> ApiResponse {
    match req.uri().path() {
        intake::PATH => intake::handle(&gateway.intake, req).await,
        path if send_api::serves(path) => send_api::handle(&gateway.send_api, req).await,
        "/sandbox/outbox" if req.method() == Method::GET => sandbox_outbox(gateway),
        crate::sandbox::INBOUND_PATH => crate::sandbox::inbound(&gateway.intake, req).await,
        "/metrics" if req.method() == Method::GET => metrics(),
        "/metrics" => ApiError::method_not_allowed("GET").into_response(),
        _ => ApiError::not_found().into_response(),
    }
}

/// Local only: what the sandboxes took instead of Meta and an SMTP server, oldest first.
fn sandbox_outbox(gateway: &Gateway) -> ApiResponse {
    if gateway.whatsapp_sandbox.is_none() && gateway.email_sandbox.is_none() {
        return ApiError::not_found().into_response();
    }
    let messages: Vec<_> = gateway
        .whatsapp_sandbox
        .iter()
        .flat_map(|s| s.messages())
        .map(|m| serde_json::json!({"wamid": m.wamid, "to": m.to, "accepted_at": m.accepted_at, "body": m.body}))
        .collect();
    let emails: Vec<_> = gateway
        .email_sandbox
        .iter()
        .flat_map(|s| s.emails())
        .map(|e| {
            serde_json::json!({
                "recipients": e.recipients, "message_id": e.message_id,
                "accepted_at": e.accepted_at, "raw": e.raw,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "messages": messages, "emails": emails }),
    )
}

/// Local only: every metric in Prometheus text (docs/observability.md).
fn metrics() -> ApiResponse {
    match carteiro_shared::observability::metrics::render_prometheus() {
        Some(text) => response(StatusCode::OK, "text/plain; version=0.0.4", text.into()),
        None => ApiError::not_found().into_response(),
    }
}
