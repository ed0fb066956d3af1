//! `GET /health` (liveness: no dependency is asked), `GET /v1/status` (the status report, for
//! an API key) and `GET /status` (the same report as a page, see [`crate::status::page`]).
//! The report comes from the status read model, so a status request costs a few reads, never
//! a provider call or a scan.

use super::{SendApiContext, store_unavailable};
use crate::http::{self, ApiError, ApiResponse};
use ::http::StatusCode;
use bytes::Bytes;

pub const HEALTH_PATH: &str = "/health";
pub const STATUS_PATH: &str = "/v1/status";
pub const PAGE_PATH: &str = "/status";

/// `GET /health`.
pub fn health() -> ApiResponse {
    http::json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn report(ctx: &SendApiContext) -> Result<crate::status::StatusReport, ApiError> {
    let Some(status) = &ctx.status else {
        return Err(ApiError::not_found());
    };
    crate::status::report::build(status, ctx.clock.now())
        .await
        .map_err(store_unavailable)
}

/// `GET /v1/status`.
pub async fn show(ctx: &SendApiContext) -> Result<ApiResponse, ApiError> {
    Ok(http::json_response(StatusCode::OK, &report(ctx).await?))
}

/// `GET /status`.
pub async fn page(ctx: &SendApiContext) -> Result<ApiResponse, ApiError> {
    let html = crate::status::page::render(&report(ctx).await?);
    let mut res = http::response(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from(html),
    );
    res.headers_mut().insert(
        ::http::header::CACHE_CONTROL,
        ::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}
