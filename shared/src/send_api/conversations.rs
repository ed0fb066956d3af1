//! `GET /v1/conversations/{wa_id}`: what Carteiro knows of one WhatsApp contact, and whether
//! Meta's 24-hour customer-service window is open; and the window rule applied to free-form
//! messages at acceptance (`CARTEIRO_SERVICE_WINDOW`).

use super::{SendApiContext, store_unavailable};
use crate::config::ServiceWindowRule;
use crate::domain::contact::{ContactState, wa_id_key};
use crate::domain::message::{OutboundMessage, SendRequest, WhatsAppContent};
use crate::domain::time::Timestamp;
use crate::http::{self, ApiError, ApiResponse};
use crate::ports::store::{ConversationItem, Cursor, StateKind};
use crate::ports::update::get_state;
use ::http::StatusCode;
use serde_json::{Value, json};

pub const CONVERSATIONS_PATH: &str = "/v1/conversations";

/// The warning a 202 carries for a free-form message outside the window under `warn`.
pub const OUTSIDE_WINDOW: &str = "outside_service_window";

async fn contact(ctx: &SendApiContext, key: &str) -> Result<ContactState, ApiError> {
    get_state(ctx.store.as_ref(), StateKind::Contact, key)
        .await
        .map_err(store_unavailable)
}

fn parse_wa_id(wa_id: &str) -> Result<String, ApiError> {
    wa_id_key(wa_id).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_wa_id",
            "a wa_id is 5 to 20 digits, optionally after a +",
        )
        .with_field("wa_id")
    })
}

/// A listing's `limit` query parameter: 1 to 100, 50 when absent.
pub(super) fn page_limit(req: &crate::http::ApiRequest) -> Result<usize, ApiError> {
    match http::query_param(req, "limit") {
        None => Ok(50),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "limit must be a whole number from 1 to 100",
                )
                .with_field("limit")
            }),
    }
}

/// `limit` and `cursor` of a listing request: at most 100 per page (default 50).
pub(super) fn paging(req: &crate::http::ApiRequest) -> Result<(usize, Option<Cursor>), ApiError> {
    let limit = page_limit(req)?;
    let cursor = match http::query_param(req, "cursor") {
        None => None,
        Some(c) => Some(Cursor::decode(&c).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "cursor is not one this API returned")
                .with_field("cursor")
        })?),
    };
    Ok((limit, cursor))
}

/// `GET /v1/conversations/{wa_id}/messages`: both directions, newest first. Outbound messages
/// are the calling key's own; inbound ones are shown to every key.
pub async fn messages(
    ctx: &SendApiContext,
    req: &crate::http::ApiRequest,
    wa_id: &str,
    owner: &str,
) -> Result<ApiResponse, ApiError> {
    let key = parse_wa_id(wa_id)?;
    let (limit, cursor) = paging(req)?;
    let page = ctx
        .store
        .list_conversation(&key, cursor.as_ref(), limit)
        .await
        .map_err(store_unavailable)?;
    let items: Vec<Value> = page
        .items
        .iter()
        .filter_map(|item| match item {
            ConversationItem::Outbound(r) if r.api_key_id.as_deref() == Some(owner) => {
                Some(json!({
                    "direction": "outbound",
                    "id": r.id.as_str(),
                    "status": r.status,
                    "provider_message_id": r.provider_message_id,
                    "type": outbound_type(r),
                    "text": r.request.pointer("/text/body"),
                    "at": r.created_at.to_rfc3339(),
                }))
            }
            ConversationItem::Outbound(_) => None,
            ConversationItem::Inbound(k) => inbound_view(k),
        })
        .collect();
    Ok(http::json_response(
        StatusCode::OK,
        &json!({
            "wa_id": key,
            "messages": items,
            "next_cursor": page.next.map(|c| c.encode()),
        }),
    ))
}

fn outbound_type(r: &crate::domain::delivery::DeliveryRecord) -> Value {
    match &r.payload {
        Some(crate::domain::payload::DeliveryPayload::WhatsappGraphV1 { body, .. }) => {
            body.get("type").cloned().unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

/// An inbound message as `message.received` describes it, with its direction.
fn inbound_view(k: &crate::ports::store::KeptRecord) -> Option<Value> {
    let crate::domain::events::InboundEvent::Message {
        phone_number_id,
        contact,
        message,
    } = serde_json::from_value(k.payload.clone()).ok()?
    else {
        return None;
    };
    let event = crate::domain::app_event::AppEvent::received(
        phone_number_id.as_deref(),
        contact.as_ref(),
        &message,
        k.received_at,
    );
    let mut data = event.data;
    data["direction"] = json!("inbound");
    data["at"] = json!(k.received_at.to_rfc3339());
    if let Value::Object(m) = &mut data {
        m.remove("message");
    }
    Some(data)
}

/// `GET /v1/conversations/{wa_id}`.
pub async fn show(ctx: &SendApiContext, wa_id: &str) -> Result<ApiResponse, ApiError> {
    let key = parse_wa_id(wa_id)?;
    let c = contact(ctx, &key).await?;
    let now = ctx.clock.now();
    Ok(http::json_response(
        StatusCode::OK,
        &json!({
            "wa_id": key,
            "profile_name": c.profile_name,
            "last_inbound_at": c.last_inbound_at.map(Timestamp::to_rfc3339),
            "service_window": {
                "open": c.window_open(now),
                "expires_at": c.window_closes_at().filter(|_| c.window_open(now)).map(Timestamp::to_rfc3339),
            },
        }),
    ))
}

fn free_form_whatsapp(message: &OutboundMessage) -> Option<&crate::domain::ids::PhoneNumber> {
    match message {
        OutboundMessage::Whatsapp(m) if !matches!(m.content, WhatsAppContent::Template { .. }) => {
            Some(&m.to)
        }
        _ => None,
    }
}

/// Applies the window rule to an accepted request: the warnings for the 202, and under
/// `enforce` either the first fallback that may be sent (a template, another channel) in the
/// message's place, or 422 `outside_service_window`.
pub async fn apply_window_rule(
    ctx: &SendApiContext,
    request: &mut SendRequest,
    now: Timestamp,
) -> Result<Vec<&'static str>, ApiError> {
    let rule = ctx.settings.service_window;
    if rule == ServiceWindowRule::Off {
        return Ok(Vec::new());
    }
    let Some(to) = free_form_whatsapp(&request.message) else {
        return Ok(Vec::new());
    };
    let Some(key) = wa_id_key(to.as_str()) else {
        return Ok(Vec::new());
    };
    if contact(ctx, &key).await?.window_open(now) {
        return Ok(Vec::new());
    }
    if rule == ServiceWindowRule::Warn {
        return Ok(vec![OUTSIDE_WINDOW]);
    }
    if let Some(i) = request
        .fallback
        .iter()
        .position(|m| free_form_whatsapp(m).is_none())
    {
        let chosen = request.fallback.remove(i);
        request.message = chosen;
        request.fallback.drain(..i);
        return Ok(vec![OUTSIDE_WINDOW, "fallback_used"]);
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        OUTSIDE_WINDOW,
        "the contact has not written in the last 24 hours: only a template may be sent (or give a fallback)",
    )
    .with_field("to"))
}
