//! API Gateway HTTP API (payload format 2.0) events, as Lambda receives them, parsed by
//! `lambda_http` exactly as in production.

use base64::Engine;
use serde_json::json;

/// Builds the event JSON for a request and parses it with `lambda_http`.
pub fn request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> lambda_http::Request {
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), json!(v)))
        .collect();
    // API Gateway base64-encodes bodies it does not consider text; do the same for binary.
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (json!(text), false),
        Err(_) => (
            json!(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    };
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "id.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "id",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "173.252.0.1",
                "userAgent": "facebookexternalua"
            },
            "requestId": format!("req-{}", uuid::Uuid::now_v7().simple()),
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "29/Nov/2026:04:00:00 +0000",
            "timeEpoch": 1_795_917_600_000_i64
        },
        "body": body,
        "isBase64Encoded": encoded
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The SQS event Lambda's event source mapping builds for a received batch.
pub fn sqs_event(
    batch: &[carteiro_shared::ports::ReceivedMessage],
) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    for m in batch {
        let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
        record.message_id = Some(m.message_id.clone());
        record.receipt_handle = Some(m.receipt_handle.clone());
        record.body = Some(m.body.clone());
        event.records.push(record);
    }
    event
}
