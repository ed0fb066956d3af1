//! Per-API-key rate limits on `POST /v1/messages`: a token bucket per key in the limits port,
//! shared by every instance. Over the limit the answer is 429 `rate_limited` with
//! `Retry-After`; every answer to a limited key carries `RateLimit-Limit` (the burst),
//! `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the bucket is full again), as the
//! IETF RateLimit header fields draft names them.
//!
//! A limits store that cannot be reached lets the request through (logged): refusing every
//! send because a counter is unavailable would turn a counting problem into an outage.

use super::SendApiContext;
use crate::domain::time::whole_secs_up;
use crate::http::{ApiError, ApiResponse};
use crate::resilience::rate::{Decision, Rate, take};
use crate::secrets::ApiKey;
use ::http::{HeaderValue, StatusCode};
use std::time::Duration;

/// What the headers report for an allowed request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Allowance {
    limit: u64,
    remaining: u64,
    reset: Duration,
}

fn rate_of(key: &ApiKey) -> Option<Rate> {
    key.rate_limit?.rate()
}

/// Takes one request from the key's bucket: `Ok(None)` when the key has no limit (or the
/// store is unreachable), the allowance when allowed, the 429 answer when not.
pub(super) async fn check(
    ctx: &SendApiContext,
    key: &ApiKey,
) -> Result<Option<Allowance>, ApiResponse> {
    let (Some(limits), Some(rate)) = (&ctx.limits, rate_of(key)) else {
        return Ok(None);
    };
    let bucket = format!("api_key:{}", key.id);
    match take(limits.as_ref(), &bucket, rate, 1.0, ctx.clock.now()).await {
        Ok(Decision::Allowed { remaining, reset }) => Ok(Some(Allowance {
            limit: rate.burst as u64,
            remaining,
            reset,
        })),
        Ok(Decision::Limited { retry_after, reset }) => {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this API key may send {} requests a second (bursts of {}); retry after {} s",
                    rate.per_second,
                    rate.burst,
                    whole_secs_up(retry_after)
                ),
            )
            .into_response();
            set_headers(&mut err, rate.burst as u64, 0, reset);
            if let Ok(v) = HeaderValue::from_str(&whole_secs_up(retry_after).max(1).to_string()) {
                err.headers_mut().insert(::http::header::RETRY_AFTER, v);
            }
            tracing::info!(
                key = key.id.as_str(),
                "send refused: over the key's rate limit"
            );
            Err(err)
        }
        Err(e) => {
            tracing::warn!(error = %e, key = key.id.as_str(), "rate limit not counted: the limits store is unavailable");
            Ok(None)
        }
    }
}

fn set_headers(res: &mut ApiResponse, limit: u64, remaining: u64, reset: Duration) {
    let h = res.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", limit),
        ("ratelimit-remaining", remaining),
        ("ratelimit-reset", whole_secs_up(reset)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            h.insert(name, v);
        }
    }
}

/// Adds the rate-limit headers of an allowed request to its answer.
pub(super) fn annotate(mut res: ApiResponse, allowance: Option<Allowance>) -> ApiResponse {
    if let Some(a) = allowance {
        set_headers(&mut res, a.limit, a.remaining, a.reset);
    }
    res
}
