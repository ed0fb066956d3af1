//! A counting proxy in front of moto: every AWS API request the code under test makes passes
//! through it and is counted by operation (`DynamoDB PutItem`, `SQS SendMessageBatch`,
//! `SecretsManager GetSecretValue`, read from `X-Amz-Target`, or `Action=` for the query
//! protocol) before it is forwarded unchanged. What the cost figures are measured with.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Requests whose body names one of these key prefixes are counted under the prefix's label
/// instead of their operation: state written per process on a timer, not per message.
const PER_INSTANCE: &[(&str, &str)] = &[("status:calls:", "status read model flush")];

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
}

/// The proxy; dropped with the test's runtime.
#[derive(Debug)]
pub struct CountingProxy {
    pub endpoint: String,
    counts: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
}

fn operation(headers: &http::HeaderMap, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Some((_, label)) = PER_INSTANCE.iter().find(|(p, _)| text.contains(p)) {
        return (*label).to_owned();
    }
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (service, op) = target.split_once('.').unwrap_or(("?", target));
        let service = match service {
            s if s.starts_with("DynamoDB") => "DynamoDB",
            s if s.starts_with("AmazonSQS") => "SQS",
            s if s.eq_ignore_ascii_case("secretsmanager") => "SecretsManager",
            s => s,
        };
        return format!("{service} {op}");
    }
    match text.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        Some(action) => format!("SQS {action}"),
        None => "unknown".to_owned(),
    }
}

async fn forward(State(s): State<Shared>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    {
        let mut counts = s.counts.lock().unwrap();
        let entry = counts.entry(operation(&parts.headers, &body)).or_default();
        entry.0 += 1;
        entry.1 += body.len() as u64;
    }
    let url = format!(
        "{}{}",
        s.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut out = s
        .http
        .request(parts.method.clone(), url)
        .body(body.to_vec());
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let answer = out.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    let mut res = (status, bytes).into_response();
    for (name, value) in &headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            res.headers_mut().insert(name, value.clone());
        }
    }
    res
}

impl CountingProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (moto's endpoint).
    pub async fn start(upstream: &str) -> Self {
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            counts: counts.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(forward).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            counts,
        }
    }

    /// The requests since the last call, by operation, with their request bodies' total
    /// bytes; starts counting afresh.
    pub fn take(&self) -> BTreeMap<String, (u64, u64)> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }
}
