//! Intake cost per webhook beside its floor, measured in the same run.
//!
//! - `intake/*`: `intake::prepare` — signature check, typed parse, split into events, and
//!   serialisation of each event into its queue message: all the CPU a POST costs.
//! - `floor/*`: HMAC-SHA256 of the same bytes plus `serde_json::from_slice::<Value>`: the
//!   least any verifying, parsing intake could do.
//!
//! Run with `cargo bench -p carteiro-shared --bench intake`; docs/benchmarks.md records the
//! figures and their ratio.

use carteiro_shared::intake::{self, signature};
use carteiro_shared::secrets::WhatsAppSecret;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use sha2::Sha256;
use std::hint::black_box;

const SECRET: &str = "bench-app-secret";
const STATUSES: [&str; 3] = ["sent", "delivered", "read"];

fn text_message(body_len: usize) -> Vec<u8> {
    let text: String = "Olá, tudo bem? ".chars().cycle().take(body_len).collect();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ana Souza"}, "wa_id": "5511999990001"}],
            "messages": [{"from": "5511999990001", "id": "wamid.HBgNNTUxMTk5OTk5MDAwMRUCABIYFjNFQjBDMkY0QjhBNzg0QkQ1QzdGAA==",
                          "timestamp": "1730231903", "type": "text", "text": {"body": text}}]
        }}]}]
    }))
    .unwrap_or_default()
}

fn status_batch(n: usize) -> Vec<u8> {
    let statuses: Vec<_> = (0..n)
        .map(|i| json!({
            "id": format!("wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5{i:04}A"),
            "status": STATUSES[i % 3],
            "timestamp": "1674568442",
            "recipient_id": "16315551234",
            "biz_opaque_callback_data": "msg_0190f0c2a0f47c1e9c7e6d4a8b2f1e3d",
            "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"}
        }))
        .collect();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": statuses
        }}]}]
    }))
    .unwrap_or_default()
}

fn floor(secret: &[u8], body: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let value: Result<serde_json::Value, _> = serde_json::from_slice(body);
    black_box(tag);
    value.is_ok()
}

fn bench(c: &mut Criterion) {
    let secret: WhatsAppSecret = match serde_json::from_value(json!({
        "app_secret": SECRET, "verify_token": "t"
    })) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench secret: {e}");
            return;
        }
    };
    let payloads = [
        ("1KB", text_message(700)),
        ("10KB", text_message(9_700)),
        ("100_statuses", status_batch(100)),
    ];
    let mut group = c.benchmark_group("intake");
    for (name, body) in &payloads {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&signature::sign(SECRET.as_bytes(), body)) {
            headers.insert(signature::HEADER, v);
        }
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("prepare", name), body, |b, body| {
            b.iter(|| intake::prepare(&headers, black_box(body), &secret, Some("bench")))
        });
        group.bench_with_input(BenchmarkId::new("floor", name), body, |b, body| {
            b.iter(|| floor(SECRET.as_bytes(), black_box(body)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
