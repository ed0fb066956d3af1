//! The app's API: `POST /v1/messages`, `GET /v1/messages/{id}` and its operator actions
//! (here); events, endpoints ([`events`]) and conversations ([`conversations`]).
//!
//! A POST is authenticated (a bearer API key, compared in constant time), parsed and
//! validated into a [`SendRequest`], claimed against its `Idempotency-Key` with a write-once
//! record, written as a `queued` delivery record, and only then put on the outbound queue.
//! Nothing is created for a request that is refused.

use crate::domain::delivery::{
    ActionRefused, Attempt, DeliveryError, DeliveryRecord, DeliveryStatus, ProviderEvent,
};
use crate::domain::ids::MessageId;
use crate::domain::message::{EmailBody, OutboundMessage, SendRequest, ValidationError};
use crate::domain::payload::DeliveryPayload;
use crate::domain::time::Timestamp;
use crate::http::{self, ApiError, ApiRequest, ApiResponse};
use crate::ports::clock::Clock;
use crate::ports::limits::LimitStore;
use crate::ports::queue::Queue;
use crate::ports::store::{
    CreateOutcome, DeliveryStore, InsertOutcome, KeptKind, KeptRecord, MessageFilter,
};
use crate::ports::update::{Change, UpdateError, update_record};
use crate::providers::templates::EmailTemplates;
use crate::secrets::Secrets;
use ::http::{HeaderMap, Method, StatusCode, header};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub mod conversations;
pub mod events;
mod rate_limit;
pub mod status;
pub mod suppressions;

/// The collection route.
pub const MESSAGES_PATH: &str = "/v1/messages";

/// Whether `path` is one of this API's routes.
pub fn serves(path: &str) -> bool {
    [
        MESSAGES_PATH,
        events::EVENTS_PATH,
        events::ENDPOINTS_PATH,
        conversations::CONVERSATIONS_PATH,
        suppressions::SUPPRESSIONS_PATH,
        status::STATUS_PATH,
        status::PAGE_PATH,
        status::HEALTH_PATH,
    ]
    .iter()
    .any(|root| path == *root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/')))
}

pub use crate::domain::job::DispatchJob;

pub use crate::config::SendApiSettings;

/// What the send API needs. Built once per process.
#[derive(Debug, Clone)]
pub struct SendApiContext {
    pub store: Arc<dyn DeliveryStore>,
    pub outbound: Arc<dyn Queue>,
    pub secrets: Secrets,
    pub clock: Arc<dyn Clock>,
    pub templates: Arc<EmailTemplates>,
    pub settings: SendApiSettings,
    /// Where API keys' rate limits are counted; `None` counts nothing.
    pub limits: Option<Arc<dyn LimitStore>>,
    /// Who is not to be sent to; `None` refuses nobody.
    pub suppressions: Option<Arc<dyn crate::ports::suppressions::SuppressionStore>>,
    /// What `GET /v1/status` and `GET /status` read; `None` answers them 404.
    pub status: Option<Arc<crate::status::StatusContext>>,
}

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Handles any request under [`MESSAGES_PATH`].
pub async fn handle(ctx: &SendApiContext, req: ApiRequest) -> ApiResponse {
    let span = tracing::info_span!(
        "request",
        request_id = http::request_id(req.headers()),
        method = %req.method(),
        route = http::route_of(req.uri().path()),
        correlation_id = http::correlation_id(req.headers()).unwrap_or_default(),
        api_key_id = tracing::field::Empty,
    );
    tracing::Instrument::instrument(route(ctx, req), span)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// The segments of `path` under `root`, if it is under it.
fn under<'a>(path: &'a str, root: &str) -> Option<Vec<&'a str>> {
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    Some(rest.strip_prefix('/')?.split('/').collect())
}

fn expect(req: &ApiRequest, method: Method) -> Result<(), ApiError> {
    if req.method() == method {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(method.as_str()))
    }
}

/// Events, endpoints and conversations; `None` when `path` is none of them.
async fn route_more(
    ctx: &SendApiContext,
    req: &ApiRequest,
    path: &str,
) -> Option<Result<ApiResponse, ApiError>> {
    let route = async |owner: String| {
        if let Some(parts) = under(path, events::EVENTS_PATH) {
            return Some(match parts.as_slice() {
                [id] => match expect(req, Method::GET) {
                    Ok(()) => events::show(ctx, id).await,
                    Err(e) => Err(e),
                },
                [id, "replay"] => match expect(req, Method::POST) {
                    Ok(()) => events::replay(ctx, id).await,
                    Err(e) => Err(e),
                },
                _ => Err(ApiError::not_found()),
            });
        }
        if let Some(parts) = under(path, events::ENDPOINTS_PATH) {
            return Some(match parts.as_slice() {
                [] => match expect(req, Method::GET) {
                    Ok(()) => events::list_endpoints(ctx).await,
                    Err(e) => Err(e),
                },
                [id, "enable"] => match expect(req, Method::POST) {
                    Ok(()) => events::enable(ctx, id).await,
                    Err(e) => Err(e),
                },
                _ => Err(ApiError::not_found()),
            });
        }
        if let Some(parts) = under(path, suppressions::SUPPRESSIONS_PATH) {
            return Some(match parts.as_slice() {
                [] => match expect(req, Method::GET) {
                    Ok(()) => suppressions::list(ctx, req).await,
                    Err(e) => Err(e),
                },
                [channel, address] => match expect(req, Method::DELETE) {
                    Ok(()) => suppressions::remove(ctx, channel, address).await,
                    Err(e) => Err(e),
                },
                _ => Err(ApiError::not_found()),
            });
        }
        if path == status::STATUS_PATH {
            return Some(match expect(req, Method::GET) {
                Ok(()) => status::show(ctx).await,
                Err(e) => Err(e),
            });
        }
        if let Some(parts) = under(path, conversations::CONVERSATIONS_PATH) {
            return Some(match parts.as_slice() {
                [wa_id] => match expect(req, Method::GET) {
                    Ok(()) => conversations::show(ctx, wa_id).await,
                    Err(e) => Err(e),
                },
                [wa_id, "messages"] => match expect(req, Method::GET) {
                    Ok(()) => conversations::messages(ctx, req, wa_id, &owner).await,
                    Err(e) => Err(e),
                },
                _ => Err(ApiError::not_found()),
            });
        }
        None
    };
    if under(path, MESSAGES_PATH).is_some() {
        return None;
    }
    let owner = match authenticate(ctx, req.headers()).await {
        Ok(owner) => owner,
        Err(e) => return Some(Err(e)),
    };
    route(owner).await
}

async fn route(ctx: &SendApiContext, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    // The two routes with no API key: liveness, and the page a browser opens.
    if path == status::HEALTH_PATH || path == status::PAGE_PATH {
        expect(&req, Method::GET)?;
        return if path == status::HEALTH_PATH {
            Ok(status::health())
        } else {
            status::page(ctx).await
        };
    }
    if let Some(answer) = route_more(ctx, &req, &path).await {
        return answer;
    }
    if path == MESSAGES_PATH {
        if req.method() == Method::GET {
            let owner = authenticate(ctx, req.headers()).await?;
            return list(ctx, &req, &owner).await;
        }
        if req.method() != Method::POST {
            return Err(ApiError::method_not_allowed("GET, POST"));
        }
        let key = authenticated_key(ctx, req.headers()).await?;
        let limit = match rate_limit::check(ctx, &key).await {
            Ok(limit) => limit,
            Err(too_many) => return Ok(too_many),
        };
        let answer = accept(ctx, &req, &key.id).await;
        return Ok(rate_limit::annotate(
            answer.unwrap_or_else(ApiError::into_response),
            limit,
        ));
    }
    let rest = path
        .strip_prefix(MESSAGES_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(ApiError::not_found)?;
    let (id, action) = match rest.split_once('/') {
        None => (rest, None),
        Some((id, action @ ("cancel" | "retry"))) => (id, Some(action)),
        Some(_) => return Err(ApiError::not_found()),
    };
    let Some(action) = action else {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed("GET"));
        }
        let owner = authenticate(ctx, req.headers()).await?;
        return show(ctx, id, &owner).await;
    };
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let owner = authenticate(ctx, req.headers()).await?;
    operate(ctx, id, &owner, action, http::correlation_id(req.headers())).await
}

/// `POST /v1/messages/{id}/cancel` and `/retry`.
#[tracing::instrument(skip(ctx, owner), fields(correlation_id = correlation_id.as_deref().unwrap_or("")))]
async fn operate(
    ctx: &SendApiContext,
    id: &str,
    owner: &str,
    action: &str,
    correlation_id: Option<String>,
) -> Result<ApiResponse, ApiError> {
    let Ok(id) = MessageId::parse(id) else {
        return Err(ApiError::not_found());
    };
    let now = ctx.clock.now();
    let retry = action == "retry";
    let updated = update_record(ctx.store.as_ref(), &id, |record| {
        // Another key's message and no message look the same from outside.
        if record.api_key_id.as_deref() != Some(owner) {
            return Change::Keep(Err(None));
        }
        let done = if retry {
            record.retry_fresh(now)
        } else {
            record.cancel(now)
        };
        match done {
            Ok(()) => Change::Write(Ok(())),
            Err(refused) => Change::Keep(Err(Some(refused))),
        }
    })
    .await
    .map_err(|e| match e {
        UpdateError::Store(e) => store_unavailable(e),
        UpdateError::Contended(_) => {
            ApiError::unavailable("store_unavailable", "the message is changing; retry")
        }
    })?
    .ok_or_else(ApiError::not_found)?;
    match updated.value {
        Ok(()) => {}
        Err(None) => return Err(ApiError::not_found()),
        Err(Some(ActionRefused::NotCancellable)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_cancellable",
                format!(
                    "a {} message cannot be cancelled",
                    updated.record.status.as_str()
                ),
            ));
        }
        Err(Some(ActionRefused::NotRetryable)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_retryable",
                format!(
                    "only failed or dead messages can be retried; this one is {}",
                    updated.record.status.as_str()
                ),
            ));
        }
    }
    tracing::info!(id = %id, action, "operator action applied");
    if retry {
        let job = DispatchJob::new(
            id.clone(),
            correlation_id.or(updated.record.correlation_id.clone()),
        );
        queue_job(ctx, &job).await?;
    }
    Ok(view(StatusCode::OK, &updated.record))
}

/// The id of the API key the request carries, or 401.
async fn authenticate(ctx: &SendApiContext, headers: &HeaderMap) -> Result<String, ApiError> {
    authenticated_key(ctx, headers).await.map(|k| k.id)
}

/// The API key the request carries, or 401.
async fn authenticated_key(
    ctx: &SendApiContext,
    headers: &HeaderMap,
) -> Result<crate::secrets::ApiKey, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("missing_api_key", "send Authorization: Bearer <API key>")
        })?
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_api_key",
                "the Authorization header must be Bearer <API key>",
            )
        })?;
    let keys = ctx.secrets.api_keys(false).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read the API keys");
        ApiError::unavailable(
            "secrets_unavailable",
            "credentials are unavailable; retry later",
        )
    })?;
    // Compare against every key, without stopping at a match, so timing says nothing.
    let mut owner = None;
    for key in &keys.keys {
        let expected = key.key.expose_secret().as_bytes();
        let matches = !expected.is_empty() && bool::from(expected.ct_eq(presented.as_bytes()));
        if matches && owner.is_none() {
            owner = Some(key.clone());
        }
    }
    let key = owner
        .ok_or_else(|| ApiError::unauthorized("invalid_api_key", "the API key is not valid"))?;
    // The request span's (see `handle`): every later line of the request names the key's owner.
    tracing::Span::current().record("api_key_id", key.id.as_str());
    Ok(key)
}

/// The answer to an accepted POST, returned again for a repeated Idempotency-Key.
#[derive(Debug, Serialize)]
struct Accepted<'a> {
    id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    warnings: &'a [&'static str],
}

/// What an idempotency record remembers.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyEntry {
    request_sha256: String,
    id: MessageId,
}

fn validation_error(e: ValidationError) -> ApiError {
    let field = e.field.clone();
    let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, e.message);
    if field.is_empty() {
        err
    } else {
        err.with_field(field)
    }
}

#[tracing::instrument(skip_all, fields(message_id = tracing::field::Empty))]
async fn accept(
    ctx: &SendApiContext,
    req: &ApiRequest,
    owner: &str,
) -> Result<ApiResponse, ApiError> {
    let correlation_id = http::correlation_id(req.headers());
    let limit = ctx.settings.max_body_bytes;
    if req.body().len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    if !http::is_json(req.headers()) {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    let idempotency_key = idempotency_key(req.headers())?;
    let body: Value = serde_json::from_slice(req.body()).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let mut request = SendRequest::parse(&body).map_err(validation_error)?;
    check_templates(ctx, &request)?;

    let now = ctx.clock.now();
    let mut warnings = conversations::apply_window_rule(ctx, &mut request, now).await?;
    let mut id = MessageId::generate();
    if let Some(key) = &idempotency_key {
        let request_sha256 = hex::encode(Sha256::digest(body.to_string().as_bytes()));
        let entry = IdempotencyEntry {
            request_sha256,
            id: id.clone(),
        };
        let record = KeptRecord {
            kind: KeptKind::IdempotencyKey,
            key: idempotency_record_key(owner, key),
            sub_key: String::new(),
            received_at: now,
            expires_at: now.plus(ctx.settings.idempotency_window),
            payload: serde_json::to_value(&entry).map_err(|_| internal())?,
            contact: None,
        };
        match ctx
            .store
            .put_kept(&record)
            .await
            .map_err(store_unavailable)?
        {
            InsertOutcome::Inserted => {}
            InsertOutcome::Duplicate => {
                let earlier = ctx
                    .store
                    .list_kept(KeptKind::IdempotencyKey, &record.key)
                    .await
                    .map_err(store_unavailable)?
                    .into_iter()
                    .next()
                    .and_then(|r| serde_json::from_value::<IdempotencyEntry>(r.payload).ok())
                    .ok_or_else(|| ApiError::unavailable("store_unavailable", "retry later"))?;
                if earlier.request_sha256 != entry.request_sha256 {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with a different body",
                    )
                    .with_field("Idempotency-Key"));
                }
                // Same request again: answer as the first time. If the first call died
                // between claiming the key and writing the record, finish its work now.
                id = earlier.id;
                if let Some(existing) = ctx.store.get(&id).await.map_err(store_unavailable)? {
                    // The first call may have answered 503 with the job never queued: queue
                    // it now (a duplicate job is harmless, the claim lets one through).
                    if existing.status == DeliveryStatus::Queued && existing.job_not_queued {
                        let job = DispatchJob::new(id.clone(), existing.correlation_id.clone());
                        queue_job(ctx, &job).await?;
                        mark_job_queued(ctx, &id, false).await;
                    }
                    // Refused for a suppressed recipient: its fallback may not have started.
                    if existing.fallback_due() {
                        crate::fallback::take_step(
                            ctx.store.as_ref(),
                            ctx.outbound.as_ref(),
                            &existing,
                            now,
                        )
                        .await
                        .map_err(|_| ApiError::unavailable("store_unavailable", "retry later"))?;
                    }
                    return Ok(accepted(&id, &warnings));
                }
            }
        }
    }

    let payload = DeliveryPayload::build(&id, &request.message);
    // A suppressed recipient: refused, or — with a fallback — straight to the fallback.
    let suppressed = match &ctx.suppressions {
        Some(store) => crate::suppression::check(store.as_ref(), &payload)
            .await
            .map_err(store_unavailable)?,
        None => None,
    };
    if let Some(s) = &suppressed
        && request.fallback.is_empty()
    {
        let refusal = crate::suppression::refusal(s);
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::suppression::CODE,
            refusal.message,
        )
        .with_field("to"));
    }
    let mut record = DeliveryRecord::new_queued(
        id.clone(),
        request.message.channel(),
        request.message.recipient(),
        body,
        now,
    );
    record.api_key_id = Some(owner.to_owned());
    record.payload = Some(payload);
    record.fallback_rules = request.fallback_rules;
    // Each fallback's payload is built now for the id its delivery will have.
    let mut step_id = id.clone();
    for message in &request.fallback {
        step_id = crate::domain::delivery::fallback_id(&step_id);
        record
            .fallbacks
            .push(crate::domain::delivery::FallbackStep {
                recipient: message.recipient(),
                payload: DeliveryPayload::build(&step_id, message),
            });
    }
    record.retry = request.retry;
    record.correlation_id.clone_from(&correlation_id);
    tracing::Span::current().record("message_id", id.as_str());
    if let Some(s) = &suppressed {
        record.refuse(crate::suppression::refusal(s), now);
        warnings.push(crate::suppression::CODE);
    }
    if ctx.store.create(&record).await.map_err(store_unavailable)? == CreateOutcome::AlreadyExists {
        return Ok(accepted(&id, &warnings));
    }
    crate::observability::metrics::accepted(record.channel.as_str());
    if suppressed.is_some() {
        crate::fallback::take_step(ctx.store.as_ref(), ctx.outbound.as_ref(), &record, now)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "fallback of a suppressed message not started");
                ApiError::unavailable(
                    "store_unavailable",
                    "retry later with the same Idempotency-Key",
                )
            })?;
        tracing::info!(channel = ?record.channel, "message accepted for its fallback: recipient suppressed");
        return Ok(accepted(&id, &warnings));
    }
    if let Err(e) = queue_job(ctx, &DispatchJob::new(id.clone(), correlation_id)).await {
        mark_job_queued(ctx, &id, true).await;
        return Err(e);
    }
    tracing::info!(channel = ?record.channel, "message accepted");
    Ok(accepted(&id, &warnings))
}

/// Notes on the record whether its job is still to be queued (best effort: the sweeper queues
/// a `queued` record whose job never came, flag or not).
async fn mark_job_queued(ctx: &SendApiContext, id: &MessageId, not_queued: bool) {
    let marked = update_record(ctx.store.as_ref(), id, |r| {
        if r.job_not_queued == not_queued || r.status != DeliveryStatus::Queued {
            return Change::Keep(());
        }
        r.job_not_queued = not_queued;
        Change::Write(())
    })
    .await;
    if let Err(e) = marked {
        tracing::warn!(error = %e, id = %id, "cannot note the job's queueing on the record");
    }
}

/// Puts a job on the outbound queue. On failure the record stays `queued`: the retry sweeper
/// queues records whose job never arrived, and a retry with the same Idempotency-Key queues it
/// again at once.
async fn queue_job(ctx: &SendApiContext, job: &DispatchJob) -> Result<(), ApiError> {
    let queued = crate::dispatch::enqueue(ctx.outbound.as_ref(), job, std::time::Duration::ZERO);
    queued.await.map_err(|e| {
        tracing::error!(error = %e, id = %job.id, "cannot queue an accepted message");
        ApiError::unavailable(
            "queue_unavailable",
            "the message was recorded but not queued; retry with the same Idempotency-Key",
        )
    })
}

fn accepted(id: &MessageId, warnings: &[&'static str]) -> ApiResponse {
    http::json_response(
        StatusCode::ACCEPTED,
        &Accepted {
            id: id.as_str(),
            status: "queued",
            warnings,
        },
    )
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

pub(crate) fn store_unavailable(e: crate::ports::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "delivery store unavailable");
    ApiError::unavailable(
        "store_unavailable",
        "the delivery store is unavailable; retry later",
    )
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
                ),
            )
            .with_field("Idempotency-Key")
        })?;
    Ok(Some(key.to_owned()))
}

/// Keys are scoped to the API key that used them, and hashed so any characters fit a key.
fn idempotency_record_key(owner: &str, key: &str) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!("{owner}:{digest}")
}

/// Email templates are rendered now, so a missing variable is refused with 422 rather than
/// failing later in dispatch.
fn check_templates(ctx: &SendApiContext, request: &SendRequest) -> Result<(), ApiError> {
    let messages = std::iter::once(&request.message).chain(request.fallback.iter());
    for (i, message) in messages.enumerate() {
        if let OutboundMessage::Email(email) = message
            && let EmailBody::Template { name, variables } = &email.body
        {
            let prefix = if i == 0 {
                String::new()
            } else {
                format!("fallback[{}].", i - 1)
            };
            let rendered = ctx.templates.render(name, variables).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_template",
                    e.to_string(),
                )
                .with_field(format!("{prefix}template"))
            })?;
            if rendered.subject.is_none() && email.subject.is_empty() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "missing_field",
                    format!("template {name} has no subject of its own; give {prefix}subject"),
                )
                .with_field(format!("{prefix}subject")));
            }
        }
    }
    Ok(())
}

/// `GET /v1/messages?status=&channel=&since=&limit=&cursor=`: the key's messages, newest
/// first, each in brief (its full record is `GET /v1/messages/{id}`).
async fn list(
    ctx: &SendApiContext,
    req: &ApiRequest,
    owner: &str,
) -> Result<ApiResponse, ApiError> {
    let parse = |name: &'static str| -> Result<Option<Value>, ApiError> {
        Ok(http::query_param(req, name).map(Value::String))
    };
    let invalid = |field: &'static str, message: &str| {
        ApiError::bad_request("invalid_query", message.to_owned()).with_field(field)
    };
    let filter = MessageFilter {
        status: parse("status")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| invalid("status", "status must be one of queued, sending, retry_scheduled, sent, delivered, read, failed, dead, cancelled"))?,
        channel: parse("channel")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| invalid("channel", "channel must be whatsapp or email"))?,
        since: match http::query_param(req, "since") {
            None => None,
            Some(s) => Some(Timestamp::parse_rfc3339(&s).ok_or_else(|| {
                invalid("since", "since must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z")
            })?),
        },
    };
    let (limit, cursor) = conversations::paging(req)?;
    let page = ctx
        .store
        .list_messages(owner, &filter, cursor.as_ref(), limit)
        .await
        .map_err(store_unavailable)?;
    let messages: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id.as_str(),
                "channel": r.channel,
                "status": r.status,
                "recipient": r.recipient,
                "provider_message_id": r.provider_message_id,
                "created_at": r.created_at.to_rfc3339(),
                "updated_at": r.updated_at.to_rfc3339(),
                "next_attempt_at": r.next_attempt_at.map(Timestamp::to_rfc3339),
                "attempt_count": r.attempts.len(),
                "last_error": r.last_error,
                "metadata": r.request.get("metadata").filter(|m| !m.is_null()),
            })
        })
        .collect();
    Ok(http::json_response(
        StatusCode::OK,
        &serde_json::json!({"messages": messages, "next_cursor": page.next.map(|c| c.encode())}),
    ))
}

/// `GET /v1/messages/{id}`.
#[derive(Debug, Serialize)]
struct MessageView<'a> {
    id: &'a str,
    channel: crate::domain::delivery::Channel,
    status: crate::domain::delivery::DeliveryStatus,
    recipient: &'a str,
    provider_message_id: Option<&'a str>,
    created_at: Timestamp,
    updated_at: Timestamp,
    next_attempt_at: Option<Timestamp>,
    attempts: &'a [Attempt],
    events: &'a [ProviderEvent],
    last_error: Option<&'a DeliveryError>,
    metadata: Option<&'a Value>,
    /// For a fallback: the message it stands in for.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_of: Option<&'a str>,
    /// The fallback paths taken after this one, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fallbacks: Vec<Value>,
    /// Of this message and its fallbacks, the one that got through (sent, delivered or read).
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_by: Option<&'a str>,
    /// Why the fallback was taken while this path had not failed (`not_delivered_in_time`).
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<&'a str>,
    /// Due attempts put off by a rate limit (not attempts).
    #[serde(skip_serializing_if = "crate::domain::delivery::is_zero")]
    deferrals: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_deferral: Option<&'a crate::domain::delivery::Deferral>,
}

async fn show(ctx: &SendApiContext, id: &str, owner: &str) -> Result<ApiResponse, ApiError> {
    // Another key's message and no message look the same from outside.
    let Ok(id) = MessageId::parse(id) else {
        return Err(ApiError::not_found());
    };
    let record = ctx
        .store
        .get(&id)
        .await
        .map_err(store_unavailable)?
        .filter(|r| r.api_key_id.as_deref() == Some(owner))
        .ok_or_else(ApiError::not_found)?;
    let chain = if record.fallbacks.is_empty() {
        Vec::new()
    } else {
        crate::fallback::chain(ctx.store.as_ref(), &record)
            .await
            .map_err(store_unavailable)?
            .into_iter()
            .skip(1)
            .collect()
    };
    Ok(view_with(StatusCode::OK, &record, &chain))
}

fn view(status: StatusCode, record: &DeliveryRecord) -> ApiResponse {
    view_with(status, record, &[])
}

/// The record, and the fallbacks taken after it.
fn view_with(status: StatusCode, record: &DeliveryRecord, chain: &[DeliveryRecord]) -> ApiResponse {
    // A `sent` path overtaken by its fallback (not delivered in time) has not got through yet.
    let through = |r: &DeliveryRecord| match r.status {
        DeliveryStatus::Delivered | DeliveryStatus::Read => true,
        DeliveryStatus::Sent => r.fallback_reason.is_none(),
        _ => false,
    };
    let delivered_by = std::iter::once(record)
        .chain(chain.iter())
        .find(|r| through(r))
        .map(|r| r.id.as_str());
    let view = MessageView {
        id: record.id.as_str(),
        channel: record.channel,
        status: record.status,
        recipient: &record.recipient,
        provider_message_id: record.provider_message_id.as_deref(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        next_attempt_at: record.next_attempt_at,
        attempts: &record.attempts,
        events: &record.events,
        last_error: record.last_error.as_ref(),
        metadata: record.request.get("metadata").filter(|m| !m.is_null()),
        fallback_of: record.fallback_of.as_ref().map(MessageId::as_str),
        fallbacks: chain
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id.as_str(), "channel": r.channel, "recipient": r.recipient,
                    "status": r.status, "last_error": r.last_error,
                })
            })
            .collect(),
        delivered_by: if chain.is_empty() && record.fallbacks.is_empty() {
            None
        } else {
            delivered_by
        },
        fallback_reason: record.fallback_reason.as_deref(),
        deferrals: record.deferrals,
        last_deferral: record.last_deferral.as_ref(),
    };
    http::json_response(status, &view)
}
