//! The webhook-intake Lambda: API Gateway (HTTP API, payload v2) → [`carteiro_shared::intake`].
//!
//! This crate only translates between `lambda_http` and the shared handler and builds the AWS
//! adapters once per execution environment; the behaviour lives in the shared crate, where
//! the local runtime runs it too.

use carteiro_shared::adapters::aws::{SecretIds, SecretsManagerSource, SqsQueue};
use carteiro_shared::config::{ConfigError, Env, IntakeSettings};
use carteiro_shared::http::{ApiRequest, CORRELATION_ID};
use carteiro_shared::intake::{self, IntakeContext};
use carteiro_shared::secrets::Secrets;
use http::HeaderValue;
use lambda_http::{Body, Request, RequestExt, Response, request::RequestContext};
use std::sync::Arc;
use std::time::Duration;

/// Builds the handler's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<IntakeContext, ConfigError> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let queue_url = env.required("CARTEIRO_INBOUND_QUEUE_URL")?;
    let secret_ids = SecretIds {
        whatsapp: Some(env.required("CARTEIRO_WHATSAPP_SECRET_ID")?),
        ..SecretIds::default()
    };
    let ttl = Duration::from_secs(env.number_or("CARTEIRO_SECRET_CACHE_TTL_SECS", 300)?);
    let secrets = SecretsManagerSource::new(&sdk, secret_ids, ttl)
        .await
        .map_err(|e| ConfigError::Invalid {
            var: "CARTEIRO_WHATSAPP_SECRET_ID",
            reason: e.to_string(),
        })?;
    Ok(IntakeContext {
        queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url)),
        secrets: Secrets::new(Arc::new(secrets)),
        settings: IntakeSettings::from_env(env)?,
    })
}

/// The Lambda handler. It never returns `Err`: API Gateway would turn that into a 502, and
/// every outcome already has a precise status code.
pub async fn handler(ctx: &IntakeContext, req: Request) -> Result<Response<Body>, lambda_http::Error> {
    let res = intake::handle(ctx, to_api_request(req)).await;
    let (parts, body) = res.into_parts();
    Ok(Response::from_parts(parts, Body::Binary(body.to_vec())))
}

/// The exact bytes API Gateway received (already base64-decoded by `lambda_http`), with the
/// API Gateway request id as correlation id when the caller sent none.
pub fn to_api_request(req: Request) -> ApiRequest {
    let request_id = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    if !parts.headers.contains_key(CORRELATION_ID) {
        if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            parts.headers.insert(CORRELATION_ID, value);
        }
    }
    let bytes = match body {
        Body::Text(text) => bytes::Bytes::from(text),
        Body::Binary(raw) => bytes::Bytes::from(raw),
        _ => bytes::Bytes::new(),
    };
    http::Request::from_parts(parts, bytes)
}
