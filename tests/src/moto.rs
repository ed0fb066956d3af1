//! One moto server per test process, for the AWS adapters' tests.
//!
//! [`moto()`] starts the server on first use and hands out the same instance afterwards. The
//! executable is `$CARTEIRO_MOTO_SERVER` when set, else `<repo>/.venv/bin/moto_server` (which
//! `scripts/test` creates); if neither exists the first caller panics saying so — these tests
//! are never skipped. The server listens on 127.0.0.1 on a port found by binding port 0, and
//! tests talk to nothing else.
//!
//! **Lifetime.** Rust never drops statics, so the server is tied to the test process through
//! a pipe instead: it runs under a small `sh` wrapper whose background `cat` reads the pipe
//! whose write end only this process holds. When the test process exits — normally, by panic
//! or by a signal — the kernel closes that end, `cat` sees end-of-file and the wrapper kills
//! the server. No `libc`, no `prctl`, no pid polling.
//!
//! Every helper creates uniquely named resources (uuid suffix), so tests running in parallel
//! against the one server never see each other's queues, tables or secrets.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use carteiro_shared::adapters::aws::schema;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Names the moto executable.
pub const MOTO_SERVER_ENV: &str = "CARTEIRO_MOTO_SERVER";

/// How long moto may take to answer its first request (a cold Python import on a busy CI
/// machine takes several seconds).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the server (`"$@"`) and kills it once stdin reaches end-of-file, i.e. once the test
/// process, the only holder of the pipe's write end, is gone. The wrapper exits when the
/// server does, so an early crash is visible to `try_wait`.
/// (A non-interactive shell gives background jobs /dev/null as stdin, hence the copy on fd 3.)
const WATCHDOG: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
server=$!
( cat <&3 >/dev/null; kill "$server" 2>/dev/null ) &
exec 3<&-
wait "$server""#;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    /// The wrapper process; kept so it is not reaped early.
    _child: Mutex<Child>,
    /// The pipe whose closing (at process exit) stops the server.
    _lifeline: Mutex<ChildStdin>,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The process-wide moto server, started on first use. Panics with the reason (and moto's
/// output) if it cannot be started.
pub fn moto() -> &'static Moto {
    crate::logs::capture();
    match MOTO.get_or_init(start) {
        Ok(m) => m,
        Err(reason) => panic!("{reason}"),
    }
}

fn moto_executable() -> Result<PathBuf, String> {
    if let Some(configured) = std::env::var_os(MOTO_SERVER_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&configured);
        // A bare name is looked up on PATH by `Command`; a path must exist.
        if path.components().count() > 1 && !path.exists() {
            return Err(format!(
                "{MOTO_SERVER_ENV}={} does not exist; run scripts/test (it creates .venv with \
                 moto[server]) or point {MOTO_SERVER_ENV} at a moto_server executable",
                path.display()
            ));
        }
        return Ok(path);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let venv = repo.join(".venv/bin/moto_server");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(format!(
            "moto server not found: {MOTO_SERVER_ENV} is unset and {} does not exist. Run \
             scripts/test (it creates .venv with moto[server] and exports {MOTO_SERVER_ENV}), \
             or set {MOTO_SERVER_ENV} to a moto_server executable. The AWS adapter tests are \
             never skipped.",
            venv.display()
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind a loopback port for moto: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read the bound port: {e}"))
}

fn start() -> Result<Moto, String> {
    let exe = moto_executable()?;
    // The port is free when we look and taken by moto a moment later; another process may
    // win the race in between, so a port already in use is retried on another port.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match start_on(&exe, free_port()?) {
            Ok(m) => return Ok(m),
            Err(e) if attempts < 3 && e.contains("Address already in use") => continue,
            Err(e) => return Err(e),
        }
    }
}

fn start_on(exe: &PathBuf, port: u16) -> Result<Moto, String> {
    // An unnamed temporary file: the kernel removes it when the last handle closes.
    let mut log = tempfile::tempfile().map_err(|e| format!("cannot create moto's log: {e}"))?;
    let stdout = log.try_clone().map_err(|e| e.to_string())?;
    let stderr = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("carteiro-moto")
        .arg(exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start moto ({}): {e}", exe.display()))?;
    let lifeline = child
        .stdin
        .take()
        .ok_or_else(|| "moto's wrapper has no stdin pipe".to_owned())?;

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "moto ({}) exited with {status} before answering on {addr}; its output:\n{}",
                exe.display(),
                tail(&mut log)
            ));
        }
        if answers_http(addr) {
            return Ok(Moto {
                endpoint: format!("http://{addr}"),
                _child: Mutex::new(child),
                _lifeline: Mutex::new(lifeline),
            });
        }
        if Instant::now() >= deadline {
            // Closing the pipe makes the wrapper stop the server.
            drop(lifeline);
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "moto ({}) did not answer on {addr} within {STARTUP_TIMEOUT:?}; its output:\n{}",
                exe.display(),
                tail(&mut log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether something on `addr` answers an HTTP request.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// The last few KB of moto's output.
fn tail(log: &mut File) -> String {
    let mut out = String::new();
    let _ = log.seek(SeekFrom::Start(0));
    let _ = log.read_to_string(&mut out);
    let keep = out.len().saturating_sub(8 * 1024);
    let start = (keep..=out.len())
        .find(|i| out.is_char_boundary(*i))
        .unwrap_or(out.len());
    out[start..].to_owned()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

impl Moto {
    /// SDK configuration for this server: static test credentials, region us-east-1, every
    /// service's endpoint set to the server.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .test_credentials()
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }

    /// Like [`Self::sdk_config`], with every service's endpoint at `endpoint` instead (a proxy
    /// in front of this server).
    pub async fn sdk_config_via(&self, endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .test_credentials()
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .load()
            .await
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    pub async fn secretsmanager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
    }

    /// Creates a standard queue named `<name_prefix>-<uuid>` and returns its URL.
    pub async fn create_queue(&self, name_prefix: &str) -> String {
        let mut name = unique(name_prefix);
        name.truncate(80);
        let out = self
            .sqs()
            .await
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto CreateQueue {name}: {e:?}"));
        out.queue_url
            .unwrap_or_else(|| panic!("moto CreateQueue {name}: no queue URL"))
    }

    /// Creates a table with Carteiro's schema (as template.yaml declares it): `pk`/`sk`
    /// strings, the `by-provider-id`, sparse `by-due`, `by-owner` and `by-contact` indexes (KEYS_ONLY), on-demand
    /// billing, TTL on `expires_at`. Returns the table name.
    pub async fn create_table(&self) -> String {
        let name = unique("carteiro");
        let client = self.dynamodb().await;
        let attr = |n: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(t)
                .build()
                .unwrap()
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .unwrap()
        };
        let keys_only = Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build();
        client
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(schema::PK, ScalarAttributeType::S))
            .attribute_definitions(attr(schema::SK, ScalarAttributeType::S))
            .attribute_definitions(attr(schema::PROVIDER_MESSAGE_ID, ScalarAttributeType::S))
            .attribute_definitions(attr(schema::DUE_BUCKET, ScalarAttributeType::S))
            .attribute_definitions(attr(schema::DUE_AT, ScalarAttributeType::N))
            .attribute_definitions(attr(schema::OWNER, ScalarAttributeType::S))
            .attribute_definitions(attr(schema::OWNER_AT, ScalarAttributeType::S))
            .attribute_definitions(attr(schema::CONTACT, ScalarAttributeType::S))
            .attribute_definitions(attr(schema::CONTACT_AT, ScalarAttributeType::S))
            .key_schema(key(schema::PK, KeyType::Hash))
            .key_schema(key(schema::SK, KeyType::Range))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(schema::GSI_BY_PROVIDER_ID)
                    .key_schema(key(schema::PROVIDER_MESSAGE_ID, KeyType::Hash))
                    .projection(keys_only.clone())
                    .build()
                    .unwrap(),
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(schema::GSI_BY_DUE)
                    .key_schema(key(schema::DUE_BUCKET, KeyType::Hash))
                    .key_schema(key(schema::DUE_AT, KeyType::Range))
                    .projection(keys_only.clone())
                    .build()
                    .unwrap(),
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(schema::GSI_BY_OWNER)
                    .key_schema(key(schema::OWNER, KeyType::Hash))
                    .key_schema(key(schema::OWNER_AT, KeyType::Range))
                    .projection(keys_only.clone())
                    .build()
                    .unwrap(),
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(schema::GSI_BY_CONTACT)
                    .key_schema(key(schema::CONTACT, KeyType::Hash))
                    .key_schema(key(schema::CONTACT_AT, KeyType::Range))
                    .projection(keys_only)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto CreateTable {name}: {e:?}"));
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(schema::TTL_ATTRIBUTE)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto UpdateTimeToLive {name}: {e:?}"));
        name
    }

    /// Creates a secret named `<name>-<uuid>` holding `json` and returns its ARN.
    pub async fn create_secret(&self, name: &str, json: &str) -> String {
        let name = unique(name);
        let out = self
            .secretsmanager()
            .await
            .create_secret()
            .name(&name)
            .secret_string(json)
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto CreateSecret {name}: {e:?}"));
        out.arn
            .unwrap_or_else(|| panic!("moto CreateSecret {name}: no ARN"))
    }
}
