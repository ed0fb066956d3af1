//! Webhook payloads for tests: the fixtures copied from ../shared/fixtures/whatsapp, and
//! status payloads built to order.

use carteiro_shared::domain::delivery::{Channel, DeliveryRecord, DeliveryStatus};
use carteiro_shared::domain::payload::DeliveryPayload;
use carteiro_shared::domain::{MessageId, Timestamp};
use serde_json::json;
use std::path::PathBuf;

/// The secrets every test gateway uses.
pub const APP_SECRET: &str = "carteiro-test-app-secret";
pub const PREVIOUS_APP_SECRET: &str = "carteiro-test-previous-app-secret";
pub const VERIFY_TOKEN: &str = "carteiro-test-verify-token";
pub const API_KEY_ID: &str = "app-1";
pub const API_KEY: &str = "carteiro-test-api-key";
pub const OTHER_API_KEY: &str = "carteiro-test-other-api-key";
pub const ACCESS_TOKEN: &str = "EAAG-carteiro-test-token";
pub const PHONE_NUMBER_ID: &str = "1122334455667";

/// The `whatsapp` secret document for tests.
pub fn whatsapp_secret_json() -> serde_json::Value {
    json!({
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "previous_app_secret": PREVIOUS_APP_SECRET,
        "phone_number_id": "1122334455667",
    })
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/whatsapp")
}

/// A fixture's exact bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// `sha256=<hex>` over `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    carteiro_shared::intake::signature::sign(secret.as_bytes(), body)
}

/// A `messages` webhook carrying one status for `wamid`.
pub fn status_payload(
    wamid: &str,
    status: &str,
    timestamp: i64,
    callback: Option<&str>,
) -> Vec<u8> {
    let mut item = json!({
        "id": wamid,
        "status": status,
        "timestamp": timestamp.to_string(),
        "recipient_id": "5511999990001",
    });
    if let Some(data) = callback {
        item["biz_opaque_callback_data"] = json!(data);
    }
    if status == "failed" {
        item["errors"] = json!([{
            "code": 131049,
            "title": "This message was not delivered to maintain healthy ecosystem engagement.",
            "message": "This message was not delivered to maintain healthy ecosystem engagement.",
            "error_data": {"details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
        }]);
    }
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "5467539754836534",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1122334455667"},
                    "statuses": [item],
                }
            }]
        }]
    });
    serde_json::to_vec(&payload).unwrap()
}

/// A delivery record that dispatch has sent as `wamid`.
pub fn sent_record(wamid: &str) -> DeliveryRecord {
    let mut record = DeliveryRecord::new_queued(
        MessageId::generate(),
        Channel::Whatsapp,
        "+5511999990001",
        json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}}),
        Timestamp::now(),
    );
    record.status = DeliveryStatus::Sent;
    record.provider_message_id = Some(wamid.to_owned());
    record
}

/// A `queued` WhatsApp text record created at `created`, holding the Graph payload the send
/// API would have built (Carteiro's id in `biz_opaque_callback_data`), as if just accepted.
pub fn queued_whatsapp_record(created: Timestamp, text: &str) -> DeliveryRecord {
    let id = MessageId::generate();
    let mut r = DeliveryRecord::new_queued(
        id.clone(),
        Channel::Whatsapp,
        "+5511999990001",
        json!({}),
        created,
    );
    r.payload = Some(DeliveryPayload::WhatsappGraphV1 {
        body: json!({"messaging_product": "whatsapp", "to": "5511999990001", "type": "text",
                     "text": {"body": text}, "biz_opaque_callback_data": id.as_str()}),
        marketing: false,
    });
    r
}

/// A fresh unique wamid.
pub fn new_wamid() -> String {
    format!("wamid.TEST{}", uuid::Uuid::now_v7().simple())
}

/// A `messages` webhook carrying one inbound text from `from` (digits), sent at `timestamp`.
pub fn inbound_text_payload(from: &str, wamid: &str, timestamp: i64, text: &str) -> Vec<u8> {
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "5467539754836534",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
                    "contacts": [{"profile": {"name": "Ana"}, "wa_id": from}],
                    "messages": [{"from": from, "id": wamid, "timestamp": timestamp.to_string(),
                                  "type": "text", "text": {"body": text}}],
                }
            }]
        }]
    });
    serde_json::to_vec(&payload).unwrap()
}

/// A `whsec_` signing secret for test endpoints.
pub fn whsec(seed: &str) -> String {
    use base64::Engine;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("carteiro-test-{seed}-0123456789"))
    )
}
