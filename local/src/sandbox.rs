//! The sandbox that answers (local only): what Meta would do, so a developer sees the whole
//! loop with no Meta account.
//!
//! - A message the WhatsApp sandbox takes gets `sent`, `delivered` and `read` status webhooks
//!   a moment later, each signed with the app secret and handed to the real intake handler,
//!   exactly as Meta's would arrive.
//! - `POST /sandbox/inbound` with `{"from": "+5511999990013", "text": "oi"}` (or `"type"` and
//!   that type's object as Meta writes it, e.g. `"type": "image", "image": {"id": "..."}`)
//!   becomes a signed inbound-message webhook the same way.

use ::http::{Method, StatusCode};
use carteiro_shared::domain::contact::wa_id_key;
use carteiro_shared::http::{self as api, ApiError, ApiRequest, ApiResponse};
use carteiro_shared::intake::{self, IntakeContext};
use carteiro_shared::providers::whatsapp::SandboxMessage;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Route of the inbound simulator.
pub const INBOUND_PATH: &str = "/sandbox/inbound";

/// How long after the send (and after each other) the statuses come.
const STATUS_STEP: Duration = Duration::from_millis(250);

/// The WABA id the sandbox's webhooks carry.
const SANDBOX_WABA: &str = "0";

const MAX_INBOUND_BYTES: usize = 64 * 1024;

fn envelope(phone_number_id: &str, value: Value) -> Vec<u8> {
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
    })
    .as_object()
    .cloned()
    .map(|mut m| {
        if let Value::Object(extra) = value {
            m.extend(extra);
        }
        Value::Object(m)
    })
    .unwrap_or(Value::Null);
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": SANDBOX_WABA, "changes": [{"field": "messages", "value": value}]}],
    });
    payload.to_string().into_bytes()
}

fn now_secs() -> String {
    carteiro_shared::domain::Timestamp::now()
        .as_secs()
        .to_string()
}

/// Signs `body` with the app secret and hands it to the intake handler.
async fn deliver(intake_ctx: &IntakeContext, body: Vec<u8>) -> ApiResponse {
    let secret = match intake_ctx.secrets.whatsapp(false).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "sandbox: cannot read the whatsapp secret");
            return ApiError::unavailable(
                "secrets_unavailable",
                "the whatsapp secret cannot be read",
            )
            .into_response();
        }
    };
    let signature = intake::signature::sign(secret.app_secret_bytes(), &body);
    let req = ::http::Request::builder()
        .method(Method::POST)
        .uri(intake::PATH)
        .header(::http::header::CONTENT_TYPE, "application/json")
        .header("x-hub-signature-256", signature)
        .body(bytes::Bytes::from(body));
    match req {
        Ok(req) => intake::handle(intake_ctx, req).await,
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
        .into_response(),
    }
}

async fn phone_number_id(intake_ctx: &IntakeContext) -> String {
    intake_ctx
        .secrets
        .whatsapp(false)
        .await
        .ok()
        .and_then(|w| w.phone_number_id)
        .unwrap_or_else(|| "sandbox".to_owned())
}

/// Answers every message the sandbox takes with `sent`, `delivered`, `read`, until shutdown.
pub async fn answer(
    intake_ctx: IntakeContext,
    mut taken: mpsc::UnboundedReceiver<SandboxMessage>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            m = taken.recv() => match m { Some(m) => m, None => return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let ctx = intake_ctx.clone();
        tokio::spawn(async move {
            let pnid = phone_number_id(&ctx).await;
            for status in ["sent", "delivered", "read"] {
                tokio::time::sleep(STATUS_STEP).await;
                let mut item = json!({
                    "id": message.wamid, "status": status, "timestamp": now_secs(),
                    "recipient_id": message.to,
                });
                if let Some(data) = message.body.get("biz_opaque_callback_data") {
                    item["biz_opaque_callback_data"] = data.clone();
                }
                let res = deliver(&ctx, envelope(&pnid, json!({"statuses": [item]}))).await;
                if !res.status().is_success() {
                    tracing::warn!(
                        status = res.status().as_u16(),
                        "sandbox: a status webhook was refused"
                    );
                }
            }
        });
    }
}

/// `POST /sandbox/inbound`.
pub async fn inbound(intake_ctx: &IntakeContext, req: ApiRequest) -> ApiResponse {
    simulate(intake_ctx, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn simulate(intake_ctx: &IntakeContext, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    if req.body().len() > MAX_INBOUND_BYTES {
        return Err(ApiError::payload_too_large(MAX_INBOUND_BYTES));
    }
    if !api::is_json(req.headers()) {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    let body: Value = serde_json::from_slice(req.body()).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let from = body
        .get("from")
        .and_then(Value::as_str)
        .and_then(wa_id_key)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "from must be a phone number (+ and digits)",
            )
            .with_field("from")
        })?;
    let wamid = format!("wamid.sandbox.in.{}", uuid::Uuid::now_v7().simple());
    let mut message = json!({"from": from, "id": wamid, "timestamp": now_secs()});
    match (body.get("text"), body.get("type").and_then(Value::as_str)) {
        (Some(Value::String(text)), None | Some("text")) => {
            message["type"] = json!("text");
            message["text"] = json!({"body": text});
        }
        (_, Some(kind)) if body.get(kind).is_some_and(Value::is_object) => {
            message["type"] = json!(kind);
            message[kind] = body[kind].clone();
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_field",
                "give \"text\", or \"type\" and that type's object as Meta writes it",
            )
            .with_field("text"));
        }
    }
    if let Some(context) = body.get("context").filter(|c| c.is_object()) {
        message["context"] = context.clone();
    }
    let name = body
        .get("profile_name")
        .and_then(Value::as_str)
        .unwrap_or("Sandbox User");
    let pnid = phone_number_id(intake_ctx).await;
    let webhook = envelope(
        &pnid,
        json!({"contacts": [{"profile": {"name": name}, "wa_id": from}], "messages": [message]}),
    );
    let res = deliver(intake_ctx, webhook).await;
    if !res.status().is_success() {
        return Ok(res);
    }
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({"message_id": wamid, "from": from}),
    ))
}
