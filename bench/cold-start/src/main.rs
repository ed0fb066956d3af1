//! Cold-start benchmark for the Lambda binaries.
//!
//! ```text
//! cold-start [--runs N] BIN_DIR
//! ```
//!
//! Serves the Lambda Runtime API on a loopback port and, for each function binary in BIN_DIR
//! (and `hello-lambda`, the floor), N times: spawns it as Lambda would, with a cleared
//! environment; times **init** (spawn → its first `GET …/invocation/next`) and the **first
//! response** (spawn → the `POST …/response` of its first invocation); then kills it. The same
//! port answers the AWS calls those first invocations make (Secrets Manager reads, DynamoDB
//! reads and the sweeper's queries, all empty), so the figures include building the SDK
//! clients and the first signed request, but no emulator's own latency. Prints min, median and
//! max per binary, each one's size on disk, and the ratio to the floor. A run whose function
//! answers with an error, or does not answer within 10 s, fails the benchmark.
//!
//! The events are the repo's samples in `events/` (see events/README.md).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Each binary, the sample event its first invocation gets, and what it must answer.
const FUNCTIONS: [(&str, &str); 6] = [
    ("hello-lambda", ""),
    (
        "carteiro-webhook-intake",
        "webhook-intake-get-handshake.json",
    ),
    ("carteiro-send-api", "send-api-get-message.json"),
    ("carteiro-inbound-events", "inbound-events-sqs-batch.json"),
    ("carteiro-dispatch", "dispatch-sqs-batch.json"),
    ("carteiro-retry-sweeper", ""),
];

const SECRETS: [(&str, &str); 3] = [
    (
        "carteiro/whatsapp",
        r#"{"app_secret":"carteiro-test-app-secret","verify_token":"carteiro-test-verify-token","access_token":"test-access-token","phone_number_id":"1122334455667"}"#,
    ),
    (
        "carteiro/api-keys",
        r#"{"keys":[{"id":"app-1","key":"carteiro-test-api-key"}]}"#,
    ),
    (
        "carteiro/smtp",
        r#"{"smtp_host":"127.0.0.1","smtp_port":2525,"from_email":"loja@example.com","use_ssl":false}"#,
    ),
];

/// One spawn's timeline.
#[derive(Debug, Default)]
struct Run {
    event: Bytes,
    first_poll: Option<Instant>,
    answered: Option<(Instant, bool, Bytes)>,
}

#[derive(Debug, Default)]
struct Harness {
    run: Mutex<Run>,
    done: Notify,
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

async fn next(State(h): State<Arc<Harness>>) -> Response {
    let event = {
        let Ok(mut run) = h.run.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        if run.first_poll.is_some() {
            None
        } else {
            run.first_poll = Some(Instant::now());
            Some(run.event.clone())
        }
    };
    let Some(event) = event else {
        // The second poll: the function is idle, as between invocations. It is killed.
        std::future::pending::<()>().await;
        return StatusCode::GONE.into_response();
    };
    let deadline = (epoch_ms() + 60_000).to_string();
    (
        [
            ("lambda-runtime-aws-request-id", "cold-start-1".to_owned()),
            ("lambda-runtime-deadline-ms", deadline),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:cold-start".to_owned(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0".to_owned(),
            ),
            ("content-type", "application/json".to_owned()),
        ],
        event,
    )
        .into_response()
}

fn finish(h: &Harness, ok: bool, body: Bytes) -> StatusCode {
    if let Ok(mut run) = h.run.lock()
        && run.answered.is_none()
    {
        run.answered = Some((Instant::now(), ok, body));
    }
    h.done.notify_one();
    StatusCode::ACCEPTED
}

async fn response(
    State(h): State<Arc<Harness>>,
    Path(_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(&h, true, body)
}

async fn error(State(h): State<Arc<Harness>>, Path(_id): Path<String>, body: Bytes) -> StatusCode {
    finish(&h, false, body)
}

async fn init_error(State(h): State<Arc<Harness>>, body: Bytes) -> StatusCode {
    finish(&h, false, body)
}

/// The AWS JSON-protocol calls a first invocation makes, answered by `X-Amz-Target`.
async fn aws(headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (content_type, answer) = if let Some(op) = target.strip_prefix("secretsmanager.") {
        let name = request["SecretId"].as_str().unwrap_or_default();
        let Some((_, value)) = SECRETS.iter().find(|(n, _)| *n == name) else {
            let missing =
                json!({"__type": "ResourceNotFoundException", "message": "no such secret"});
            return (StatusCode::BAD_REQUEST, axum::Json(missing)).into_response();
        };
        let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}");
        let answer = if op == "DescribeSecret" {
            json!({"ARN": arn, "Name": name, "VersionIdsToStages": {"v1": ["AWSCURRENT"]}})
        } else {
            json!({"ARN": arn, "Name": name, "SecretString": value, "VersionId": "v1",
                   "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9})
        };
        ("application/x-amz-json-1.1", answer)
    } else if target.ends_with(".Query") {
        (
            "application/x-amz-json-1.0",
            json!({"Items": [], "Count": 0, "ScannedCount": 0}),
        )
    } else {
        // DynamoDB GetItem (no such item), PutItem and UpdateItem: nothing to say.
        ("application/x-amz-json-1.0", json!({}))
    };
    ([("content-type", content_type)], answer.to_string()).into_response()
}

#[derive(Debug)]
struct Sample {
    init: Duration,
    first_response: Duration,
}

async fn measure(
    h: &Harness,
    binary: &std::path::Path,
    event: Bytes,
    api: &str,
) -> Result<Sample, BoxError> {
    {
        let mut run = h.run.lock().map_err(|_| "lock poisoned")?;
        *run = Run {
            event,
            ..Run::default()
        };
    }
    let queue = |name: &str| format!("http://{api}/123456789012/{name}");
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "cold-start")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/cold-start")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDCOLDSTART")
        .env("AWS_SECRET_ACCESS_KEY", "cold-start-secret")
        .env("AWS_SESSION_TOKEN", "cold-start-token")
        .env("AWS_ENDPOINT_URL", format!("http://{api}"))
        .env("CARTEIRO_TABLE_NAME", "carteiro")
        .env("CARTEIRO_INBOUND_QUEUE_URL", queue("inbound"))
        .env("CARTEIRO_OUTBOUND_QUEUE_URL", queue("outbound"))
        .env("CARTEIRO_WHATSAPP_SECRET_ID", SECRETS[0].0)
        .env("CARTEIRO_API_KEYS_SECRET_ID", SECRETS[1].0)
        .env("CARTEIRO_SMTP_SECRET_ID", SECRETS[2].0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = command.spawn()?;
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let notified = h.done.notified();
            if h.run
                .lock()
                .map_err(|_| "lock poisoned")?
                .answered
                .is_some()
            {
                return Ok::<_, BoxError>(());
            }
            notified.await;
        }
    })
    .await;
    child.kill().await?;
    waited.map_err(|_| format!("{} did not answer within 10 s", binary.display()))??;
    let run = h.run.lock().map_err(|_| "lock poisoned")?;
    let (Some(first_poll), Some((answered, ok, body))) = (run.first_poll, &run.answered) else {
        return Err(format!("{}: init failed", binary.display()).into());
    };
    if !ok {
        return Err(format!(
            "{} answered with an error: {}",
            binary.display(),
            String::from_utf8_lossy(body)
        )
        .into());
    }
    Ok(Sample {
        init: first_poll - spawned,
        first_response: *answered - spawned,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (min, median, max) in milliseconds.
fn spread(mut values: Vec<Duration>) -> (f64, f64, f64) {
    values.sort();
    let pick = |i: usize| values.get(i).copied().map_or(f64::NAN, ms);
    (
        pick(0),
        pick(values.len() / 2),
        pick(values.len().saturating_sub(1)),
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mut runs = 20usize;
    let mut dir = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().ok_or("--runs needs a number")?.parse()?,
            "-h" | "--help" => {
                println!("usage: cold-start [--runs N] BIN_DIR");
                return Ok(());
            }
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.ok_or("usage: cold-start [--runs N] BIN_DIR")?;
    let events = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events");

    let harness = Arc::new(Harness::default());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .fallback(aws)
        .with_state(harness.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!("{runs} cold starts each; milliseconds as min / median / max");
    println!(
        "{:<26} {:>22} {:>22} {:>10} {:>8}",
        "binary", "init", "first response", "size MB", "init ×"
    );
    let mut floor = None;
    for (name, event_file) in FUNCTIONS {
        let binary = dir.join(name);
        let size = std::fs::metadata(&binary)
            .map_err(|e| {
                format!(
                    "{}: {e} (build it first: scripts/cold-start)",
                    binary.display()
                )
            })?
            .len();
        let event = if event_file.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            Bytes::from(std::fs::read(events.join(event_file))?)
        };
        // One unmeasured run first, so every measured one finds the binary in the page cache.
        measure(&harness, &binary, event.clone(), &api).await?;
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            samples.push(measure(&harness, &binary, event.clone(), &api).await?);
        }
        let init = spread(samples.iter().map(|s| s.init).collect());
        let first = spread(samples.iter().map(|s| s.first_response).collect());
        let floor_init = *floor.get_or_insert(init.1);
        println!(
            "{name:<26} {:>6.1} /{:>6.1} /{:>6.1} {:>6.1} /{:>6.1} /{:>6.1} {:>10.1} {:>7.1}×",
            init.0,
            init.1,
            init.2,
            first.0,
            first.1,
            first.2,
            size as f64 / 1e6,
            init.1 / floor_init
        );
    }
    Ok(())
}
