//! The WhatsApp provider against a local mock of the Graph API (wiremock, one server per test,
//! 127.0.0.1 only): the exact request Meta documents for every message kind, and the outcome
//! for every error class of REFERENCE §1.6.

use crate::{fixture, whatsapp_fixtures};
use async_trait::async_trait;
use carteiro_shared::config::Env;
use carteiro_shared::config::GraphSettings;
use carteiro_shared::domain::delivery::DeliveryError;
use carteiro_shared::domain::message::{OutboundMessage, SendRequest};
use carteiro_shared::domain::webhook::MetaError;
use carteiro_shared::ports::secrets::{SecretError, SecretName, SecretSource};
use carteiro_shared::providers::whatsapp::{
    GraphClient, SandboxOutbox, WhatsAppProvider, WhatsAppSender, classify, parse_error_body,
};
use carteiro_shared::providers::{FailureClass, SendFailure, SendOutcome};
use carteiro_shared::secrets::{Secrets, WhatsAppSecret};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "EAAG-test-token-never-logged";
const PNID: &str = "106540352242922";
const CALLBACK: &str = "msg_01jz8x7k3m9q2w5e6r7t8y9u0i";
const WAMID: &str = "wamid.HBgNNTUxMTk5OTk5MDAwMRUCABEYEjVCRkFGQjc0RjA4QkY1MjY0NAA=";
const MESSAGES_PATH: &str = "/v23.0/106540352242922/messages";

fn secret_for(base_url: &str) -> WhatsAppSecret {
    secret_with(json!({
        "access_token": TOKEN,
        "phone_number_id": PNID,
        "app_secret": "app-secret",
        "verify_token": "verify-token",
        "graph_api_version": "v23.0",
        "graph_base_url": base_url,
    }))
}

fn secret_with(doc: Value) -> WhatsAppSecret {
    serde_json::from_value(doc).unwrap()
}

fn client() -> GraphClient {
    crate::logs();
    GraphClient::new(&GraphSettings::default()).unwrap()
}

/// Meta's 200 answer (WA: messages reference).
fn accepted_response(message_status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+5511999990001", "wa_id": "5511999990001"}],
        "messages": [{"id": WAMID, "message_status": message_status}]
    }))
}

/// The Graph body for an app's send request, through the real parser.
fn graph_body(app_request: &Value) -> Value {
    let request = SendRequest::parse(app_request)
        .unwrap_or_else(|e| panic!("the app request was refused: {e:?}\n{app_request:#}"));
    match request.message {
        OutboundMessage::Whatsapp(m) => m.graph_body(CALLBACK),
        OutboundMessage::Email(_) => panic!("not a WhatsApp message"),
    }
}

/// Parses `app_request` as Carteiro's send API would, sends it through [`GraphClient`] to a
/// mock that only answers the exact request Meta documents, and checks it was accepted.
async fn assert_sends_exactly(app_request: Value, expected: Value) {
    let body = graph_body(&app_request);
    assert_eq!(
        body, expected,
        "graph_body differs from Meta's documented body"
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(accepted_response("accepted"))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client().send(&secret_for(&server.uri()), &body).await;
    if outcome
        != (SendOutcome::Accepted {
            provider_message_id: WAMID.to_owned(),
            message_status: Some("accepted".to_owned()),
            response: None,
        })
    {
        let received: Vec<String> = server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                format!(
                    "{} {}\n{:?}\n{}",
                    r.method,
                    r.url,
                    r.headers,
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect();
        panic!("not accepted: {outcome:?}\nreceived: {received:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Every message kind: the exact body of Meta's documentation.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn text_with_preview_url() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "text": {"body": "Olá! Veja https://example.com/pedido/42", "preview_url": true}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "text",
            "text": {"preview_url": true, "body": "Olá! Veja https://example.com/pedido/42"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn text_without_preview_url_sends_false() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "text",
            "text": {"preview_url": false, "body": "Olá"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn template_with_header_image_named_body_params_and_quick_reply() {
    let components = json!([
        {"type": "header", "parameters": [
            {"type": "image", "image": {"link": "https://example.com/banner.png"}}
        ]},
        {"type": "body", "parameters": [
            {"type": "text", "parameter_name": "customer_name", "text": "Ana"},
            {"type": "text", "parameter_name": "order_id", "text": "9128312831"}
        ]},
        {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [
            {"type": "payload", "payload": "TRACK_ORDER_9128312831"}
        ]}
    ]);
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "template": {"name": "order_update", "language": "pt_BR", "components": components}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"code": "pt_BR"},
                "components": components
            },
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn template_with_meta_language_object_and_positional_currency_and_date() {
    let components = json!([
        {"type": "body", "parameters": [
            {"type": "text", "text": "Ana"},
            {"type": "currency", "currency": {"fallback_value": "R$100,99", "code": "BRL", "amount_1000": 100990}},
            {"type": "date_time", "date_time": {"fallback_value": "25 de fevereiro de 2026"}}
        ]}
    ]);
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "template": {"name": "payment_due", "language": {"code": "en_US"}, "components": components}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "template",
            "template": {
                "name": "payment_due",
                "language": {"code": "en_US"},
                "components": components
            },
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn template_without_components_omits_them() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "template": {"name": "hello_world", "language": "en_US"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn image_by_link_with_caption() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "image": {"link": "https://example.com/nota.jpg", "caption": "Sua nota fiscal"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "image",
            "image": {"link": "https://example.com/nota.jpg", "caption": "Sua nota fiscal"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn image_by_id() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001", "image": {"id": "1479537139650973"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "image",
            "image": {"id": "1479537139650973"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn document_with_filename_and_caption() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "document": {"link": "https://example.com/boleto.pdf", "filename": "boleto-42.pdf",
                            "caption": "Boleto de março"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "document",
            "document": {"link": "https://example.com/boleto.pdf", "caption": "Boleto de março",
                         "filename": "boleto-42.pdf"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn audio_by_link() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "audio": {"link": "https://example.com/aviso.ogg"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "audio",
            "audio": {"link": "https://example.com/aviso.ogg"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn video_by_id_with_caption() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "video": {"id": "1166846181421424", "caption": "Como montar"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "video",
            "video": {"id": "1166846181421424", "caption": "Como montar"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn sticker_by_id() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001", "sticker": {"id": "798882015472548"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "sticker",
            "sticker": {"id": "798882015472548"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn reaction_and_its_removal() {
    for emoji in ["👍", ""] {
        assert_sends_exactly(
            json!({"channel": "whatsapp", "to": "+5511999990001",
                   "reaction": {"message_id": "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQUZCMTY0MDc2MUYwNzBDNTY5MAA=", "emoji": emoji}}),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5511999990001",
                "type": "reaction",
                "reaction": {"message_id": "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQUZCMTY0MDc2MUYwNzBDNTY5MAA=", "emoji": emoji},
                "biz_opaque_callback_data": CALLBACK
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn location_with_name_and_address() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "location": {"latitude": -23.5613, "longitude": -46.6565, "name": "Loja Paulista",
                            "address": "Av. Paulista, 1000, São Paulo"}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "location",
            "location": {"latitude": -23.5613, "longitude": -46.6565, "name": "Loja Paulista",
                         "address": "Av. Paulista, 1000, São Paulo"},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn contacts_card() {
    let card = json!({
        "name": {"formatted_name": "Central de Atendimento", "first_name": "Central"},
        "phones": [{"phone": "+55 11 4000-0000", "type": "WORK"}],
        "emails": [{"email": "atendimento@example.com", "type": "WORK"}]
    });
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001", "contacts": [card.clone()]}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "contacts",
            "contacts": [card],
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn interactive_reply_buttons() {
    let interactive = json!({
        "type": "button",
        "header": {"type": "text", "text": "Pedido 42"},
        "body": {"text": "Confirma a entrega amanhã?"},
        "footer": {"text": "Loja Exemplo"},
        "action": {"buttons": [
            {"type": "reply", "reply": {"id": "confirm-42", "title": "Confirmar"}},
            {"type": "reply", "reply": {"id": "reschedule-42", "title": "Remarcar"}}
        ]}
    });
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001", "interactive": interactive}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "interactive",
            "interactive": interactive,
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn interactive_list() {
    let interactive = json!({
        "type": "list",
        "header": {"type": "text", "text": "Horários"},
        "body": {"text": "Escolha um horário para a entrega"},
        "footer": {"text": "Loja Exemplo"},
        "action": {
            "button": "Ver horários",
            "sections": [
                {"title": "Manhã", "rows": [
                    {"id": "slot-09", "title": "09:00", "description": "Entre 9h e 10h"},
                    {"id": "slot-11", "title": "11:00"}
                ]},
                {"title": "Tarde", "rows": [
                    {"id": "slot-15", "title": "15:00", "description": "Entre 15h e 16h"}
                ]}
            ]
        }
    });
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001", "interactive": interactive}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "interactive",
            "interactive": interactive,
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn reply_carries_context_message_id() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Respondendo"},
               "context": {"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "text",
            "text": {"preview_url": false, "body": "Respondendo"},
            "context": {"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

#[tokio::test]
async fn reply_with_media() {
    assert_sends_exactly(
        json!({"channel": "whatsapp", "to": "+5511999990001",
               "image": {"id": "1479537139650973", "caption": "Aqui está"},
               "context": {"message_id": "wamid.ABC="}}),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990001",
            "type": "image",
            "image": {"id": "1479537139650973", "caption": "Aqui está"},
            "context": {"message_id": "wamid.ABC="},
            "biz_opaque_callback_data": CALLBACK
        }),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Request plumbing.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn request_has_user_agent_and_follows_configured_version_and_base_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v24.0/106540352242922/messages"))
        .respond_with(accepted_response("accepted"))
        .expect(1)
        .mount(&server)
        .await;
    let mut doc = json!({
        "access_token": TOKEN, "phone_number_id": PNID, "app_secret": "a", "verify_token": "v",
        "graph_api_version": "v24.0"
    });
    doc["graph_base_url"] = json!(format!("{}/", server.uri()));
    let outcome = client()
        .send(&secret_with(doc), &json!({"messaging_product": "whatsapp"}))
        .await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    let requests = server.received_requests().await.unwrap();
    let ua = requests[0]
        .headers
        .get("user-agent")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(ua, format!("carteiro/{}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn missing_access_token_is_not_configured_and_sends_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted_response("accepted"))
        .expect(0)
        .mount(&server)
        .await;
    for doc in [
        json!({"phone_number_id": PNID, "app_secret": "a", "verify_token": "v", "graph_base_url": server.uri()}),
        json!({"access_token": "  ", "phone_number_id": PNID, "app_secret": "a", "verify_token": "v", "graph_base_url": server.uri()}),
        json!({"access_token": TOKEN, "app_secret": "a", "verify_token": "v", "graph_base_url": server.uri()}),
        json!({"access_token": TOKEN, "phone_number_id": "1/../x?y", "app_secret": "a", "verify_token": "v", "graph_base_url": server.uri()}),
    ] {
        let outcome = client().send(&secret_with(doc.clone()), &json!({})).await;
        let SendOutcome::Failed(failure) = outcome else {
            panic!("{doc}: expected not_configured, got {outcome:?}");
        };
        assert_eq!(failure.class, FailureClass::Permanent, "{doc}");
        assert_eq!(failure.error.code, "not_configured", "{doc}");
        assert_eq!(failure.error.source, "carteiro", "{doc}");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(path(MESSAGES_PATH))
        .respond_with(ResponseTemplate::new(307).insert_header("location", "/elsewhere"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(accepted_response("accepted"))
        .expect(0)
        .mount(&server)
        .await;
    let failure = failed(client().send(&secret_for(&server.uri()), &json!({})).await);
    assert_eq!(failure.class, FailureClass::Permanent);
    assert_eq!(failure.error.code, "http_307");
}

#[test]
fn settings_come_from_the_environment() {
    let none = |_: &str| None;
    assert_eq!(
        GraphSettings::from_env(Env::new(&none)).unwrap(),
        GraphSettings::default()
    );
    assert_eq!(
        GraphSettings::default().connect_timeout,
        Duration::from_secs(3)
    );
    assert_eq!(
        GraphSettings::default().request_timeout,
        Duration::from_secs(10)
    );

    let set = |k: &str| match k {
        "CARTEIRO_GRAPH_CONNECT_TIMEOUT_MS" => Some("1500".to_owned()),
        "CARTEIRO_GRAPH_TIMEOUT_MS" => Some("4000".to_owned()),
        _ => None,
    };
    let s = GraphSettings::from_env(Env::new(&set)).unwrap();
    assert_eq!(s.connect_timeout, Duration::from_millis(1500));
    assert_eq!(s.request_timeout, Duration::from_millis(4000));

    let zero = |k: &str| (k == "CARTEIRO_GRAPH_TIMEOUT_MS").then(|| "0".to_owned());
    assert!(GraphSettings::from_env(Env::new(&zero)).is_err());
    let junk = |k: &str| (k == "CARTEIRO_GRAPH_CONNECT_TIMEOUT_MS").then(|| "3s".to_owned());
    assert!(GraphSettings::from_env(Env::new(&junk)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Classification: every error fixture, then the whole table of REFERENCE §1.6.
// ---------------------------------------------------------------------------------------------

/// Each error fixture with the class the table gives it. Bare error objects (`error_object_*`,
/// as found in webhooks' `errors[]`) are parsed directly; the rest through `parse_error_body`.
const ERROR_FIXTURES: &[(&str, FailureClass)] = &[
    (
        "error_100_invalid_parameter_text_mandatory__frappe_whatsapp_issue43.json",
        FailureClass::Permanent,
    ),
    (
        "error_100_subcode33_unsupported_post_request__whatsapp-cloud-api-rs_issue3.json",
        FailureClass::Permanent,
    ),
    (
        "error_131030_recipient_not_in_allowed_list__heyoo_issue40.json",
        FailureClass::Permanent,
    ),
    // Carries a top-level `"code":500` next to `error`: only `error.code` counts.
    (
        "error_131030_recipient_not_in_allowed_list__piusalfred_decoder_test.json",
        FailureClass::Permanent,
    ),
    (
        "error_132001_template_not_in_translation__tawn33y_issue57.json",
        FailureClass::Permanent,
    ),
    (
        "error_190_access_token_expired__chatwoot_issue9708.json",
        FailureClass::Token,
    ),
    (
        "error_object_131047_reengagement__pywa_test_errors.json",
        FailureClass::Permanent,
    ),
    // details: "... failed with http code 429, status message Too Many Requests": host busy.
    (
        "error_object_131053_media_upload__pywa_test_errors.json",
        FailureClass::Retryable,
    ),
    (
        "error_object_190_expired_token__pywa_test_errors.json",
        FailureClass::Token,
    ),
    (
        "meta_doc_error_100_mm_api_must_be_template.json",
        FailureClass::Permanent,
    ),
    (
        "meta_doc_error_130429_rate_limit_hit.json",
        FailureClass::Throttled,
    ),
];

fn fixture_error(name: &str) -> MetaError {
    let bytes = fixture(name);
    if name.starts_with("error_object_") {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
    } else {
        parse_error_body(&bytes).unwrap_or_else(|| panic!("{name}: no {{\"error\":{{...}}}}"))
    }
}

#[test]
fn every_error_fixture_is_listed() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(whatsapp_fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("error_") || n.starts_with("meta_doc_error_"))
        .collect();
    let listed: BTreeSet<String> = ERROR_FIXTURES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn every_error_fixture_is_classified_by_its_code_not_the_http_status() {
    for (name, expected) in ERROR_FIXTURES {
        let error = fixture_error(name);
        let classes: Vec<FailureClass> = [400, 401, 403, 404, 429, 500, 503]
            .into_iter()
            .map(|status| classify(status, Some(&error)))
            .collect();
        assert!(
            classes.iter().all(|c| c == expected),
            "{name} (code {}): expected {expected:?} at every status, got {classes:?}",
            error.code
        );
    }
}

fn meta_error(code: i64, details: Option<&str>) -> MetaError {
    let mut v = json!({"code": code, "message": format!("(#{code}) test")});
    if let Some(d) = details {
        v["error_data"] = json!({"messaging_product": "whatsapp", "details": d});
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn the_whole_reference_table() {
    use FailureClass::{PairLimited, Permanent, Retryable, Throttled, Token};
    let table: &[(i64, FailureClass)] = &[
        (0, Token),
        (1, Retryable),
        (2, Retryable),
        (3, Permanent),
        (4, Throttled),
        (10, Permanent),
        (33, Permanent),
        (100, Permanent),
        (190, Token),
        (200, Permanent),
        (250, Permanent),
        (299, Permanent),
        (368, Permanent),
        (470, Permanent),
        (80007, Throttled),
        (130_403, Permanent),
        (130_429, Throttled),
        (130_472, Permanent),
        (130_497, Permanent),
        (131_000, Retryable),
        (131_005, Permanent),
        (131_008, Permanent),
        (131_009, Permanent),
        (131_016, Retryable),
        (131_021, Permanent),
        (131_026, Permanent),
        (131_030, Permanent),
        (131_031, Permanent),
        (131_037, Permanent),
        (131_042, Permanent),
        (131_045, Permanent),
        (131_047, Permanent),
        (131_048, Permanent),
        (131_049, Permanent),
        (131_050, Permanent),
        (131_051, Permanent),
        (131_052, Permanent),
        (131_053, Permanent),
        (131_056, PairLimited),
        (131_057, Retryable),
        (131_064, Permanent),
        (132_000, Permanent),
        (132_001, Permanent),
        (132_005, Permanent),
        (132_007, Permanent),
        (132_012, Permanent),
        (132_015, Permanent),
        (132_016, Permanent),
        (132_068, Permanent),
        (132_069, Throttled),
        (133_000, Permanent),
        (133_004, Retryable),
        (133_010, Permanent),
        (133_016, Throttled),
        (135_000, Permanent),
    ];
    for &(code, expected) in table {
        let error = meta_error(code, None);
        // Known codes win over the status, even a 5xx or a 429.
        for status in [400, 401, 403, 404, 429, 500, 503] {
            assert_eq!(
                classify(status, Some(&error)),
                expected,
                "code {code} at HTTP {status}"
            );
        }
    }
}

#[test]
fn media_error_131053_is_retryable_only_for_a_busy_host() {
    let cases = [
        (
            "Downloading media from weblink failed with http code 429, status message Too Many Requests",
            FailureClass::Retryable,
        ),
        (
            "Downloading media from weblink failed with http code 503, status message Service Unavailable",
            FailureClass::Retryable,
        ),
        (
            "Downloading media from weblink failed with http code 500",
            FailureClass::Retryable,
        ),
        (
            "Downloading media from weblink failed with http code 404, status message Not Found",
            FailureClass::Permanent,
        ),
        ("Media upload error", FailureClass::Permanent),
    ];
    for (details, expected) in cases {
        assert_eq!(
            classify(400, Some(&meta_error(131_053, Some(details)))),
            expected,
            "{details}"
        );
    }
}

#[test]
fn unknown_codes_and_missing_bodies_fall_back_on_the_status() {
    let unknown = meta_error(134_100, None);
    assert_eq!(classify(400, Some(&unknown)), FailureClass::Permanent);
    assert_eq!(classify(404, Some(&unknown)), FailureClass::Permanent);
    assert_eq!(classify(429, Some(&unknown)), FailureClass::Throttled);
    assert_eq!(classify(500, Some(&unknown)), FailureClass::Retryable);
    assert_eq!(classify(503, Some(&unknown)), FailureClass::Retryable);
    assert_eq!(classify(502, None), FailureClass::Retryable);
    assert_eq!(classify(429, None), FailureClass::Throttled);
    assert_eq!(classify(400, None), FailureClass::Permanent);
    assert_eq!(classify(401, None), FailureClass::Permanent);
}

#[test]
fn non_meta_bodies_do_not_parse_as_errors() {
    assert!(parse_error_body(b"<html><body>502 Bad Gateway</body></html>").is_none());
    assert!(parse_error_body(b"").is_none());
    assert!(parse_error_body(br#"{"error":"nope"}"#).is_none());
    assert!(
        parse_error_body(&fixture(
            "error_object_190_expired_token__pywa_test_errors.json"
        ))
        .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// One outcome per class, over HTTP.
// ---------------------------------------------------------------------------------------------

fn failed(outcome: SendOutcome) -> SendFailure {
    match outcome {
        SendOutcome::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

async fn send_against(response: ResponseTemplate) -> SendOutcome {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    client()
        .send(
            &secret_for(&server.uri()),
            &json!({"messaging_product": "whatsapp"}),
        )
        .await
}

#[tokio::test]
async fn throughput_limit_130429_is_throttled() {
    let response = ResponseTemplate::new(400).set_body_raw(
        fixture("meta_doc_error_130429_rate_limit_hit.json"),
        "application/json",
    );
    let f = failed(send_against(response).await);
    assert_eq!(f.class, FailureClass::Throttled);
    assert_eq!(f.error.code, "130429");
    assert_eq!(f.error.source, "whatsapp");
    assert_eq!(
        f.error.details.as_deref(),
        Some("Cloud API message throughput has been reached.")
    );
}

#[tokio::test]
async fn pair_limit_131056_is_pair_limited() {
    let response = ResponseTemplate::new(400).set_body_json(json!({"error": {
        "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "type": "OAuthException",
        "code": 131056,
        "error_data": {"messaging_product": "whatsapp",
                       "details": "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."},
        "fbtrace_id": "AbCdEf"
    }}));
    let f = failed(send_against(response).await);
    assert_eq!(f.class, FailureClass::PairLimited);
    assert_eq!(f.error.code, "131056");
}

#[tokio::test]
async fn expired_token_190_is_token_and_never_shows_the_token() {
    let response = ResponseTemplate::new(401)
        .insert_header(
            "www-authenticate",
            "OAuth \"Facebook Platform\" \"invalid_token\"",
        )
        .set_body_raw(
            fixture("error_190_access_token_expired__chatwoot_issue9708.json"),
            "application/json",
        );
    let f = failed(send_against(response).await);
    assert_eq!(f.class, FailureClass::Token);
    assert_eq!(f.error.code, "190");
    assert!(!format!("{f:?}").contains(TOKEN));
}

#[tokio::test]
async fn template_missing_132001_is_permanent_with_metas_reason() {
    let response = ResponseTemplate::new(404).set_body_raw(
        fixture("error_132001_template_not_in_translation__tawn33y_issue57.json"),
        "application/json",
    );
    let f = failed(send_against(response).await);
    assert_eq!(f.class, FailureClass::Permanent);
    assert_eq!(
        f.error,
        DeliveryError {
            source: "whatsapp".to_owned(),
            code: "132001".to_owned(),
            message: "(#132001) Template name does not exist in the translation".to_owned(),
            details: Some("template name (cg_quest_text) does not exist in en_US".to_owned()),
        }
    );
    assert_eq!(f.retry_after, None);
}

#[tokio::test]
async fn html_500_from_a_proxy_is_retryable() {
    let response = ResponseTemplate::new(500).set_body_raw(
        "<html>\n<head><title>500 Internal Server Error</title></head>\n<body>upstream failed</body></html>",
        "text/html",
    );
    let f = failed(send_against(response).await);
    assert_eq!(f.class, FailureClass::Retryable);
    assert_eq!(f.error.code, "http_500");
    assert_eq!(f.error.source, "whatsapp");
    assert!(
        f.error
            .details
            .as_deref()
            .unwrap_or_default()
            .contains("500 Internal Server Error")
    );
}

#[tokio::test]
async fn retry_after_on_503_is_kept() {
    let f =
        failed(send_against(ResponseTemplate::new(503).insert_header("retry-after", "7")).await);
    assert_eq!(f.class, FailureClass::Retryable);
    assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn http_429_without_a_body_is_throttled() {
    let f =
        failed(send_against(ResponseTemplate::new(429).insert_header("retry-after", "30")).await);
    assert_eq!(f.class, FailureClass::Throttled);
    assert_eq!(f.retry_after, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_server_slower_than_the_request_timeout_is_an_unknown_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted_response("accepted").set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let client = GraphClient::new(&GraphSettings {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(200),
    })
    .unwrap();
    let started = std::time::Instant::now();
    let f = failed(client.send(&secret_for(&server.uri()), &json!({})).await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The request was written: Meta may have the message, so it is not blindly retryable.
    assert_eq!(f.class, FailureClass::Unknown);
    assert_eq!(f.error.code, "timeout");
    assert_eq!(f.error.source, "carteiro");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // Bind then release a port on 127.0.0.1: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = failed(
        client()
            .send(&secret_for(&format!("http://127.0.0.1:{port}")), &json!({}))
            .await,
    );
    assert_eq!(f.class, FailureClass::Retryable);
    assert_eq!(f.error.code, "connect_error");
}

#[tokio::test]
async fn held_for_quality_assessment_is_accepted_with_that_status() {
    let outcome = send_against(accepted_response("held_for_quality_assessment")).await;
    assert_eq!(
        outcome,
        SendOutcome::Accepted {
            provider_message_id: WAMID.to_owned(),
            message_status: Some("held_for_quality_assessment".to_owned()),
            response: None,
        }
    );
}

#[tokio::test]
async fn ok_without_a_message_id_is_not_retried() {
    for body in [
        json!({"messaging_product": "whatsapp", "messages": []}),
        json!({"success": true}),
    ] {
        let f = failed(send_against(ResponseTemplate::new(200).set_body_json(&body)).await);
        assert_eq!(f.class, FailureClass::Permanent, "{body}");
        assert_eq!(f.error.code, "unexpected_response", "{body}");
    }
    let f = failed(send_against(ResponseTemplate::new(200).set_body_string("OK")).await);
    assert_eq!(f.error.code, "unexpected_response");
}

// ---------------------------------------------------------------------------------------------
// Logging: Meta's headers at debug, never the token.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn meta_headers_are_logged_at_debug_and_the_token_never_is() {
    let captured = crate::logs();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("x-fb-trace-id", "Fz3trace")
                .insert_header("x-fb-request-id", "Ab9request")
                .insert_header(
                    "x-business-use-case-usage",
                    r#"{"102290129340398":[{"type":"whatsapp","call_count":95}]}"#,
                )
                .set_body_raw(
                    fixture("error_190_access_token_expired__chatwoot_issue9708.json"),
                    "application/json",
                ),
        )
        .mount(&server)
        .await;
    let _ = client().send(&secret_for(&server.uri()), &json!({})).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for expected in ["Fz3trace", "Ab9request", "call_count", "DEBUG"] {
        assert!(
            logs.contains(expected),
            "{expected} missing from logs:\n{logs}"
        );
    }
    assert!(!logs.contains(TOKEN), "the token reached the logs:\n{logs}");
}

// ---------------------------------------------------------------------------------------------
// Token refresh (refresh the secret once, then retry once).
// ---------------------------------------------------------------------------------------------

/// A secret source whose cached document has an old token and whose fresh read has a new one.
#[derive(Debug)]
struct RotatingSecrets {
    base_url: String,
    refreshes: AtomicUsize,
    fresh_token: &'static str,
}

#[async_trait]
impl SecretSource for RotatingSecrets {
    async fn get(&self, name: SecretName, refresh: bool) -> Result<SecretString, SecretError> {
        assert_eq!(name, SecretName::Whatsapp);
        let token = if refresh {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            self.fresh_token
        } else {
            TOKEN
        };
        let doc = json!({"access_token": token, "phone_number_id": PNID, "app_secret": "a",
                         "verify_token": "v", "graph_base_url": self.base_url});
        Ok(SecretString::from(doc.to_string()))
    }
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_send_retried() {
    let server = MockServer::start().await;
    Mock::given(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_raw(
            fixture("error_190_access_token_expired__chatwoot_issue9708.json"),
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(header("authorization", "Bearer EAAG-rotated"))
        .respond_with(accepted_response("accepted"))
        .expect(1)
        .mount(&server)
        .await;
    let source = Arc::new(RotatingSecrets {
        base_url: server.uri(),
        refreshes: AtomicUsize::new(0),
        fresh_token: "EAAG-rotated",
    });
    let secrets = Secrets::new(source.clone());
    let outcome = send_with_token_refresh(&client(), &secrets, &json!({})).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert_eq!(source.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_refused_twice_is_reported_not_retried_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_raw(
            fixture("error_190_access_token_expired__chatwoot_issue9708.json"),
            "application/json",
        ))
        .expect(2)
        .mount(&server)
        .await;
    let source = Arc::new(RotatingSecrets {
        base_url: server.uri(),
        refreshes: AtomicUsize::new(0),
        fresh_token: "EAAG-also-expired",
    });
    let secrets = Secrets::new(source.clone());
    let f = failed(send_with_token_refresh(&client(), &secrets, &json!({})).await);
    assert_eq!(f.class, FailureClass::Token);
    assert_eq!(source.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_failures_do_not_refresh_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let source = Arc::new(RotatingSecrets {
        base_url: server.uri(),
        refreshes: AtomicUsize::new(0),
        fresh_token: "unused",
    });
    let f =
        failed(send_with_token_refresh(&client(), &Secrets::new(source.clone()), &json!({})).await);
    assert_eq!(f.class, FailureClass::Retryable);
    assert_eq!(source.refreshes.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// Sandbox.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sandbox_records_the_exact_graph_body_and_accepts_it() {
    let outbox = SandboxOutbox::new();
    let sender: &dyn WhatsAppSender = &outbox;
    let secret = secret_with(json!({"app_secret": "a", "verify_token": "v"}));
    let body = graph_body(
        &json!({"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}}),
    );

    let first = sender.send(&secret, &body).await;
    let second = sender.send(&secret, &body).await;
    let ids: Vec<String> = [first, second]
        .into_iter()
        .map(|o| match o {
            SendOutcome::Accepted {
                provider_message_id,
                message_status,
                ..
            } => {
                assert_eq!(message_status.as_deref(), Some("sandbox"));
                assert!(
                    provider_message_id.starts_with("wamid.sandbox."),
                    "{provider_message_id}"
                );
                provider_message_id
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_ne!(ids[0], ids[1]);

    let messages = outbox.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].to, "5511999990001");
    assert_eq!(messages[0].body, body);
}

/// The token rule through the channel-neutral port, as dispatch applies it.
async fn send_with_token_refresh(
    client: &GraphClient,
    secrets: &Secrets,
    body: &serde_json::Value,
) -> SendOutcome {
    let provider = WhatsAppProvider::new(Arc::new(client.clone()), secrets.clone());
    let payload = carteiro_shared::domain::payload::DeliveryPayload::WhatsappGraphV1 {
        body: body.clone(),
        marketing: false,
    };
    carteiro_shared::ports::send_refreshing_credentials(
        &provider,
        &carteiro_shared::domain::ids::MessageId::generate(),
        &payload,
    )
    .await
}
