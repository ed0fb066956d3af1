//! Every WhatsApp fixture (real Meta payloads and error bodies, see `SOURCES.md`) parses,
//! routes to the right event and survives the queue's JSON round trip.

use crate::{fixture, whatsapp_fixtures};
use carteiro_shared::domain::events::InboundEvent;
use carteiro_shared::domain::webhook::{
    FieldChange, InteractiveReply, MessageContent, MetaError, WebhookPayload,
};
use serde_json::Value;

/// What one webhook fixture must turn into: exactly one event of this shape.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A `Status` event with this `status` string.
    Status(&'static str),
    /// A `Message` event whose `kind()` is this.
    Message(&'static str),
    /// A `Field` event with this `FieldChange::field_name()`, typed (not Other/Unrecognised).
    Field(&'static str),
}

const WEBHOOKS: &[(&str, Expect)] = &[
    ("meta_doc_webhook_msg_text.json", Expect::Message("text")),
    (
        "meta_doc_webhook_phone_number_quality_update_throughput_upgrade.json",
        Expect::Field("phone_number_quality_update"),
    ),
    (
        "meta_doc_webhook_status_failed_131049.json",
        Expect::Status("failed"),
    ),
    (
        "meta_doc_webhook_status_sent_marketing_pmp.json",
        Expect::Status("sent"),
    ),
    (
        "meta_doc_webhook_status_v24_no_conversation.json",
        Expect::Status("sent"),
    ),
    (
        "signed_raw_body_text__pywa_test_server.json",
        Expect::Message("text"),
    ),
    (
        "webhook_account_update_restriction.json",
        Expect::Field("account_update"),
    ),
    (
        "webhook_account_update_violation.json",
        Expect::Field("account_update"),
    ),
    ("webhook_msg_audio.json", Expect::Message("audio")),
    (
        "webhook_msg_audio_voice_note.json",
        Expect::Message("audio"),
    ),
    (
        "webhook_msg_button_template_quick_reply.json",
        Expect::Message("button"),
    ),
    ("webhook_msg_contacts.json", Expect::Message("contacts")),
    (
        "webhook_msg_document_forwarded.json",
        Expect::Message("document"),
    ),
    ("webhook_msg_image.json", Expect::Message("image")),
    ("webhook_msg_image_with_url.json", Expect::Message("image")),
    (
        "webhook_msg_interactive_button_reply.json",
        Expect::Message("interactive"),
    ),
    (
        "webhook_msg_interactive_list_reply.json",
        Expect::Message("interactive"),
    ),
    (
        "webhook_msg_interactive_nfm_reply_flow.json",
        Expect::Message("interactive"),
    ),
    (
        "webhook_msg_location_chosen.json",
        Expect::Message("location"),
    ),
    ("webhook_msg_order.json", Expect::Message("order")),
    ("webhook_msg_reaction.json", Expect::Message("reaction")),
    (
        "webhook_msg_reaction_removed.json",
        Expect::Message("reaction"),
    ),
    ("webhook_msg_sticker.json", Expect::Message("sticker")),
    (
        "webhook_msg_system_customer_identity_changed.json",
        Expect::Message("system"),
    ),
    (
        "webhook_msg_system_user_changed_number.json",
        Expect::Message("system"),
    ),
    ("webhook_msg_text.json", Expect::Message("text")),
    (
        "webhook_msg_text_ctwa_referral.json",
        Expect::Message("text"),
    ),
    (
        "webhook_msg_text_reply_with_context.json",
        Expect::Message("text"),
    ),
    (
        "webhook_msg_unsupported_131051.json",
        Expect::Message("unsupported"),
    ),
    (
        "webhook_msg_unsupported_with_type_131051.json",
        Expect::Message("unsupported"),
    ),
    ("webhook_msg_video.json", Expect::Message("video")),
    ("webhook_status_delivered.json", Expect::Status("delivered")),
    (
        "webhook_status_failed_130472.json",
        Expect::Status("failed"),
    ),
    ("webhook_status_read.json", Expect::Status("read")),
    ("webhook_status_sent.json", Expect::Status("sent")),
    (
        "webhook_status_sent_with_biz_opaque_callback_data.json",
        Expect::Status("sent"),
    ),
    (
        "webhook_template_status_update_approved.json",
        Expect::Field("message_template_status_update"),
    ),
    (
        "webhook_template_status_update_rejected.json",
        Expect::Field("message_template_status_update"),
    ),
    (
        "webhook_user_preferences_marketing_resume.json",
        Expect::Field("user_preferences"),
    ),
];

/// `error` file → (code, error_subcode, error_data.details).
const ERRORS: &[(&str, i64, Option<i64>, Option<&str>)] = &[
    (
        "error_100_invalid_parameter_text_mandatory__frappe_whatsapp_issue43.json",
        100,
        None,
        Some("Parameter 'text' is mandatory for component parameter type 'text'"),
    ),
    (
        "error_100_subcode33_unsupported_post_request__whatsapp-cloud-api-rs_issue3.json",
        100,
        Some(33),
        None,
    ),
    (
        "error_131030_recipient_not_in_allowed_list__heyoo_issue40.json",
        131030,
        Some(2655007),
        Some(
            "Recipient's phone number is not whitelisted: add the recipient's phone number to a recipient list, then try again.",
        ),
    ),
    (
        "error_131030_recipient_not_in_allowed_list__piusalfred_decoder_test.json",
        131030,
        Some(2655007),
        Some("Recipient phone number not in allowed list"),
    ),
    (
        "error_132001_template_not_in_translation__tawn33y_issue57.json",
        132001,
        None,
        Some("template name (cg_quest_text) does not exist in en_US"),
    ),
    (
        "error_190_access_token_expired__chatwoot_issue9708.json",
        190,
        Some(463),
        None,
    ),
    (
        "error_object_131047_reengagement__pywa_test_errors.json",
        131047,
        None,
        Some(
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
    ),
    (
        "error_object_131053_media_upload__pywa_test_errors.json",
        131053,
        None,
        Some(
            "Downloading media from weblink failed with http code 429, status message Too Many Requests",
        ),
    ),
    (
        "error_object_190_expired_token__pywa_test_errors.json",
        190,
        Some(463),
        None,
    ),
    (
        "meta_doc_error_100_mm_api_must_be_template.json",
        100,
        None,
        Some("Message must be a template message."),
    ),
    (
        "meta_doc_error_130429_rate_limit_hit.json",
        130429,
        Some(2494055),
        Some("Cloud API message throughput has been reached."),
    ),
];

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(whatsapp_fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn events_of(name: &str) -> Vec<InboundEvent> {
    let payload = WebhookPayload::from_slice(&fixture(name))
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    assert!(
        payload.is_whatsapp(),
        "{name}: object is not whatsapp_business_account"
    );
    payload.into_events()
}

fn only_event(name: &str) -> InboundEvent {
    let mut events = events_of(name);
    assert_eq!(
        events.len(),
        1,
        "{name}: expected exactly one event, got {events:#?}"
    );
    events.remove(0)
}

fn only_message(
    name: &str,
) -> (
    Option<String>,
    Option<carteiro_shared::domain::webhook::Contact>,
    carteiro_shared::domain::webhook::Message,
) {
    match only_event(name) {
        InboundEvent::Message {
            phone_number_id,
            contact,
            message,
        } => (phone_number_id, contact, *message),
        other => panic!("{name}: expected a message, got {other:?}"),
    }
}

fn only_field(name: &str) -> (String, Option<i64>, FieldChange) {
    match only_event(name) {
        InboundEvent::Field {
            waba_id,
            time,
            change,
        } => (waba_id, time, change),
        other => panic!("{name}: expected a field change, got {other:?}"),
    }
}

fn only_status(name: &str) -> carteiro_shared::domain::webhook::Status {
    match only_event(name) {
        InboundEvent::Status { status, .. } => status,
        other => panic!("{name}: expected a status, got {other:?}"),
    }
}

#[test]
fn every_payload_and_error_fixture_has_an_expectation() {
    let names = fixture_names();
    let payloads: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.starts_with("webhook_")
                || n.starts_with("meta_doc_webhook_")
                || n.starts_with("signed_raw_body")
        })
        .collect();
    let errors: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("error_") || n.starts_with("meta_doc_error_"))
        .collect();
    for name in &payloads {
        assert!(
            WEBHOOKS.iter().any(|(n, _)| n == name),
            "{name} has no expectation"
        );
    }
    for name in &errors {
        assert!(
            ERRORS.iter().any(|(n, ..)| n == name),
            "{name} has no expectation"
        );
    }
    // SOURCES.md counts 39 payloads and 11 error bodies; the tables cover exactly those.
    assert_eq!((payloads.len(), WEBHOOKS.len()), (39, 39));
    assert_eq!((errors.len(), ERRORS.len()), (11, 11));
}

#[test]
fn every_webhook_fixture_routes_to_exactly_one_event_of_the_expected_kind() {
    for (name, expect) in WEBHOOKS {
        let event = only_event(name);
        match (expect, &event) {
            (
                Expect::Status(want),
                InboundEvent::Status {
                    status,
                    phone_number_id,
                },
            ) => {
                assert_eq!(status.status, *want, "{name}");
                assert!(phone_number_id.is_some(), "{name}: phone_number_id");
                assert!(status.to_update().is_ok(), "{name}: the wamid is usable");
            }
            (
                Expect::Message(want),
                InboundEvent::Message {
                    message,
                    phone_number_id,
                    ..
                },
            ) => {
                assert_eq!(message.kind(), *want, "{name}");
                assert!(
                    !matches!(message.content, MessageContent::Other { .. }),
                    "{name}: content should be typed, got {:?}",
                    message.content
                );
                assert!(phone_number_id.is_some(), "{name}: phone_number_id");
            }
            (Expect::Field(want), InboundEvent::Field { change, .. }) => {
                assert_eq!(change.field_name(), *want, "{name}");
                assert!(
                    !matches!(
                        change,
                        FieldChange::Other { .. } | FieldChange::Unrecognised { .. }
                    ),
                    "{name}: change should be typed, got {change:?}"
                );
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn every_webhook_event_survives_a_json_round_trip() {
    for (name, _) in WEBHOOKS {
        for event in events_of(name) {
            let json = serde_json::to_string(&event).unwrap();
            let back: InboundEvent =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e} in {json}"));
            assert_eq!(back, event, "{name}: {json}");
        }
    }
}

#[test]
fn the_serde_deserialize_impl_reads_payloads_like_from_slice() {
    for (name, _) in WEBHOOKS {
        let bytes = fixture(name);
        let via_serde: WebhookPayload = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            via_serde,
            WebhookPayload::from_slice(&bytes).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn failed_statuses_carry_metas_error_code_and_details() {
    let status = only_status("webhook_status_failed_130472.json");
    assert_eq!(status.errors.len(), 1);
    assert_eq!(status.errors[0].code, 130472);
    assert_eq!(
        status.errors[0].details(),
        Some("Failed to send message because this user's phone number is part of an experiment")
    );
    let status = only_status("meta_doc_webhook_status_failed_131049.json");
    assert_eq!(status.errors[0].code, 131049);
    assert_eq!(status.recipient_id.as_deref(), Some("16505551234"));
}

#[test]
fn statuses_keep_callback_data_pricing_and_conversation() {
    let status = only_status("webhook_status_sent_with_biz_opaque_callback_data.json");
    assert_eq!(
        status.biz_opaque_callback_data.as_deref(),
        Some("some data")
    );
    let status = only_status("meta_doc_webhook_status_sent_marketing_pmp.json");
    assert_eq!(status.pricing.as_ref().unwrap()["pricing_model"], "PMP");
    assert_eq!(
        status.conversation.as_ref().unwrap()["origin"]["type"],
        "marketing"
    );
    let status = only_status("meta_doc_webhook_status_v24_no_conversation.json");
    assert_eq!((status.conversation, status.pricing), (None, None));
}

#[test]
fn messages_carry_the_senders_contact_and_the_phone_number_id() {
    let (pnid, contact, message) = only_message("meta_doc_webhook_msg_text.json");
    assert_eq!(pnid.as_deref(), Some("106540352242922"));
    let contact = contact.expect("contact card");
    assert_eq!(contact.wa_id.as_deref(), Some("16505551234"));
    assert_eq!(
        contact.profile.unwrap().name.as_deref(),
        Some("Sheena Nelson")
    );
    assert_eq!(message.from, "16505551234");
    assert_eq!(message.timestamp, "1749416383");
    match message.content {
        MessageContent::Text(text) => assert_eq!(text.body, "Does it come in another color?"),
        other => panic!("{other:?}"),
    }

    let (_, contact, _) = only_message("webhook_msg_text.json");
    let contact = contact.unwrap();
    assert_eq!(contact.user_id.as_deref(), Some("US.13491208655302741918"));
    assert_eq!(
        contact.parent_user_id.as_deref(),
        Some("US.ENT.11815799212886844830")
    );
}

#[test]
fn replies_forwards_and_ad_referrals_are_typed() {
    let (_, _, reply) = only_message("webhook_msg_text_reply_with_context.json");
    let context = reply.context.unwrap();
    assert_eq!(context.id.as_deref(), Some("wamid.xyzxyz=="));
    assert_eq!(context.from.as_deref(), Some("972123456789"));
    assert!(!context.is_forwarded());

    let (_, _, forwarded) = only_message("webhook_msg_document_forwarded.json");
    assert!(forwarded.context.unwrap().is_forwarded());

    let (_, _, ad) = only_message("webhook_msg_text_ctwa_referral.json");
    let referral = ad.referral.unwrap();
    assert_eq!(referral.ctwa_clid.as_deref(), Some("CTWA_CLID"));
    assert_eq!(referral.source_id.as_deref(), Some("ADID"));
    assert_eq!(referral.extra["image_url"], "RAW_IMAGE_URL");
}

#[test]
fn media_messages_keep_ids_captions_filenames_urls_and_flags() {
    let media = |name: &str| match only_message(name).2.content {
        MessageContent::Image(m)
        | MessageContent::Video(m)
        | MessageContent::Document(m)
        | MessageContent::Audio(m)
        | MessageContent::Sticker(m) => m,
        other => panic!("{name}: {other:?}"),
    };
    let image = media("webhook_msg_image.json");
    assert_eq!(
        (image.id.as_str(), image.mime_type.as_deref()),
        ("65463453", Some("image/jpeg"))
    );
    assert!(
        media("webhook_msg_image_with_url.json")
            .url
            .unwrap()
            .starts_with("https://lookaside")
    );
    let doc = media("webhook_msg_document_forwarded.json");
    assert_eq!(doc.filename.as_deref(), Some("filename.pdf"));
    assert_eq!(doc.caption.as_deref(), Some("caption"));
    assert_eq!(
        media("webhook_msg_video.json").caption.as_deref(),
        Some("caption")
    );
    assert_eq!(media("webhook_msg_audio_voice_note.json").voice, Some(true));
    assert_eq!(media("webhook_msg_audio.json").voice, Some(false));
    assert_eq!(media("webhook_msg_sticker.json").animated, Some(false));
}

#[test]
fn location_contacts_and_order_messages_are_typed() {
    match only_message("webhook_msg_location_chosen.json").2.content {
        MessageContent::Location(l) => {
            assert_eq!((l.latitude, l.longitude), (37.4611978, -122.2164385));
            assert_eq!(l.name.as_deref(), Some("Facebook HQ"));
        }
        other => panic!("{other:?}"),
    }
    match only_message("webhook_msg_contacts.json").2.content {
        MessageContent::Contacts(cards) => {
            assert_eq!(cards.len(), 3);
            let name = cards[0].name.as_ref().unwrap();
            assert_eq!(name.formatted_name.as_deref(), Some("Chandler Bing"));
            assert_eq!(cards[2].phones[0].kind.as_deref(), Some("WORK"));
        }
        other => panic!("{other:?}"),
    }
    match only_message("webhook_msg_order.json").2.content {
        MessageContent::Order(order) => {
            assert_eq!(order.catalog_id.as_deref(), Some("354160437058781"));
            assert_eq!(order.product_items.len(), 3);
            assert_eq!(order.product_items[0].quantity, Some(3));
            assert_eq!(order.product_items[0].item_price, Some(30.0));
            assert_eq!(order.product_items[0].currency.as_deref(), Some("ILS"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn interactive_replies_and_template_buttons_are_typed() {
    let reply = |name: &str| match only_message(name).2.content {
        MessageContent::Interactive(i) => i.reply,
        other => panic!("{name}: {other:?}"),
    };
    match reply("webhook_msg_interactive_button_reply.json") {
        InteractiveReply::ButtonReply(b) => assert_eq!(
            (b.id.as_str(), b.title.as_deref()),
            ("callback_data", Some("title"))
        ),
        other => panic!("{other:?}"),
    }
    match reply("webhook_msg_interactive_list_reply.json") {
        InteractiveReply::ListReply(l) => assert_eq!(l.description.as_deref(), Some("description")),
        other => panic!("{other:?}"),
    }
    match reply("webhook_msg_interactive_nfm_reply_flow.json") {
        InteractiveReply::NfmReply(n) => {
            assert_eq!(n.name.as_deref(), Some("flow"));
            // `response_json` is a JSON string, kept verbatim.
            let answers: Value = serde_json::from_str(&n.response_json).unwrap();
            assert_eq!(answers["flow_token"], "AQAAAAACS5FpgQ_cAAAAAD0QI3s.");
        }
        other => panic!("{other:?}"),
    }
    let (_, _, tap) = only_message("webhook_msg_button_template_quick_reply.json");
    match tap.content {
        MessageContent::Button(b) => assert_eq!(b.payload.as_deref(), Some("callback_data")),
        other => panic!("{other:?}"),
    }
    assert_eq!(tap.context.unwrap().id.as_deref(), Some("wamid.xyzxyz=="));
}

#[test]
fn reactions_tell_additions_from_removals() {
    match only_message("webhook_msg_reaction.json").2.content {
        MessageContent::Reaction(r) => {
            assert_eq!(r.emoji.as_deref(), Some("😮"));
            assert_eq!(r.message_id, "wamid.yzxyzx=");
            assert!(!r.is_removal());
        }
        other => panic!("{other:?}"),
    }
    match only_message("webhook_msg_reaction_removed.json").2.content {
        MessageContent::Reaction(r) => assert!(r.is_removal()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn system_messages_are_typed_and_a_change_without_contacts_has_none() {
    let (_, contact, changed) = only_message("webhook_msg_system_user_changed_number.json");
    assert_eq!(contact, None, "this fixture has no contacts[]");
    match changed.content {
        MessageContent::System(s) => {
            assert_eq!(s.kind.as_deref(), Some("user_changed_number"));
            assert_eq!(s.wa_id.as_deref(), Some("972912345678"));
        }
        other => panic!("{other:?}"),
    }
    let (_, _, identity) = only_message("webhook_msg_system_customer_identity_changed.json");
    assert!(
        matches!(&identity.content, MessageContent::System(s) if s.kind.as_deref() == Some("customer_identity_changed"))
    );
    assert_eq!(
        identity.extra["identity"]["hash"], "xyzxyz",
        "identity is kept in extra"
    );
}

#[test]
fn unsupported_messages_keep_error_131051_and_the_original_type() {
    let (_, _, old) = only_message("webhook_msg_unsupported_131051.json");
    assert!(old.content.is_unsupported());
    assert_eq!(old.content, MessageContent::Unsupported(None));
    assert_eq!(old.errors[0].code, 131051);
    let (_, _, new) = only_message("webhook_msg_unsupported_with_type_131051.json");
    match new.content {
        MessageContent::Unsupported(Some(u)) => assert_eq!(u.kind.as_deref(), Some("pool")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        new.errors[0].details(),
        Some("Message type is currently not supported.")
    );
}

#[test]
fn template_status_updates_keep_id_name_language_reason_and_time() {
    let (waba_id, time, change) = only_field("webhook_template_status_update_approved.json");
    assert_eq!(
        (waba_id.as_str(), time),
        ("102290129340398", Some(1751247548))
    );
    match change {
        FieldChange::TemplateStatusUpdate {
            event,
            message_template_id,
            message_template_name,
            message_template_language,
            reason,
            extra,
        } => {
            assert_eq!(event, "APPROVED");
            assert_eq!(message_template_id.as_deref(), Some("1689556908129832"));
            assert_eq!(message_template_name.as_deref(), Some("order_confirmation"));
            assert_eq!(message_template_language.as_deref(), Some("en_US"));
            assert_eq!(reason.as_deref(), Some("NONE"));
            assert_eq!(extra["message_template_category"], "UTILITY");
        }
        other => panic!("{other:?}"),
    }
    match only_field("webhook_template_status_update_rejected.json").2 {
        FieldChange::TemplateStatusUpdate {
            event,
            reason,
            extra,
            ..
        } => {
            assert_eq!(
                (event.as_str(), reason.as_deref()),
                ("REJECTED", Some("INVALID_FORMAT"))
            );
            assert!(extra["rejection_info"]["recommendation"].is_string());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn quality_account_and_preference_updates_are_typed() {
    match only_field("meta_doc_webhook_phone_number_quality_update_throughput_upgrade.json").2 {
        FieldChange::PhoneNumberQualityUpdate {
            event,
            current_limit,
            display_phone_number,
            ..
        } => {
            assert_eq!(event, "THROUGHPUT_UPGRADE");
            assert_eq!(current_limit.as_deref(), Some("TIER_UNLIMITED"));
            assert_eq!(display_phone_number.as_deref(), Some("15550783881"));
        }
        other => panic!("{other:?}"),
    }
    match only_field("webhook_account_update_restriction.json").2 {
        FieldChange::AccountUpdate { event, extra } => {
            assert_eq!(event, "ACCOUNT_RESTRICTION");
            assert_eq!(extra["restriction_info"].as_array().unwrap().len(), 2);
        }
        other => panic!("{other:?}"),
    }
    match only_field("webhook_account_update_violation.json").2 {
        FieldChange::AccountUpdate { event, extra } => {
            assert_eq!(event, "ACCOUNT_VIOLATION");
            assert_eq!(extra["violation_info"]["violation_type"], "ADULT");
        }
        other => panic!("{other:?}"),
    }
    match only_field("webhook_user_preferences_marketing_resume.json").2 {
        FieldChange::UserPreferences {
            user_preferences, ..
        } => {
            let p = &user_preferences[0];
            assert_eq!(p.wa_id.as_deref(), Some("16505551234"));
            assert_eq!(p.category.as_deref(), Some("marketing_messages"));
            assert_eq!(p.value.as_deref(), Some("resume"));
            assert_eq!(p.timestamp, Some(1731705721));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_error_fixture_parses_as_a_meta_error_with_code_subcode_and_details() {
    for (name, code, subcode, details) in ERRORS {
        let body: Value = serde_json::from_slice(&fixture(name)).unwrap();
        // `error_object_*` files are the bare object; the others wrap it in `{"error": …}`.
        let object = if name.starts_with("error_object_") {
            body
        } else {
            body["error"].clone()
        };
        let error: MetaError =
            serde_json::from_value(object).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(error.code, *code, "{name}");
        assert_eq!(error.error_subcode, *subcode, "{name}");
        assert_eq!(error.details(), *details, "{name}");
        assert_eq!(error.to_delivery_error().code, code.to_string(), "{name}");
        let back: MetaError =
            serde_json::from_str(&serde_json::to_string(&error).unwrap()).unwrap();
        assert_eq!(back, error, "{name}: round trip");
    }
}

#[test]
fn error_fixtures_keep_unmodelled_members_in_extra() {
    let body: Value = serde_json::from_slice(&fixture(
        "error_131030_recipient_not_in_allowed_list__piusalfred_decoder_test.json",
    ))
    .unwrap();
    let error: MetaError = serde_json::from_value(body["error"].clone()).unwrap();
    assert_eq!(error.extra["type"], "OAuthException");
    assert_eq!(
        error.extra["error_user_title"],
        "Recipient phone number not in allowed list"
    );
    assert!(error.extra["fbtrace_id"].is_string());
    assert_eq!(
        error.error_data.unwrap().extra["messaging_product"],
        "whatsapp"
    );
}
