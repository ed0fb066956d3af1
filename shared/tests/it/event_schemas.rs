//! The events Carteiro sends hold to the JSON Schemas published in docs/schemas/: built from
//! real webhook fixtures and records, each envelope has the schema's `type`, an RFC 3339
//! `timestamp`, and every `data` member the schema requires, of the type it names.

use crate::fixture;
use carteiro_shared::domain::app_event::{AppEvent, EventType};
use carteiro_shared::domain::delivery::{
    Channel, DeliveryError, DeliveryRecord, DeliveryStatus, ProviderEvent, ProviderStatus,
};
use carteiro_shared::domain::events::InboundEvent;
use carteiro_shared::domain::webhook::WebhookPayload;
use carteiro_shared::domain::{MessageId, Timestamp};
use serde_json::{Value, json};
use std::path::PathBuf;

fn schema(t: EventType) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../docs/schemas/{}.v1.json", t.as_str()));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn type_ok(value: &Value, rule: &Value) -> bool {
    if let Some(c) = rule.get("const") {
        return value == c;
    }
    if let Some(Value::Array(options)) = rule.get("enum") {
        return options.contains(value);
    }
    let kinds: Vec<&str> = match rule.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return true,
    };
    kinds.iter().any(|k| match *k {
        "string" => value.is_string(),
        "object" => value.is_object(),
        "integer" => value.is_i64() || value.is_u64(),
        "null" => value.is_null(),
        _ => true,
    })
}

fn check(envelope: &Value, schema: &Value) {
    assert_eq!(envelope["type"], schema["properties"]["type"]["const"]);
    let ts = envelope["timestamp"].as_str().unwrap();
    assert!(
        Timestamp::parse_rfc3339(ts).is_some(),
        "timestamp {ts:?} is not RFC 3339"
    );
    let data_schema = &schema["properties"]["data"];
    for key in data_schema["required"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        let value = envelope["data"]
            .get(key)
            .unwrap_or_else(|| panic!("{}: data.{key} missing in {envelope}", envelope["type"]));
        let rule = &data_schema["properties"][key];
        assert!(
            type_ok(value, rule),
            "{}: data.{key} = {value} does not fit {rule}",
            envelope["type"]
        );
    }
}

fn envelope(e: &AppEvent) -> Value {
    serde_json::from_str(&e.envelope()).unwrap()
}

fn from_fixture(name: &str) -> Vec<AppEvent> {
    let now = Timestamp::from_secs(1_764_597_909);
    WebhookPayload::from_slice(&fixture(name))
        .unwrap()
        .into_events()
        .into_iter()
        .filter_map(|e| match e {
            InboundEvent::Message {
                phone_number_id,
                contact,
                message,
            } => Some(AppEvent::received(
                phone_number_id.as_deref(),
                contact.as_ref(),
                &message,
                now,
            )),
            InboundEvent::Field {
                waba_id,
                time,
                change,
            } => AppEvent::account(&waba_id, time, &change, now),
            _ => None,
        })
        .collect()
}

fn record(channel: Channel, status: DeliveryStatus) -> DeliveryRecord {
    let mut r = DeliveryRecord::new_queued(
        MessageId::generate(),
        channel,
        "+5511999990001",
        json!({"metadata": {"order": "A-1"}}),
        Timestamp::from_secs(1_000),
    );
    r.status = status;
    r.provider_message_id = Some("wamid.X".into());
    r.last_error = Some(DeliveryError::carteiro(
        "attempts_exhausted",
        "every attempt allowed was made",
    ));
    r
}

#[test]
fn every_event_type_has_a_schema_whose_example_fits_it() {
    for t in EventType::ALL {
        let s = schema(t);
        assert_eq!(s["properties"]["type"]["const"], t.as_str());
        check(&s["examples"][0], &s);
    }
}

#[test]
fn the_events_built_from_real_payloads_fit_their_schemas() {
    let mut seen = std::collections::HashSet::new();
    for name in [
        "meta_doc_webhook_msg_text.json",
        "webhook_msg_image.json",
        "webhook_msg_interactive_button_reply.json",
        "webhook_template_status_update_approved.json",
        "meta_doc_webhook_phone_number_quality_update_throughput_upgrade.json",
        "webhook_account_update_violation.json",
    ] {
        let events = from_fixture(name);
        assert!(!events.is_empty(), "{name} gave no event");
        for e in &events {
            check(&envelope(e), &schema(e.event_type));
            seen.insert(e.event_type);
        }
    }
    let sent = record(Channel::Whatsapp, DeliveryStatus::Delivered);
    for status in [
        ProviderStatus::Sent,
        ProviderStatus::Delivered,
        ProviderStatus::Read,
        ProviderStatus::Failed,
    ] {
        let reported = ProviderEvent {
            status,
            at: Timestamp::from_secs(2_000),
            received_at: Timestamp::from_secs(2_001),
            error: None,
            pricing: None,
            conversation: None,
        };
        let e = AppEvent::status(&sent, &reported).unwrap();
        check(&envelope(&e), &schema(e.event_type));
        seen.insert(e.event_type);
    }
    for status in [DeliveryStatus::Failed, DeliveryStatus::Dead] {
        let e = AppEvent::outcome(&record(Channel::Email, status), Timestamp::from_secs(3_000))
            .unwrap();
        check(&envelope(&e), &schema(e.event_type));
        seen.insert(e.event_type);
    }
    assert_eq!(seen.len(), EventType::ALL.len(), "{seen:?}");
    // Callbacks themselves raise no message.failed (no event about an event).
    assert!(
        AppEvent::outcome(
            &record(Channel::Webhook, DeliveryStatus::Dead),
            Timestamp::from_secs(1)
        )
        .is_none()
    );
}
