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
        Ok(decision) => {
            let answer = answer(rate, decision);
            if answer.is_err() {
                tracing::info!(
                    key = key.id.as_str(),
                    "send refused: over the key's rate limit"
                );
            }
            answer.map(Some).map_err(|e| *e)
        }
        Err(e) => {
            tracing::warn!(error = %e, key = key.id.as_str(), "rate limit not counted: the limits store is unavailable");
            Ok(None)
        }
    }
}

/// What a bucket's decision means for the request: its allowance, or the 429.
fn answer(rate: Rate, decision: Decision) -> Result<Allowance, Box<ApiResponse>> {
    match decision {
        Decision::Allowed { remaining, reset } => Ok(Allowance {
            limit: rate.burst as u64,
            remaining,
            reset,
        }),
        Decision::Limited { retry_after, reset } => {
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
            Err(Box::new(err))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(res: &ApiResponse, name: &str) -> String {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    #[test]
    fn an_allowed_request_reports_the_burst_what_is_left_and_when_it_is_full() {
        let rate = Rate::new(2.0, 5.0);
        let allowed = Decision::Allowed {
            remaining: 3,
            reset: Duration::from_millis(1_500),
        };
        let Ok(allowance) = answer(rate, allowed) else {
            unreachable!("allowed");
        };
        let res = annotate(
            crate::http::json_response(StatusCode::ACCEPTED, &serde_json::json!({})),
            Some(allowance),
        );
        assert_eq!(header(&res, "ratelimit-limit"), "5");
        assert_eq!(header(&res, "ratelimit-remaining"), "3");
        // Whole seconds, rounded up: 1.5 s is 2.
        assert_eq!(header(&res, "ratelimit-reset"), "2");
        assert_eq!(header(&res, "retry-after"), "");
    }

    #[test]
    fn a_limited_request_is_a_429_with_retry_after_and_nothing_remaining() {
        let rate = Rate::new(2.0, 5.0);
        let limited = Decision::Limited {
            retry_after: Duration::from_millis(200),
            reset: Duration::from_millis(2_400),
        };
        let Err(res) = answer(rate, limited) else {
            unreachable!("limited");
        };
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        // Never 0: a client must wait at least a second.
        assert_eq!(header(&res, "retry-after"), "1");
        assert_eq!(header(&res, "ratelimit-limit"), "5");
        assert_eq!(header(&res, "ratelimit-remaining"), "0");
        assert_eq!(header(&res, "ratelimit-reset"), "3");
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap_or_default();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
}
