//! The Lambda edges shared by every function: API Gateway requests to and from the shared
//! [`ApiRequest`]/[`ApiResponse`], and SQS batches to and from [`QueuedEvent`]s with partial
//! batch failures. Behind the `lambda` feature: the local runtime never links `lambda_http`.

use crate::batch::QueuedEvent;
use crate::http::{ApiRequest, ApiResponse, CORRELATION_ID, REQUEST_ID};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use http::HeaderValue;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::future::Future;

/// The exact bytes API Gateway received (already base64-decoded by `lambda_http`), with the
/// API Gateway request id as correlation id when the caller sent none.
pub fn to_api_request(req: Request) -> ApiRequest {
    let request_id = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        if !parts.headers.contains_key(CORRELATION_ID) {
            parts.headers.insert(CORRELATION_ID, value.clone());
        }
        parts.headers.insert(REQUEST_ID, value);
    }
    let bytes = match body {
        Body::Text(text) => bytes::Bytes::from(text),
        Body::Binary(raw) => bytes::Bytes::from(raw),
        _ => bytes::Bytes::new(),
    };
    http::Request::from_parts(parts, bytes)
}

pub fn to_lambda_response(res: ApiResponse) -> Response<Body> {
    let (parts, body) = res.into_parts();
    Response::from_parts(parts, Body::Binary(body.to_vec()))
}

/// Serves one API Gateway request with a shared handler. Never returns `Err`: API Gateway
/// would turn that into a 502, and every outcome already has a precise status code.
pub async fn serve_http<F, Fut>(
    req: Request,
    handler: F,
) -> Result<Response<Body>, lambda_http::Error>
where
    F: FnOnce(ApiRequest) -> Fut,
    Fut: Future<Output = ApiResponse>,
{
    Ok(to_lambda_response(handler(to_api_request(req)).await))
}

#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} queue messages failed; the whole batch is retried")]
pub struct WholeBatchFailed {
    pub failed: usize,
    pub total: usize,
}

/// Turns an SQS event into queued events and the failed ids back into a partial batch
/// response. When every record failed, or a failed record has no id to report, it returns
/// `Err`, so Lambda retries the whole batch with its backoff instead of dropping anything.
pub async fn serve_sqs<F, Fut>(
    event: SqsEvent,
    handler: F,
) -> Result<SqsBatchResponse, WholeBatchFailed>
where
    F: FnOnce(Vec<QueuedEvent>) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let events: Vec<QueuedEvent> = event
        .records
        .into_iter()
        .map(|r| QueuedEvent {
            correlation_id: r
                .message_attributes
                .get(crate::batch::ATTR_CORRELATION_ID)
                .and_then(|a| a.string_value.clone()),
            message_id: r.message_id.unwrap_or_default(),
            body: r.body.unwrap_or_default(),
        })
        .collect();
    let total = events.len();
    let failed = handler(events).await;
    if (total > 0 && failed.len() == total) || failed.iter().any(String::is_empty) {
        return Err(WholeBatchFailed {
            failed: failed.len(),
            total,
        });
    }
    let mut response = SqsBatchResponse::default();
    for id in failed {
        response.add_failure(id);
    }
    Ok(response)
}
