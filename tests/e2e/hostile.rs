//! Hostile requests get a precise 4xx (or a documented 200) with a JSON error body, queue
//! nothing, and never panic — through the Lambda handler on moto and the local runtime over HTTP.

use crate::intake_aws::aws_stack;
use carteiro_e2e::apigw;
use carteiro_e2e::local::spawn_app;
use carteiro_e2e::webhooks::{APP_SECRET, sign, status_payload};
use carteiro_shared::ports::Queue;
use std::time::Duration;

/// A body whose wire form differs from its re-serialisation, as Meta's does: escaped
/// non-ASCII, an escaped slash.
const ESCAPED_BODY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"2"},"contacts":[{"profile":{"name":"Jos\u00e9"},"wa_id":"5511999990001"}],"messages":[{"from":"5511999990001","id":"wamid.HOSTILE","timestamp":"1700000000","type":"text","text":{"body":"ol\u00e1 \/ \u0040"}}]}}]}]}"#;

struct Case {
    name: &'static str,
    method: &'static str,
    query: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    signature: Option<String>,
    status: u16,
    /// The error code, or for a 200 the `status` member of the answer.
    code: &'static str,
}

fn cases() -> Vec<Case> {
    let valid = status_payload("wamid.HOSTILE", "sent", 1_700_000_000, None);
    let reserialised = {
        let v: serde_json::Value = serde_json::from_str(ESCAPED_BODY).unwrap();
        let again = serde_json::to_vec(&v).unwrap();
        assert_ne!(
            again,
            ESCAPED_BODY.as_bytes(),
            "the re-serialisation must differ"
        );
        again
    };
    let truncated = valid[..valid.len() / 2].to_vec();
    let unknown_object =
        br#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[]}]}"#.to_vec();
    let empty_entries = br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec();
    let huge = {
        let mut b = br#"{"object":"whatsapp_business_account","entry":[],"pad":""#.to_vec();
        b.resize(4 * 1024 * 1024, b'a');
        b.extend_from_slice(br#""}"#);
        b
    };
    let signed = |b: &[u8]| Some(sign(APP_SECRET, b));
    let json = Some("application/json");
    vec![
        Case {
            name: "no signature",
            method: "POST",
            query: "",
            content_type: json,
            body: valid.clone(),
            signature: None,
            status: 401,
            code: "invalid_signature",
        },
        Case {
            name: "wrong secret",
            method: "POST",
            query: "",
            content_type: json,
            body: valid.clone(),
            signature: Some(sign("not-the-secret", &valid)),
            status: 401,
            code: "invalid_signature",
        },
        Case {
            name: "sha1 signature",
            method: "POST",
            query: "",
            content_type: json,
            body: valid.clone(),
            signature: Some("sha1=0123456789abcdef0123456789abcdef01234567".into()),
            status: 401,
            code: "invalid_signature",
        },
        Case {
            name: "signature over the wire bytes, body re-serialised",
            method: "POST",
            query: "",
            content_type: json,
            body: reserialised,
            signature: signed(ESCAPED_BODY.as_bytes()),
            status: 401,
            code: "invalid_signature",
        },
        Case {
            name: "truncated JSON",
            method: "POST",
            query: "",
            content_type: json,
            body: truncated.clone(),
            signature: signed(&truncated),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "wrong content type",
            method: "POST",
            query: "",
            content_type: Some("text/plain"),
            body: valid.clone(),
            signature: signed(&valid),
            status: 415,
            code: "unsupported_media_type",
        },
        Case {
            name: "4 MB body",
            method: "POST",
            query: "",
            content_type: json,
            body: huge.clone(),
            signature: signed(&huge),
            status: 413,
            code: "payload_too_large",
        },
        Case {
            name: "empty body",
            method: "POST",
            query: "",
            content_type: json,
            body: Vec::new(),
            signature: signed(b""),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "unknown object",
            method: "POST",
            query: "",
            content_type: json,
            body: unknown_object.clone(),
            signature: signed(&unknown_object),
            status: 200,
            code: "ignored",
        },
        Case {
            name: "empty entry list",
            method: "POST",
            query: "",
            content_type: json,
            body: empty_entries.clone(),
            signature: signed(&empty_entries),
            status: 200,
            code: "ok",
        },
        Case {
            name: "handshake without parameters",
            method: "GET",
            query: "",
            content_type: None,
            body: Vec::new(),
            signature: None,
            status: 400,
            code: "missing_parameter",
        },
        Case {
            name: "handshake with another mode",
            method: "GET",
            query: "hub.mode=unsubscribe&hub.verify_token=x&hub.challenge=1",
            content_type: None,
            body: Vec::new(),
            signature: None,
            status: 400,
            code: "invalid_parameter",
        },
        Case {
            name: "unsupported method",
            method: "DELETE",
            query: "",
            content_type: None,
            body: Vec::new(),
            signature: None,
            status: 405,
            code: "method_not_allowed",
        },
    ]
}

fn code_of(status: u16, body: &serde_json::Value) -> String {
    let v = if status == 200 {
        &body["status"]
    } else {
        &body["error"]["code"]
    };
    v.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn hostile_requests_through_the_lambda_handler_queue_nothing() {
    let stack = aws_stack().await;
    for case in cases() {
        let mut headers = Vec::new();
        if let Some(ct) = case.content_type {
            headers.push(("content-type", ct));
        }
        if let Some(sig) = case.signature.as_deref() {
            headers.push(("x-hub-signature-256", sig));
        }
        let req = apigw::request(
            case.method,
            "/webhooks/whatsapp",
            case.query,
            &headers,
            &case.body,
        );
        let res = carteiro_webhook_intake::handler(&stack.intake, req)
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{}: not a JSON answer",
            case.name
        );
        let body: serde_json::Value = serde_json::from_slice(res.body().as_ref()).unwrap();
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(code_of(status, &body), case.code, "{}: {body}", case.name);
        if status == 200 {
            assert_eq!(body["queued"], 0, "{}", case.name);
        }
    }
    let leaked = stack
        .queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        leaked.is_empty(),
        "hostile requests queued {} events",
        leaked.len()
    );
}

#[tokio::test]
async fn hostile_requests_over_local_http_get_the_same_answers() {
    let app = spawn_app().await;
    for case in cases() {
        let url = if case.query.is_empty() {
            app.url("/webhooks/whatsapp")
        } else {
            app.url(&format!("/webhooks/whatsapp?{}", case.query))
        };
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut req = app.http.request(method, url).body(case.body.clone());
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(sig) = case.signature.as_deref() {
            req = req.header("x-hub-signature-256", sig);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(code_of(status, &body), case.code, "{}: {body}", case.name);
    }
    // The gateway still works after all that.
    let res = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
