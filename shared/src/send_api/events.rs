//! `GET /v1/events/{id}` (an event and each endpoint's delivery of it, attempts included),
//! `POST /v1/events/{id}/replay` (every delivery of it again: a new attempt, the same
//! `webhook-id`), `GET /v1/endpoints` and `POST /v1/endpoints/{id}/enable`.

use super::{SendApiContext, store_unavailable};
use crate::callbacks::endpoints::{self, EndpointState};
use crate::callbacks::{EventDelivery, kept_event};
use crate::domain::app_event::EventId;
use crate::domain::delivery::DeliveryRecord;
use crate::http::{self, ApiError, ApiResponse};
use crate::ports::update::UpdateError;
use ::http::StatusCode;
use serde_json::{Value, json};

pub const EVENTS_PATH: &str = "/v1/events";
pub const ENDPOINTS_PATH: &str = "/v1/endpoints";

fn contended(e: UpdateError) -> ApiError {
    match e {
        UpdateError::Store(e) => store_unavailable(e),
        UpdateError::Contended(_) => {
            ApiError::unavailable("store_unavailable", "the record is changing; retry")
        }
    }
}

async fn load(
    ctx: &SendApiContext,
    id: &str,
) -> Result<(EventId, crate::callbacks::KeptEvent), ApiError> {
    let id = EventId::parse(id).map_err(|_| ApiError::not_found())?;
    let kept = kept_event(ctx.store.as_ref(), &id)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(ApiError::not_found)?;
    Ok((id, kept))
}

fn delivery_view(d: &EventDelivery, record: Option<&DeliveryRecord>) -> Value {
    match record {
        Some(r) => json!({
            "endpoint_id": d.endpoint_id,
            "delivery_id": r.id.as_str(),
            "status": r.status,
            "next_attempt_at": r.next_attempt_at.map(|t| t.to_rfc3339()),
            "attempts": r.attempts,
            "last_error": r.last_error,
        }),
        None => {
            json!({"endpoint_id": d.endpoint_id, "delivery_id": d.delivery_id.as_str(), "status": null})
        }
    }
}

/// `GET /v1/events/{id}`.
pub async fn show(ctx: &SendApiContext, id: &str) -> Result<ApiResponse, ApiError> {
    let (_, kept) = load(ctx, id).await?;
    let mut deliveries = Vec::with_capacity(kept.deliveries.len());
    for d in &kept.deliveries {
        let record = ctx
            .store
            .get(&d.delivery_id)
            .await
            .map_err(store_unavailable)?;
        deliveries.push(delivery_view(d, record.as_ref()));
    }
    let e = &kept.event;
    Ok(http::json_response(
        StatusCode::OK,
        &json!({
            "id": e.id.as_str(),
            "type": e.event_type.as_str(),
            "timestamp": e.timestamp.to_rfc3339(),
            "data": e.data,
            "deliveries": deliveries,
        }),
    ))
}

/// `POST /v1/events/{id}/replay`: each finished delivery is queued again; one still in
/// progress is left alone (it is being sent already).
#[tracing::instrument(skip(ctx))]
pub async fn replay(ctx: &SendApiContext, id: &str) -> Result<ApiResponse, ApiError> {
    let id = EventId::parse(id).map_err(|_| ApiError::not_found())?;
    let replayed = crate::callbacks::replay(
        ctx.store.as_ref(),
        ctx.outbound.as_ref(),
        &id,
        ctx.clock.now(),
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "replay failed");
        ApiError::unavailable(
            "store_unavailable",
            "the replay could not be completed; retry",
        )
    })?
    .ok_or_else(ApiError::not_found)?;
    let (kept, deliveries) = replayed;
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|r| delivery_view(&r.delivery, r.record.as_ref()))
        .collect();
    Ok(http::json_response(
        StatusCode::ACCEPTED,
        &json!({"id": kept.event.id.as_str(), "deliveries": deliveries}),
    ))
}

fn endpoint_view(
    id: &str,
    url: &str,
    events: &[String],
    ordered: bool,
    state: &EndpointState,
) -> Value {
    json!({
        "id": id,
        "url": url,
        "events": events,
        "ordered": ordered,
        "enabled": state.disabled.is_none(),
        "disabled": state.disabled.as_ref().map(|d| json!({"at": d.at.to_rfc3339(), "reason": d.reason})),
        "failing_since": state.failing_since.map(|t| t.to_rfc3339()),
    })
}

async fn configured(
    ctx: &SendApiContext,
) -> Result<Vec<crate::callbacks::endpoints::CallbackEndpoint>, ApiError> {
    match endpoints::configured(&ctx.secrets).await {
        Ok(configured) => Ok(configured),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the callbacks secret");
            Err(ApiError::unavailable(
                "secrets_unavailable",
                "the callbacks secret cannot be read",
            ))
        }
    }
}

/// `GET /v1/endpoints`: each configured endpoint and whether it is enabled.
pub async fn list_endpoints(ctx: &SendApiContext) -> Result<ApiResponse, ApiError> {
    let mut out = Vec::new();
    for e in configured(ctx).await? {
        let state = endpoints::endpoint_state(ctx.store.as_ref(), &e.id)
            .await
            .map_err(store_unavailable)?;
        out.push(endpoint_view(&e.id, &e.url, &e.events, e.ordered, &state));
    }
    Ok(http::json_response(
        StatusCode::OK,
        &json!({"endpoints": out}),
    ))
}

/// `POST /v1/endpoints/{id}/enable`.
#[tracing::instrument(skip(ctx))]
pub async fn enable(ctx: &SendApiContext, id: &str) -> Result<ApiResponse, ApiError> {
    let endpoint = configured(ctx)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(ApiError::not_found)?;
    endpoints::enable(ctx.store.as_ref(), id, ctx.clock.now())
        .await
        .map_err(contended)?;
    let state = endpoints::endpoint_state(ctx.store.as_ref(), id)
        .await
        .map_err(store_unavailable)?;
    Ok(http::json_response(
        StatusCode::OK,
        &endpoint_view(
            &endpoint.id,
            &endpoint.url,
            &endpoint.events,
            endpoint.ordered,
            &state,
        ),
    ))
}
