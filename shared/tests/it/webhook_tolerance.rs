//! Hostile and odd webhook bodies: only invalid JSON, a non-object top level or a missing
//! `object` is refused; everything else is routed or parked as `Unrecognised`, never dropped,
//! never a panic, and every event still survives the queue's JSON round trip.

use crate::fixture;
use carteiro_shared::domain::events::InboundEvent;
use carteiro_shared::domain::webhook::{
    FieldChange, InteractiveReply, MessageContent, WebhookParseError, WebhookPayload,
};
use serde_json::{Value, json};

/// Parses, splits and checks the round trip of every event.
fn routed(body: &Value) -> Vec<InboundEvent> {
    let bytes = serde_json::to_vec(body).unwrap();
    let events = WebhookPayload::from_slice(&bytes).unwrap().into_events();
    for event in &events {
        let json = serde_json::to_string(event).unwrap();
        let back: InboundEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, event, "round trip of {json}");
    }
    events
}

/// A one-change WhatsApp payload.
fn change(field: &str, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "time": 1700000000, "changes": [{ "field": field, "value": value }] }]
    })
}

fn messages_value(extra: Value) -> Value {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550001111", "phone_number_id": "PNID" }
    });
    value
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    value
}

fn status(id: &str, status: &str) -> Value {
    json!({ "id": id, "status": status, "timestamp": "1700000000", "recipient_id": "15550002222" })
}

fn text(id: &str, from: &str) -> Value {
    json!({ "from": from, "id": id, "timestamp": "1700000000", "type": "text", "text": { "body": "hi" } })
}

/// The `(field, value)` of a parked change, or a panic.
fn unrecognised(event: &InboundEvent) -> (&str, &Value) {
    match event {
        InboundEvent::Field {
            change: FieldChange::Unrecognised { field, value },
            ..
        } => (field, value),
        other => panic!("expected an Unrecognised change, got {other:?}"),
    }
}

#[test]
fn bodies_that_are_not_json_are_invalid_json() {
    for body in [
        &b""[..],
        b"{",
        b"not json",
        b"{\"object\":",
        b"\xff\xfe",
        b"{\"a\":1}{",
    ] {
        assert!(
            matches!(
                WebhookPayload::from_slice(body),
                Err(WebhookParseError::InvalidJson(_))
            ),
            "{body:?}"
        );
    }
}

#[test]
fn every_truncation_of_a_real_payload_is_refused_without_panic() {
    let body = fixture("signed_raw_body_text__pywa_test_server.json");
    for len in 0..body.len() {
        assert!(
            matches!(
                WebhookPayload::from_slice(&body[..len]),
                Err(WebhookParseError::InvalidJson(_))
            ),
            "prefix of {len} bytes"
        );
    }
    assert!(WebhookPayload::from_slice(&body).is_ok());
}

#[test]
fn a_top_level_that_is_not_an_object_is_refused() {
    for body in [
        "[]",
        "[{\"object\":\"whatsapp_business_account\"}]",
        "null",
        "1",
        "\"x\"",
        "true",
    ] {
        assert!(
            matches!(
                WebhookPayload::from_slice(body.as_bytes()),
                Err(WebhookParseError::NotAnObject)
            ),
            "{body}"
        );
    }
}

#[test]
fn an_object_without_a_string_object_member_is_refused() {
    for body in [
        "{}",
        "{\"entry\":[]}",
        "{\"object\":null}",
        "{\"object\":5}",
        "{\"object\":[\"x\"]}",
    ] {
        assert!(
            matches!(
                WebhookPayload::from_slice(body.as_bytes()),
                Err(WebhookParseError::MissingObject)
            ),
            "{body}"
        );
    }
}

#[test]
fn parse_errors_read_well_in_an_error_body() {
    assert_eq!(
        WebhookParseError::NotAnObject.to_string(),
        "webhook body is not a JSON object"
    );
    assert_eq!(
        WebhookParseError::MissingObject.to_string(),
        "webhook body has no string member `object`"
    );
    let invalid = WebhookPayload::from_slice(b"{").unwrap_err().to_string();
    assert!(
        invalid.starts_with("webhook body is not valid JSON"),
        "{invalid}"
    );
}

#[test]
fn another_products_payload_parses_but_is_not_whatsapp() {
    let payload = WebhookPayload::from_slice(br#"{"object":"page","entry":[]}"#).unwrap();
    assert!(!payload.is_whatsapp());
    assert!(payload.into_events().is_empty());
}

#[test]
fn a_payload_without_entries_has_no_events() {
    for body in [
        json!({ "object": "whatsapp_business_account" }),
        json!({ "object": "whatsapp_business_account", "entry": null }),
        json!({ "object": "whatsapp_business_account", "entry": [] }),
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "W", "changes": [] }] }),
    ] {
        assert!(routed(&body).is_empty(), "{body}");
    }
}

#[test]
fn unknown_members_are_kept_at_every_level() {
    let body = json!({
        "object": "whatsapp_business_account",
        "new_top": 1,
        "entry": [{ "id": "W", "new_entry": 2, "changes": [{
            "field": "messages", "new_change": 3,
            "value": messages_value(json!({
                "statuses": [{ "id": "wamid.S", "status": "sent", "timestamp": "1", "recipient_id": "1",
                               "recipient_type": "group", "new_status": 4 }],
                "messages": [{ "from": "1", "id": "wamid.M", "timestamp": "1", "type": "text",
                               "text": { "body": "x", "new_text": 5 }, "new_message": 6 }]
            }))
        }]}]
    });
    let payload = WebhookPayload::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(payload.extra["new_top"], 1);
    assert_eq!(payload.entry[0].extra["new_entry"], 2);
    assert_eq!(payload.entry[0].changes[0].extra["new_change"], 3);
    let events = routed(&body);
    match &events[0] {
        InboundEvent::Status { status, .. } => {
            assert_eq!(status.extra["new_status"], 4);
            assert_eq!(status.extra["recipient_type"], "group");
        }
        other => panic!("{other:?}"),
    }
    match &events[1] {
        InboundEvent::Message { message, .. } => {
            assert_eq!(message.extra["new_message"], 6);
            match &message.content {
                MessageContent::Text(t) => assert_eq!(t.extra["new_text"], 5),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_item_of_a_batched_payload_becomes_an_event() {
    let statuses: Vec<Value> = (0..1000)
        .map(|i| status(&format!("wamid.{i}"), "delivered"))
        .collect();
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [
            { "id": "W1", "changes": [
                { "field": "messages", "value": messages_value(json!({ "statuses": statuses })) },
                { "field": "messages", "value": messages_value(json!({ "messages": [text("wamid.a", "1"), text("wamid.b", "2")] })) }
            ]},
            { "id": "W2", "time": 5, "changes": [
                { "field": "account_update", "value": { "event": "ACCOUNT_VIOLATION" } }
            ]}
        ]
    });
    let events = routed(&body);
    assert_eq!(events.len(), 1003);
    assert!(events[..1000].iter().all(|e| e.kind() == "status"));
    assert_eq!(events[1000].kind(), "message");
    assert!(
        matches!(&events[1002], InboundEvent::Field { waba_id, time: Some(5), .. } if waba_id == "W2")
    );
}

#[test]
fn a_status_that_does_not_fit_is_parked_alone_and_its_siblings_still_route() {
    let body = change(
        "messages",
        messages_value(json!({ "statuses": [
            status("wamid.1", "sent"),
            { "status": "sent", "timestamp": "1" },      // no id
            { "id": 42, "status": "read", "timestamp": "1" }, // id not a string
            status("wamid.2", "read"),
        ]})),
    );
    let events = routed(&body);
    let kinds: Vec<&str> = events.iter().map(InboundEvent::kind).collect();
    assert_eq!(kinds, ["status", "field", "field", "status"]);
    let (field, value) = unrecognised(&events[1]);
    assert_eq!(field, "messages");
    // The parked value reads like Meta's: the change's metadata plus the one bad item.
    assert_eq!(value["metadata"]["phone_number_id"], "PNID");
    assert_eq!(
        value["statuses"],
        json!([{ "status": "sent", "timestamp": "1" }])
    );
    assert!(
        matches!(&events[3], InboundEvent::Status { status, phone_number_id } if status.id == "wamid.2" && phone_number_id.as_deref() == Some("PNID"))
    );
}

#[test]
fn statuses_or_messages_that_are_not_arrays_are_parked() {
    for key in ["statuses", "messages", "errors"] {
        let body = change(
            "messages",
            messages_value(json!({ key: { "not": "an array" } })),
        );
        let events = routed(&body);
        assert_eq!(events.len(), 1, "{key}");
        let (_, value) = unrecognised(&events[0]);
        assert_eq!(value[key], json!({ "not": "an array" }), "{key}");
    }
}

#[test]
fn a_messages_value_that_is_not_an_object_is_parked_whole() {
    for value in [
        json!("garbage"),
        json!(null),
        json!(17),
        json!([1, 2]),
        json!(true),
    ] {
        let events = routed(&change("messages", value.clone()));
        assert_eq!(events.len(), 1, "{value}");
        assert_eq!(unrecognised(&events[0]), ("messages", &value));
    }
}

#[test]
fn a_messages_value_with_nothing_routable_is_parked_whole() {
    let value = messages_value(json!({ "calls": [{ "id": "c1" }] }));
    let events = routed(&change("messages", value.clone()));
    assert_eq!(events.len(), 1);
    assert_eq!(unrecognised(&events[0]), ("messages", &value));
}

#[test]
fn a_message_without_type_from_id_or_timestamp_is_parked() {
    let mut bad = Vec::new();
    for key in ["type", "from", "id", "timestamp"] {
        let mut m = text("wamid.x", "1");
        m.as_object_mut().unwrap().remove(key);
        bad.push(m);
    }
    bad.push(json!({ "from": 1, "id": "wamid.x", "timestamp": "1", "type": "text" }));
    bad.push(json!("not an object"));
    for m in bad {
        let events = routed(&change(
            "messages",
            messages_value(json!({ "messages": [m.clone()] })),
        ));
        assert_eq!(events.len(), 1, "{m}");
        assert_eq!(unrecognised(&events[0]).1["messages"], json!([m]));
    }
}

#[test]
fn an_integer_timestamp_is_read_as_its_string() {
    let m = json!({ "from": "1", "id": "wamid.x", "timestamp": 1700000000, "type": "text", "text": { "body": "x" } });
    match &routed(&change(
        "messages",
        messages_value(json!({ "messages": [m] })),
    ))[0]
    {
        InboundEvent::Message { message, .. } => assert_eq!(message.timestamp, "1700000000"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_message_types_and_misfit_bodies_are_kept_as_other() {
    let cases = [
        (
            json!({ "type": "poll_vote", "poll_vote": { "option": 2 } }),
            "poll_vote",
            Some(json!({ "option": 2 })),
        ),
        (
            json!({ "type": "image", "image": "not an object" }),
            "image",
            Some(json!("not an object")),
        ),
        (
            json!({ "type": "text", "text": { "no_body": true } }),
            "text",
            Some(json!({ "no_body": true })),
        ),
        (
            json!({ "type": "location", "location": { "latitude": "north" } }),
            "location",
            Some(json!({ "latitude": "north" })),
        ),
        (json!({ "type": "text" }), "text", None),
        (
            json!({ "type": "text", "text": null }),
            "text",
            Some(Value::Null),
        ),
        (json!({ "type": "" }), "", None),
    ];
    for (fields, kind, body) in cases {
        let mut m = json!({ "from": "1", "id": "wamid.x", "timestamp": "1" });
        m.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        match &routed(&change(
            "messages",
            messages_value(json!({ "messages": [m.clone()] })),
        ))[0]
        {
            InboundEvent::Message { message, .. } => {
                assert_eq!(message.kind(), kind, "{m}");
                assert_eq!(
                    message.content,
                    MessageContent::Other {
                        kind: kind.to_owned(),
                        body: body.clone()
                    },
                    "{m}"
                );
            }
            other => panic!("{m}: {other:?}"),
        }
    }
}

#[test]
fn unknown_interactive_replies_are_kept_as_other() {
    let m = json!({ "from": "1", "id": "wamid.x", "timestamp": "1", "type": "interactive",
                    "interactive": { "type": "call_permission_reply", "call_permission_reply": { "response": "accept" } } });
    match &routed(&change(
        "messages",
        messages_value(json!({ "messages": [m] })),
    ))[0]
    {
        InboundEvent::Message { message, .. } => match &message.content {
            MessageContent::Interactive(i) => assert_eq!(
                i.reply,
                InteractiveReply::Other {
                    kind: "call_permission_reply".to_owned(),
                    body: Some(json!({ "response": "accept" }))
                }
            ),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_legacy_unknown_type_is_unsupported_too() {
    let m = json!({ "from": "1", "id": "wamid.x", "timestamp": "1", "type": "unknown",
                    "errors": [{ "code": 131051, "title": "Message type unknown" }] });
    match &routed(&change(
        "messages",
        messages_value(json!({ "messages": [m] })),
    ))[0]
    {
        InboundEvent::Message { message, .. } => {
            assert_eq!(message.kind(), "unknown");
            assert_eq!(message.content, MessageContent::Unknown(None));
            assert!(message.content.is_unsupported());
            assert_eq!(message.errors[0].code, 131051);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn common_message_members_that_do_not_fit_stay_raw_in_extra() {
    let m = json!({ "from": "1", "id": "wamid.x", "timestamp": "1", "type": "text", "text": { "body": "x" },
                    "context": 5, "referral": "ad", "errors": [{ "no_code": true }] });
    match &routed(&change(
        "messages",
        messages_value(json!({ "messages": [m] })),
    ))[0]
    {
        InboundEvent::Message { message, .. } => {
            assert_eq!((&message.context, &message.referral), (&None, &None));
            assert!(message.errors.is_empty());
            assert_eq!(message.extra["context"], 5);
            assert_eq!(message.extra["referral"], "ad");
            assert_eq!(message.extra["errors"], json!([{ "no_code": true }]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_type_naming_a_common_member_round_trips() {
    // Never seen from Meta, but it must not confuse the body with the member.
    for kind in ["context", "from", "errors", "type", "referral"] {
        let m = json!({ "from": "1", "id": "wamid.x", "timestamp": "1", "type": kind,
                        "context": { "id": "wamid.y" } });
        let events = routed(&change(
            "messages",
            messages_value(json!({ "messages": [m] })),
        ));
        assert_eq!(events[0].kind(), "message", "{kind}");
    }
}

#[test]
fn the_contact_card_is_the_senders_or_the_only_one() {
    let contacts = json!([
        { "profile": { "name": "A" }, "wa_id": "111" },
        { "profile": { "name": "B" }, "wa_id": "222" }
    ]);
    let body = change(
        "messages",
        messages_value(
            json!({ "contacts": contacts, "messages": [text("wamid.1", "222"), text("wamid.2", "333")] }),
        ),
    );
    let events = routed(&body);
    match (&events[0], &events[1]) {
        (
            InboundEvent::Message {
                contact: Some(c), ..
            },
            InboundEvent::Message { contact: None, .. },
        ) => {
            assert_eq!(c.profile.as_ref().unwrap().name.as_deref(), Some("B"));
        }
        other => panic!("{other:?}"),
    }
    // With a single card, it is used even if `wa_id` differs (or is absent, as with usernames).
    let body = change(
        "messages",
        messages_value(
            json!({ "contacts": [{ "user_id": "US.1", "profile": { "username": "@a" } }],
                                "messages": [text("wamid.1", "999")] }),
        ),
    );
    match &routed(&body)[0] {
        InboundEvent::Message {
            contact: Some(c), ..
        } => {
            assert_eq!(c.user_id.as_deref(), Some("US.1"));
            assert_eq!(c.profile.as_ref().unwrap().username.as_deref(), Some("@a"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn contacts_that_do_not_fit_are_parked_and_messages_still_route() {
    let body = change(
        "messages",
        messages_value(json!({ "contacts": "garbage", "messages": [text("wamid.1", "1")] })),
    );
    let events = routed(&body);
    assert_eq!(events.len(), 2);
    assert_eq!(unrecognised(&events[0]).1["contacts"], "garbage");
    assert!(matches!(
        &events[1],
        InboundEvent::Message { contact: None, .. }
    ));
}

#[test]
fn change_level_errors_become_an_errors_event() {
    let errors = json!([{ "code": 131000, "title": "Something went wrong", "error_data": { "details": "x" } }]);
    let events = routed(&change(
        "messages",
        messages_value(json!({ "errors": errors.clone() })),
    ));
    match &events[..] {
        [
            InboundEvent::Errors {
                phone_number_id,
                errors,
            },
        ] => {
            assert_eq!(phone_number_id.as_deref(), Some("PNID"));
            assert_eq!(errors[0].code, 131000);
        }
        other => panic!("{other:?}"),
    }
    // Next to statuses they are still reported, not dropped.
    let events = routed(&change(
        "messages",
        messages_value(json!({ "statuses": [status("wamid.1", "sent")], "errors": errors })),
    ));
    let kinds: Vec<&str> = events.iter().map(InboundEvent::kind).collect();
    assert_eq!(kinds, ["status", "errors"]);
    // Errors that do not fit are parked as one group.
    let events = routed(&change(
        "messages",
        messages_value(json!({ "errors": [{ "code": "x" }] })),
    ));
    assert_eq!(
        unrecognised(&events[0]).1["errors"],
        json!([{ "code": "x" }])
    );
}

#[test]
fn unmodelled_fields_are_other_and_misfit_modelled_fields_are_unrecognised() {
    let value = json!({ "event": "NEW", "anything": [1, 2] });
    match &routed(&change("security", value.clone()))[0] {
        InboundEvent::Field {
            change: FieldChange::Other { field, value: v },
            waba_id,
            time,
        } => {
            assert_eq!(
                (field.as_str(), v, waba_id.as_str(), *time),
                ("security", &value, "WABA", Some(1700000000))
            );
        }
        other => panic!("{other:?}"),
    }
    for (field, bad) in [
        ("message_template_status_update", json!(5)),
        (
            "message_template_status_update",
            json!({ "message_template_id": 1 }),
        ), // no event
        (
            "message_template_status_update",
            json!({ "event": "APPROVED", "message_template_id": 1.5 }),
        ),
        ("phone_number_quality_update", json!({ "event": ["x"] })),
        ("account_update", json!(null)),
        ("user_preferences", json!({ "user_preferences": "stop" })),
        (
            "user_preferences",
            json!({ "user_preferences": [{ "timestamp": "yesterday" }] }),
        ),
    ] {
        let events = routed(&change(field, bad.clone()));
        assert_eq!(unrecognised(&events[0]), (field, &bad), "{field}: {bad}");
        match &events[0] {
            InboundEvent::Field { change, .. } => assert_eq!(change.field_name(), field),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn lenient_ids_and_timestamps_in_field_values_are_normalised() {
    let events = routed(&change(
        "message_template_status_update",
        json!({ "event": "PAUSED", "message_template_id": "123" }),
    ));
    assert!(
        matches!(&events[0], InboundEvent::Field { change: FieldChange::TemplateStatusUpdate { message_template_id: Some(id), .. }, .. } if id == "123")
    );
    let events = routed(&change(
        "user_preferences",
        json!({ "user_preferences": [{ "wa_id": "1", "value": "stop", "timestamp": "1731705721" }] }),
    ));
    match &events[0] {
        InboundEvent::Field {
            change:
                FieldChange::UserPreferences {
                    user_preferences, ..
                },
            ..
        } => {
            assert_eq!(user_preferences[0].timestamp, Some(1731705721));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_entries_and_changes_are_parked_with_an_empty_field_name() {
    let garbage = [
        (
            json!({ "object": "whatsapp_business_account", "entry": "garbage" }),
            json!("garbage"),
        ),
        (
            json!({ "object": "whatsapp_business_account", "entry": [42] }),
            json!(42),
        ),
        (
            json!({ "object": "whatsapp_business_account", "entry": [{ "id": "W", "changes": "x" }] }),
            json!("x"),
        ),
        (
            json!({ "object": "whatsapp_business_account", "entry": [{ "id": "W", "changes": [7] }] }),
            json!(7),
        ),
        (
            json!({ "object": "whatsapp_business_account", "entry": [{ "id": "W", "changes": [{ "value": { "a": 1 } }] }] }),
            json!({ "a": 1 }),
        ),
    ];
    for (body, value) in garbage {
        let events = routed(&body);
        assert_eq!(events.len(), 1, "{body}");
        assert_eq!(unrecognised(&events[0]), ("", &value), "{body}");
    }
}

#[test]
fn odd_entry_ids_times_and_field_names_are_kept_as_text() {
    let body = json!({ "object": "whatsapp_business_account", "entry": [
        { "id": 123, "time": "1700000000", "changes": [{ "field": 9, "value": {} }] },
        { "time": { "no": 1 }, "changes": [{ "field": "account_update", "value": { "event": "X" } }] }
    ]});
    let events = routed(&body);
    match &events[0] {
        InboundEvent::Field {
            waba_id,
            time,
            change,
        } => {
            assert_eq!((waba_id.as_str(), *time), ("123", Some(1700000000)));
            assert_eq!(
                change,
                &FieldChange::Other {
                    field: "9".to_owned(),
                    value: json!({})
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&events[1], InboundEvent::Field { waba_id, time: None, .. } if waba_id.is_empty())
    );
}

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let body = format!(
        "{{\"object\":\"whatsapp_business_account\",\"x\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(matches!(
        WebhookPayload::from_slice(body.as_bytes()),
        Err(WebhookParseError::InvalidJson(_))
    ));
}

#[test]
fn nesting_at_the_parsers_limit_still_round_trips_as_events() {
    // serde_json refuses more than 128 levels; the deepest accepted value must still fit in a
    // queue message, whose envelope is shallower than the webhook's.
    let mut deep = json!("leaf");
    for _ in 0..118 {
        deep = json!([deep]);
    }
    let m = json!({ "from": "1", "id": "wamid.x", "timestamp": "1", "type": "text", "text": { "body": "x" }, "deep": deep });
    let body = change("messages", messages_value(json!({ "messages": [m] })));
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!(
        WebhookPayload::from_slice(&bytes).is_ok(),
        "126 levels are accepted"
    );
    assert_eq!(routed(&body).len(), 1);
    // A few levels more are refused by the parser, before any routing.
    let mut deeper = body.clone();
    let leaf = &mut deeper["entry"][0]["changes"][0]["value"]["messages"][0]["deep"];
    *leaf = json!([[[leaf.take()]]]);
    let bytes = serde_json::to_vec(&deeper).unwrap();
    assert!(matches!(
        WebhookPayload::from_slice(&bytes),
        Err(WebhookParseError::InvalidJson(_))
    ));
}

#[test]
fn realistic_floats_survive_the_round_trip() {
    let m = json!({ "from": "1", "id": "wamid.x", "timestamp": "1", "type": "location",
                    "location": { "latitude": -23.5505199, "longitude": -46.6333094, "accuracy": 12.5 } });
    let events = routed(&change(
        "messages",
        messages_value(json!({ "messages": [m] })),
    ));
    match &events[0] {
        InboundEvent::Message { message, .. } => match &message.content {
            MessageContent::Location(l) => {
                assert_eq!((l.latitude, l.longitude), (-23.5505199, -46.6333094))
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}
