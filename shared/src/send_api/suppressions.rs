//! `GET /v1/suppressions` and `DELETE /v1/suppressions/{channel}/{address}`: the recipients
//! Carteiro refuses for now (see [`crate::domain::suppression`]), for an operator to see and to
//! lift. Suppressions belong to the installation, not to one API key: any key sees them all.

use super::{SendApiContext, store_unavailable};
use crate::domain::suppression::{SuppressedChannel, Suppression};
use crate::http::{self, ApiError, ApiRequest, ApiResponse};
use ::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const SUPPRESSIONS_PATH: &str = "/v1/suppressions";

fn store(
    ctx: &SendApiContext,
) -> Result<&dyn crate::ports::suppressions::SuppressionStore, ApiError> {
    ctx.suppressions.as_deref().ok_or_else(|| {
        ApiError::unavailable(
            "suppressions_unavailable",
            "this deployment keeps no suppressions",
        )
    })
}

fn view(s: &Suppression) -> Value {
    json!({
        "channel": s.channel.as_str(),
        "address": s.address,
        "scope": s.scope,
        "reason": s.reason,
        "since": s.since.to_rfc3339(),
        "until": s.until.map(crate::domain::time::Timestamp::to_rfc3339),
        "message_id": s.message_id,
    })
}

/// `GET /v1/suppressions?limit=&cursor=`: in key order (`<channel>/<address>`).
#[tracing::instrument(skip_all)]
pub async fn list(ctx: &SendApiContext, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let store = store(ctx)?;
    let limit = super::conversations::page_limit(req)?;
    let after = match http::query_param(req, "cursor") {
        None => None,
        Some(c) => Some(
            URL_SAFE_NO_PAD
                .decode(c.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "cursor is not one this API returned")
                        .with_field("cursor")
                })?,
        ),
    };
    let page = store
        .list_suppressions(after.as_deref(), limit)
        .await
        .map_err(store_unavailable)?;
    let items: Vec<Value> = page.items.iter().map(view).collect();
    Ok(http::json_response(
        StatusCode::OK,
        &json!({
            "suppressions": items,
            "next_cursor": page.next.map(|k| URL_SAFE_NO_PAD.encode(k)),
        }),
    ))
}

/// A path segment percent-decoded (`ana%2Btag%40example.com`), `+` kept as itself.
fn decode_segment(segment: &str) -> String {
    let query = format!("a={}", segment.replace('+', "%2B"));
    form_urlencoded::parse(query.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `DELETE /v1/suppressions/{channel}/{address}`: lifts it (200), or 404 when there is none.
#[tracing::instrument(skip_all, fields(channel))]
pub async fn remove(
    ctx: &SendApiContext,
    channel: &str,
    address: &str,
) -> Result<ApiResponse, ApiError> {
    let store = store(ctx)?;
    let Some(channel) = SuppressedChannel::parse(channel) else {
        return Err(ApiError::not_found());
    };
    tracing::Span::current().record("channel", channel.as_str());
    let address = channel.normalise(&decode_segment(address));
    if address.is_empty() {
        return Err(ApiError::not_found());
    }
    if !store
        .delete_suppression(channel, &address)
        .await
        .map_err(store_unavailable)?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} {address} is not suppressed", channel.as_str()),
        ));
    }
    tracing::info!("suppression lifted by an operator");
    Ok(http::json_response(
        StatusCode::OK,
        &json!({"channel": channel.as_str(), "address": address, "removed": true}),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_decoded_and_plus_is_kept() {
        assert_eq!(
            super::decode_segment("ana%2Btag%40example.com"),
            "ana+tag@example.com"
        );
        assert_eq!(
            super::decode_segment("ana+tag@example.com"),
            "ana+tag@example.com"
        );
        assert_eq!(super::decode_segment("%2B5511999990001"), "+5511999990001");
    }
}
