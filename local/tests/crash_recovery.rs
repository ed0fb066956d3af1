//! Crash recovery within every limit, end to end: 2,000 messages (WhatsApp and email, some with
//! fallbacks) through the `carteiro` binary while the providers fail a third of their calls,
//! the Graph API goes down for several seconds, and the process is killed with SIGKILL and
//! restarted three times.
//!
//! - The fake Graph API (a raw HTTP server here, so it can reset connections) answers 5xx,
//!   131000, 131056, resets the connection, hangs past the client's timeout, or takes the
//!   message and then hangs; it answers 130429 to everything in short bursts, 503 to everything
//!   during an outage window, and 131026 (undeliverable, permanent) to a set of recipients whose
//!   messages carry an email fallback through a second, healthy SMTP relay (`relays` in the
//!   `smtp` secret). For each message it takes it posts signed `sent` and
//!   `delivered` status webhooks to the gateway, as Meta does. It logs when each call arrived.
//! - The fake SMTP server (aiosmtpd, `support/faulty_smtp.py`) refuses, hangs, drops the
//!   connection after DATA, or takes the message and answers too late.
//! - The retry schedule has waits longer than the (lowered) queue delay limit, so those retries
//!   wait in the store for the sweeper.
//! - The number's throughput is 50/s, the pair rule one message every 300 ms with bursts of 5
//!   (Meta's 6 s and 45, scaled down so the test stays short), the breaker's cool-down 3 s.
//!
//! It proves that every accepted message ends terminal; that each was taken by a provider once
//! — or that every duplicate traces to an `unknown` attempt no status webhook settled; that no
//! sliding second saw more Graph calls than the throughput; that no recipient was called faster
//! than the pair rule; that the breaker opened during the outage, let only probes through while
//! open, and closed after; and that the fallbacks delivered the messages whose first path
//! failed for good. The figures go to stderr (`--nocapture`) and to docs/reliability.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WHATSAPP_MESSAGES: usize = 1_250;
const EMAIL_MESSAGES: usize = 750;
/// Messages 0..HOT go to one recipient, so the pair rule paces them.
const HOT: usize = 40;
const HOT_RECIPIENT: &str = "+5511977770000";
/// Messages HOT..DOOMED go to recipients Meta refuses for good; each has an email fallback.
const DOOMED: usize = HOT + 100;
/// Messages DOOMED..SPARED carry a fallback they should not need.
const SPARED: usize = DOOMED + 100;
const KILLS: usize = 3;
const APP_SECRET: &str = "crash-test-app-secret";
const API_KEY: &str = "crash-test-api-key";
/// The client timeouts the gateway runs with, and how long a hanging fake holds a call.
const GRAPH_TIMEOUT_MS: u64 = 300;
const SMTP_TIMEOUT_MS: u64 = 400;
const HANG: Duration = Duration::from_millis(1_500);
/// Retries due later than this wait in the store for the sweeper.
const QUEUE_MAX_DELAY: &str = "1500ms";
const RETRY_SCHEDULE: &str = "0s,300ms,1s,2s,3s,3s,3s,3s,3s,3s";
/// The limits the gateway runs with.
const MPS: usize = 50;
const PAIR_INTERVAL: Duration = Duration::from_millis(300);
const PAIR_BURST: usize = 5;
/// How much later than its pair token a call may reach the fake.
const PAIR_SLACK: Duration = Duration::from_millis(150);
const COOL_DOWN: Duration = Duration::from_secs(3);
/// Breaker defaults the gateway keeps: consecutive failures that open it; its concurrency.
const CONSECUTIVE: usize = 10;
const CONCURRENCY: usize = 10;
/// Every Graph call fails in [OUTAGE_FROM, OUTAGE_TO) after the fake starts.
const OUTAGE_FROM: Duration = Duration::from_secs(12);
const OUTAGE_TO: Duration = Duration::from_secs(17);
/// Every Graph call gets 130429 for BURST_LEN once every BURST_EVERY.
const BURST_EVERY: Duration = Duration::from_secs(7);
const BURST_LEN: Duration = Duration::from_millis(300);
/// When the second and third kills come (after the outage, while work is pending).
const LATER_KILLS: [Duration; 2] = [Duration::from_secs(21), Duration::from_secs(27)];
/// The whole test must finish within this.
const DEADLINE: Duration = Duration::from_secs(300);

// ---- The fake Graph API -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GraphFate {
    Accept,
    ServerError,
    Code131000,
    Code131056,
    Reset,
    Hang,
    AcceptThenHang,
    /// Drawn by time or recipient, not by chance.
    Outage,
    Burst130429,
    Undeliverable,
}

impl GraphFate {
    /// Per 100 calls outside the outage and the bursts.
    const SHARES: [(Self, u32); 7] = [
        (Self::Accept, 58),
        (Self::ServerError, 8),
        (Self::Code131000, 8),
        (Self::Code131056, 6),
        (Self::Reset, 7),
        (Self::Hang, 6),
        (Self::AcceptThenHang, 7),
    ];

    fn draw(rng: &mut StdRng, since_start: Duration, to: &str) -> Self {
        if (OUTAGE_FROM..OUTAGE_TO).contains(&since_start) {
            return Self::Outage;
        }
        if since_start.as_millis() % BURST_EVERY.as_millis() < BURST_LEN.as_millis() {
            return Self::Burst130429;
        }
        if doomed(to) {
            return Self::Undeliverable;
        }
        let mut roll = rng.random_range(0..100);
        for (fate, share) in Self::SHARES {
            if roll < share {
                return fate;
            }
            roll -= share;
        }
        Self::Accept
    }

    fn takes_the_message(self) -> bool {
        matches!(self, Self::Accept | Self::AcceptThenHang)
    }
}

/// Recipients of the doomed messages (digits, as the Graph body writes them).
fn doomed(to: &str) -> bool {
    to.starts_with("5511988")
}

/// One call as the fake saw it.
#[derive(Debug, Clone)]
struct Call {
    at: Duration,
    to: String,
}

#[derive(Debug, Default)]
struct GraphLog {
    /// Carteiro id (`biz_opaque_callback_data`) → times the fake took the message.
    accepted: HashMap<String, u32>,
    fates: HashMap<&'static str, u32>,
    calls: Vec<Call>,
}

struct FakeGraph {
    addr: SocketAddr,
    log: Arc<Mutex<GraphLog>>,
}

impl FakeGraph {
    async fn start(webhooks: mpsc::UnboundedSender<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(GraphLog::default()));
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(6)));
        let state = log.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            let mut wamids = 0u64;
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                wamids += 1;
                let (log, rng, webhooks) = (state.clone(), rng.clone(), webhooks.clone());
                tokio::spawn(serve_graph(socket, wamids, started, log, rng, webhooks));
            }
        });
        Self { addr, log }
    }
}

/// Reads one HTTP/1.1 request: the head, then `content-length` bytes of body.
async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

async fn respond(socket: &mut TcpStream, status: &str, body: &Value) {
    let body = body.to_string();
    let text = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(text.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn meta_error(code: i64, message: &str) -> Value {
    json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AcrashTest"}})
}

async fn serve_graph(
    mut socket: TcpStream,
    n: u64,
    started: Instant,
    log: Arc<Mutex<GraphLog>>,
    rng: Arc<Mutex<StdRng>>,
    webhooks: mpsc::UnboundedSender<(String, String)>,
) {
    let Some(body) = read_request(&mut socket).await else {
        return;
    };
    let at = started.elapsed();
    let body = serde_json::from_slice::<Value>(&body).unwrap_or_default();
    let callback = body["biz_opaque_callback_data"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    let fate = GraphFate::draw(&mut rng.lock().unwrap(), at, &to);
    let wamid = format!("wamid.crash{n}");
    {
        let mut log = log.lock().unwrap();
        log.calls.push(Call { at, to });
        *log.fates.entry(fate_name(fate)).or_default() += 1;
        if fate.takes_the_message() {
            *log.accepted.entry(callback.clone()).or_default() += 1;
        }
    }
    if fate.takes_the_message() {
        let _ = webhooks.send((wamid.clone(), callback));
    }
    match fate {
        GraphFate::Accept => {
            let ok = json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": "+5511999990001", "wa_id": "5511999990001"}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            });
            respond(&mut socket, "200 OK", &ok).await;
        }
        GraphFate::ServerError | GraphFate::Outage => {
            respond(&mut socket, "503 Service Unavailable", &json!({})).await;
        }
        GraphFate::Code131000 => {
            let e = meta_error(131_000, "Something went wrong");
            respond(&mut socket, "500 Internal Server Error", &e).await;
        }
        GraphFate::Burst130429 => {
            let e = meta_error(130_429, "Rate limit hit");
            respond(&mut socket, "400 Bad Request", &e).await;
        }
        GraphFate::Code131056 => {
            let e = meta_error(
                131_056,
                "(Business Account, Consumer Account) pair rate limit hit",
            );
            respond(&mut socket, "400 Bad Request", &e).await;
        }
        GraphFate::Undeliverable => {
            let e = meta_error(131_026, "Message Undeliverable.");
            respond(&mut socket, "400 Bad Request", &e).await;
        }
        GraphFate::Reset => {
            // SO_LINGER 0: closing sends RST instead of FIN. Deprecated because a non-zero
            // linger blocks the thread on drop; a zero one never does.
            #[allow(deprecated)]
            let _ = socket.set_linger(Some(Duration::ZERO));
            drop(socket);
        }
        GraphFate::Hang | GraphFate::AcceptThenHang => tokio::time::sleep(HANG).await,
    }
}

fn fate_name(fate: GraphFate) -> &'static str {
    match fate {
        GraphFate::Accept => "accept",
        GraphFate::ServerError => "503",
        GraphFate::Code131000 => "131000",
        GraphFate::Code131056 => "131056",
        GraphFate::Reset => "connection reset",
        GraphFate::Hang => "hang past the timeout",
        GraphFate::AcceptThenHang => "accept, then hang past the timeout",
        GraphFate::Outage => "503 (outage)",
        GraphFate::Burst130429 => "130429 (burst)",
        GraphFate::Undeliverable => "131026 (doomed recipient)",
    }
}

/// Posts a signed `sent` and then `delivered` webhook for each message the fake took, retrying
/// while the gateway is down (as Meta retries its webhooks).
async fn post_status_webhooks(
    gateway: SocketAddr,
    mut taken: mpsc::UnboundedReceiver<(String, String)>,
    posted: Arc<Mutex<u32>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    while let Some((wamid, callback)) = taken.recv().await {
        for status in ["sent", "delivered"] {
            let body = status_webhook(&wamid, status, &callback);
            let signature = carteiro_shared::intake::signature::sign(APP_SECRET.as_bytes(), &body);
            loop {
                let sent = http
                    .post(format!("http://{gateway}/webhooks/whatsapp"))
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(res) if res.status().is_success() => break,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            *posted.lock().unwrap() += 1;
        }
    }
}

fn status_webhook(wamid: &str, status: &str, callback: &str) -> Vec<u8> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "5467539754836534",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1122334455667"},
                    "statuses": [{
                        "id": wamid,
                        "status": status,
                        "timestamp": timestamp.to_string(),
                        "recipient_id": "5511999990001",
                        "biz_opaque_callback_data": callback,
                    }],
                }
            }]
        }]
    })
    .to_string()
    .into_bytes()
}

// ---- The fake SMTP server -----------------------------------------------------------------------

struct FaultySmtp {
    port: u16,
    log: PathBuf,
    child: Child,
}

fn python() -> PathBuf {
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    match std::env::var_os("CARTEIRO_PYTHON").map(PathBuf::from) {
        Some(p) => p,
        None if fallback.exists() => fallback,
        None => panic!("no Python with aiosmtpd: run scripts/test or set CARTEIRO_PYTHON"),
    }
}

impl FaultySmtp {
    /// The faulty server; with `clean`, a healthy one (the backup relay).
    fn start(dir: &Path, clean: bool) -> Self {
        let log = dir.join(if clean {
            "backup-accepted.log"
        } else {
            "smtp-accepted.log"
        });
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/faulty_smtp.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg("--log")
            .arg(&log)
            .args(["--hang", &HANG.as_secs_f64().to_string()])
            .args(clean.then_some("--clean"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(support::suite_log("crash-recovery-smtp").0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        Self { port, log, child }
    }

    /// Lines of the log starting with `kind `, counted by what follows.
    fn counts(&self, kind: &str) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        for rest in text
            .lines()
            .filter_map(|l| l.strip_prefix(kind)?.strip_prefix(' '))
        {
            *counts.entry(rest.to_owned()).or_default() += 1;
        }
        counts
    }

    /// Subject → times the server took the message.
    fn accepted(&self) -> HashMap<String, u32> {
        self.counts("accept")
    }

    /// Fate → transactions that drew it.
    fn fates(&self) -> HashMap<String, u32> {
        self.counts("fate")
    }
}

impl Drop for FaultySmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- The gateway process ------------------------------------------------------------------------

struct Gateway {
    addr: SocketAddr,
    dir: PathBuf,
    secrets: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Each start's output, in the suite's log directory.
    logs: Vec<PathBuf>,
}

impl Gateway {
    fn new(dir: &Path, graph: SocketAddr, smtp_port: u16, backup_port: u16) -> Self {
        // A fixed port, so the fake Graph API's webhooks find the gateway after each restart.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let secrets = dir.join("secrets.json");
        let doc = json!({
            "whatsapp": {
                "app_secret": APP_SECRET,
                "verify_token": "crash-test-verify-token",
                "access_token": "EAAG-crash-test-token",
                "phone_number_id": "1122334455667",
                "graph_base_url": format!("http://{graph}"),
            },
            "smtp": {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "from_email": "Loja <loja@example.com>", "use_ssl": false,
                     "relays": [{"id": "backup", "smtp_host": "127.0.0.1", "smtp_port": backup_port}]},
            "api_keys": {"keys": [{"id": "crash-app", "key": API_KEY}]},
        });
        std::fs::write(&secrets, doc.to_string()).unwrap();
        Self {
            addr,
            dir: dir.to_owned(),
            secrets,
            child: None,
            starts: 0,
            logs: Vec::new(),
        }
    }

    async fn start(&mut self, http: &reqwest::Client) {
        self.starts += 1;
        let (log, path) = support::suite_log(&format!("crash-recovery-{}", self.starts));
        self.logs.push(path);
        let child = Command::new(env!("CARGO_BIN_EXE_carteiro"))
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--secrets-file")
            .arg(&self.secrets)
            // Breaker transitions are logged at info; the test reads them.
            .env("RUST_LOG", "warn,carteiro_shared::resilience::breaker=info")
            .env("CARTEIRO_WHATSAPP_MPS", MPS.to_string())
            .env(
                "CARTEIRO_WHATSAPP_PAIR_INTERVAL",
                format!("{}ms", PAIR_INTERVAL.as_millis()),
            )
            .env("CARTEIRO_WHATSAPP_PAIR_BURST", PAIR_BURST.to_string())
            .env(
                "CARTEIRO_BREAKER_COOL_DOWN",
                format!("{}ms", COOL_DOWN.as_millis()),
            )
            .env("CARTEIRO_DISPATCH_CONCURRENCY", CONCURRENCY.to_string())
            .env("CARTEIRO_RETRY_SCHEDULE", RETRY_SCHEDULE)
            .env("CARTEIRO_QUEUE_MAX_DELAY", QUEUE_MAX_DELAY)
            .env("CARTEIRO_UNKNOWN_OUTCOME_WAIT", "2s")
            .env("CARTEIRO_SWEEP_INTERVAL", "500ms")
            .env("CARTEIRO_DISPATCH_LEASE_SECS", "3")
            .env("CARTEIRO_GRAPH_TIMEOUT_MS", GRAPH_TIMEOUT_MS.to_string())
            .env("CARTEIRO_SMTP_TIMEOUT_MS", SMTP_TIMEOUT_MS.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(res) = http
                .get(format!("http://{}/health", self.addr))
                .send()
                .await
                && res.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the gateway exited at start: {status}\n{}", self.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the gateway did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---- restart ----\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- The client ---------------------------------------------------------------------------------

fn send_body(n: usize) -> Value {
    if n >= WHATSAPP_MESSAGES {
        return json!({"channel": "email", "to": ["ana@example.com"], "subject": subject(n), "text": "Olá"});
    }
    let to = match n {
        0..HOT => HOT_RECIPIENT.to_owned(),
        HOT..DOOMED => format!("+5511988{:06}", n),
        _ => format!("+55119{:08}", 90_000_000 + n),
    };
    let mut body =
        json!({"channel": "whatsapp", "to": to, "text": {"body": format!("crash test {n}")}});
    // The doomed ones fall back to email through the healthy backup relay; the spared ones'
    // fallbacks (never needed unless they die) go through the faulty primary.
    if (HOT..DOOMED).contains(&n) {
        body["fallback"] = json!([{"channel": "email", "to": ["ana@example.com"], "subject": fallback_subject(n), "text": "Olá", "relay": "backup"}]);
    } else if (DOOMED..SPARED).contains(&n) {
        body["fallback"] = json!([{"channel": "email", "to": ["ana@example.com"], "subject": fallback_subject(n), "text": "Olá"}]);
    }
    body
}

fn subject(n: usize) -> String {
    format!("crash test {n}")
}

fn fallback_subject(n: usize) -> String {
    format!("fallback of {n}")
}

/// Sends message `n` as a client would: on a connection error or a 5xx it tries again with the
/// same Idempotency-Key until the gateway answers 202. Returns Carteiro's id.
async fn send_until_accepted(http: &reqwest::Client, addr: SocketAddr, n: usize) -> String {
    let started = Instant::now();
    loop {
        let res = http
            .post(format!("http://{addr}/v1/messages"))
            .bearer_auth(API_KEY)
            .header("idempotency-key", format!("crash-{n}"))
            .json(&send_body(n))
            .send()
            .await;
        if let Ok(res) = res {
            let status = res.status();
            if status.is_success() {
                let body: Value = res.json().await.unwrap();
                return body["id"].as_str().unwrap().to_owned();
            }
            assert!(status.is_server_error(), "message {n} refused: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "message {n} never accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn records(http: &reqwest::Client, addr: SocketAddr, ids: &[String]) -> Option<Vec<Value>> {
    let fetches = ids.iter().map(|id| async move {
        let res = http
            .get(format!("http://{addr}/v1/messages/{id}"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .ok()?;
        assert_eq!(res.status(), 200, "GET {id}");
        res.json::<Value>().await.ok()
    });
    let mut out = Vec::with_capacity(ids.len());
    let mut stream = futures::stream::iter(fetches).buffered(16);
    while let Some(r) = stream.next().await {
        out.push(r?);
    }
    Some(out)
}

fn is_terminal(record: &Value) -> bool {
    !matches!(
        record["status"].as_str(),
        Some("queued" | "sending" | "retry_scheduled")
    )
}

fn pending(records: &[Value]) -> usize {
    records.iter().filter(|r| !is_terminal(r)).count()
}

/// The most calls in any sliding window of `width` (calls sorted by arrival).
fn most_in_window(at: &[Duration], width: Duration) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..at.len() {
        while at[end] - at[start] >= width {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// Breaker transitions of `breaker:whatsapp` in the gateway's logs, in order: `opened` or the
/// phase it moved to.
fn whatsapp_breaker_transitions(logs: &str) -> Vec<String> {
    logs.lines()
        .filter(|l| l.contains("breaker:whatsapp"))
        .filter_map(|l| {
            if l.contains("circuit breaker opened") {
                Some("opened".to_owned())
            } else if l.contains("circuit breaker transition") {
                l.split("to=")
                    .nth(1)
                    .map(|t| t.split_whitespace().next().unwrap_or("").to_owned())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_ends_terminal_within_every_limit_through_faults_outages_and_kills() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (taken, to_post) = mpsc::unbounded_channel();
    let graph = FakeGraph::start(taken).await;
    let smtp = FaultySmtp::start(dir.path(), false);
    let backup = FaultySmtp::start(dir.path(), true);
    let mut gateway = Gateway::new(dir.path(), graph.addr, smtp.port, backup.port);
    let posted = Arc::new(Mutex::new(0));
    tokio::spawn(post_status_webhooks(gateway.addr, to_post, posted.clone()));
    gateway.start(&http).await;

    // Submit everything, sixteen at a time, killing the gateway once some is in.
    let total = WHATSAPP_MESSAGES + EMAIL_MESSAGES;
    let addr = gateway.addr;
    let submitter = {
        let http = http.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..total)
                .map(|n| {
                    let http = http.clone();
                    async move { send_until_accepted(&http, addr, n).await }
                })
                .buffered(16)
                .collect::<Vec<String>>()
                .await
        })
    };
    let mut pending_at_kill = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    gateway.kill();
    pending_at_kill.push(None);
    gateway.start(&http).await;
    let ids = submitter.await.unwrap();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), total, "one record per Idempotency-Key");
    eprintln!("accepted {total} messages in {:?}", started.elapsed());

    // Two more kills while the work is in flight, after the outage.
    for at in LATER_KILLS {
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let now = records(&http, addr, &ids).await.unwrap();
        let left = pending(&now);
        assert!(left > 0, "the kill must land while messages are pending");
        pending_at_kill.push(Some(left));
        gateway.kill();
        gateway.start(&http).await;
    }

    // Wait until nothing is pending (a fallback is pending while its record is).
    let finished = loop {
        if started.elapsed() >= DEADLINE {
            let now = records(&http, addr, &ids).await.unwrap_or_default();
            let stuck: Vec<String> = now
                .iter()
                .filter(|r| !is_terminal(r))
                .take(5)
                .map(Value::to_string)
                .collect();
            let logs = gateway.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            panic!(
                "{} messages still pending after {DEADLINE:?}, e.g.\n{}\nlast log lines:\n{}",
                pending(&now),
                stuck.join("\n"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(now) = records(&http, addr, &ids).await else {
            continue;
        };
        let children: Vec<String> = now
            .iter()
            .filter_map(|r| r["fallbacks"][0]["id"].as_str().map(str::to_owned))
            .collect();
        let Some(children) = records(&http, addr, &children).await else {
            continue;
        };
        // A doomed message refused for good is not done until its fallback exists: a kill
        // between writing the failure and taking the step leaves it to the sweeper.
        let orphaned = now
            .iter()
            .filter(|r| {
                r["status"] == "failed"
                    && r["last_error"]["code"] == "131026"
                    && r["fallbacks"][0]["id"].is_null()
            })
            .count();
        if pending(&now) == 0 && pending(&children) == 0 && orphaned == 0 {
            // Read again: a fallback may have finished after its parent's view was taken.
            break records(&http, addr, &ids).await.unwrap();
        }
    };
    let elapsed = started.elapsed();
    let logs = gateway.logs();

    // What each fake took, per Carteiro message.
    let smtp_taken = smtp.accepted();
    let backup_taken = backup.accepted();
    let graph_log = graph.log.lock().unwrap();
    let mut graph_taken: HashMap<&str, u32> = HashMap::new();
    for (id, n) in &graph_log.accepted {
        graph_taken.insert(id.as_str(), *n);
    }
    let mut by_status: HashMap<String, usize> = HashMap::new();
    let (mut duplicates, mut unknown_attempts, mut settled_by_webhook, mut lease_expired) =
        (0u32, 0u32, 0u32, 0u32);
    let (mut past_queue_delay, mut deferred, mut circuit_deferred) = (0, 0, 0);
    let mut fell_back = 0;
    for (n, record) in finished.iter().enumerate() {
        let id = record["id"].as_str().unwrap();
        let status = record["status"].as_str().unwrap().to_owned();
        let taken = if n < WHATSAPP_MESSAGES {
            graph_taken.get(id).copied().unwrap_or(0)
        } else {
            smtp_taken.get(&subject(n)).copied().unwrap_or(0)
        };
        let attempts = record["attempts"].as_array().unwrap();
        let unknown = |a: &&Value| a["outcome"] == "unknown";
        let unsettled = attempts
            .iter()
            .filter(unknown)
            .filter(|a| a["settled"] != "status_webhook")
            .count() as u32;
        unknown_attempts += attempts.iter().filter(unknown).count() as u32;
        settled_by_webhook += attempts
            .iter()
            .filter(|a| a["settled"] == "status_webhook")
            .count() as u32;
        lease_expired += attempts
            .iter()
            .filter(|a| a["provider_code"] == "lease_expired")
            .count() as u32;
        // Attempt 4 waited 2 s, past the 1.5 s the queue may delay a job: the sweeper sent it.
        if attempts.len() >= 4 {
            past_queue_delay += 1;
        }
        if record["deferrals"].as_u64().unwrap_or(0) > 0 {
            deferred += 1;
        }
        if record["last_deferral"]["limit"] == "circuit_open" {
            circuit_deferred += 1;
        }
        if matches!(status.as_str(), "sent" | "delivered" | "read") {
            assert!(
                taken >= 1,
                "{id} is {status} but no provider took it: {record}"
            );
        }
        if taken > 1 {
            assert!(
                taken - 1 <= unsettled,
                "{id} was taken {taken} times but only {unsettled} unknown attempts were left unsettled: {record}"
            );
            duplicates += taken - 1;
        }
        // Refused for good by Meta: the email fallback delivered it.
        if (HOT..DOOMED).contains(&n) {
            assert_eq!(status, "failed", "{record}");
            assert_eq!(record["last_error"]["code"], "131026", "{record}");
            let child = record["fallbacks"][0]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no fallback: {record}"));
            assert_eq!(record["delivered_by"], child, "{record}");
            assert!(
                backup_taken.get(&fallback_subject(n)).copied().unwrap_or(0) >= 1,
                "the fallback of {n} never reached the backup relay"
            );
            fell_back += 1;
        }
        *by_status.entry(status).or_default() += 1;
    }
    let spared_fallbacks = (DOOMED..SPARED)
        .filter(|n| smtp_taken.contains_key(&fallback_subject(*n)))
        .count();

    // Throughput: no sliding second with more calls than the number's limit.
    let mut arrivals: Vec<Duration> = graph_log.calls.iter().map(|c| c.at).collect();
    arrivals.sort();
    let busiest_second = most_in_window(&arrivals, Duration::from_secs(1));
    assert!(
        busiest_second <= MPS,
        "{busiest_second} Graph calls in one second; the limit is {MPS}"
    );
    // The pair rule: at most BURST + t / INTERVAL calls to one recipient in any t, with
    // PAIR_SLACK for the way from the bucket to the fake (a breaker read and a local HTTP call,
    // which on a loaded two-core machine can take tens of milliseconds).
    let mut per_recipient: HashMap<&str, Vec<Duration>> = HashMap::new();
    for c in &graph_log.calls {
        per_recipient.entry(c.to.as_str()).or_default().push(c.at);
    }
    let hot = HOT_RECIPIENT.trim_start_matches('+');
    for (to, at) in &mut per_recipient {
        at.sort();
        for i in 0..at.len() {
            for j in i..at.len() {
                let span = (at[j] - at[i] + PAIR_SLACK).as_secs_f64();
                let allowed = PAIR_BURST as f64 + span / PAIR_INTERVAL.as_secs_f64();
                assert!(
                    (j - i + 1) as f64 <= allowed.floor() + 1e-9,
                    "{to}: {} calls in {span:.3} s, the pair rule allows {allowed:.1}",
                    j - i + 1
                );
            }
        }
    }
    let hot_calls = per_recipient.get(hot).map_or(0, Vec::len);
    assert!(
        hot_calls >= HOT,
        "the hot recipient got {hot_calls} calls for {HOT} messages"
    );

    // The breaker: opened in the outage, only probes while open, closed after.
    let in_outage: Vec<Duration> = arrivals
        .iter()
        .copied()
        .filter(|t| (OUTAGE_FROM..OUTAGE_TO).contains(t))
        .collect();
    let outage = OUTAGE_TO - OUTAGE_FROM;
    let probes_allowed = (outage.as_secs_f64() / COOL_DOWN.as_secs_f64()).ceil() as usize + 1;
    assert!(
        in_outage.len() <= CONSECUTIVE + CONCURRENCY + probes_allowed,
        "{} calls during the {outage:?} outage: the breaker should have stopped them ({} to open it, {} in flight, {} probes)",
        in_outage.len(),
        CONSECUTIVE,
        CONCURRENCY,
        probes_allowed
    );
    // Open during the outage: a silent stretch of about a cool-down (probes aside), where an
    // unguarded gateway would call every few milliseconds.
    let mut edges = vec![OUTAGE_FROM];
    edges.extend(in_outage.iter().copied());
    edges.push(OUTAGE_TO);
    let silence = edges
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        silence >= COOL_DOWN.mul_f64(0.8),
        "no call-free stretch of a cool-down in the outage (longest {silence:?}): {in_outage:?}"
    );
    let transitions = whatsapp_breaker_transitions(&logs);
    let opened = transitions.iter().position(|t| t == "opened");
    let closed_after = opened.and_then(|o| transitions[o..].iter().position(|t| t == "Closed"));
    assert!(
        opened.is_some() && closed_after.is_some(),
        "the Graph API's breaker must open and close again: {transitions:?}"
    );
    let after_outage = arrivals.iter().filter(|t| **t >= OUTAGE_TO).count();

    let calls = graph_log.calls.len() as u32;
    let failed_calls = calls - graph_log.fates.get("accept").copied().unwrap_or(0);
    let smtp_fates = smtp.fates();
    let smtp_calls: u32 = smtp_fates.values().sum();
    let smtp_failed = smtp_calls - smtp_fates.get("accept").copied().unwrap_or(0);
    eprintln!(
        "crash recovery: {total} messages terminal in {elapsed:.1?}, {KILLS} kills; statuses {by_status:?}"
    );
    eprintln!(
        "  Graph: {calls} calls, {failed_calls} failed ({:.0} %): {:?}",
        100.0 * f64::from(failed_calls) / f64::from(calls),
        graph_log.fates
    );
    eprintln!(
        "  SMTP: {smtp_calls} transactions, {smtp_failed} failed ({:.0} %): {smtp_fates:?}; {} messages taken",
        100.0 * f64::from(smtp_failed) / f64::from(smtp_calls.max(1)),
        smtp_taken.values().sum::<u32>()
    );
    eprintln!(
        "  limits: busiest second {busiest_second} calls (limit {MPS}); hot recipient {hot_calls} calls; {deferred} messages deferred at least once, {circuit_deferred} last by the open circuit"
    );
    eprintln!(
        "  breaker: {} calls in the {outage:?} outage (≤ {} allowed), longest silence in it {silence:.1?}, transitions {transitions:?}, {after_outage} calls after it",
        in_outage.len(),
        CONSECUTIVE + CONCURRENCY + probes_allowed
    );
    eprintln!(
        "  fallbacks: {fell_back} doomed messages delivered by email through the backup relay; {spared_fallbacks} of {} spared ones needed theirs",
        SPARED - DOOMED
    );
    eprintln!(
        "  pending at each kill: {pending_at_kill:?}; unknown attempts {unknown_attempts} ({settled_by_webhook} settled by a status webhook, {lease_expired} expired leases); duplicates {duplicates}, each traced to an unsettled unknown attempt; {past_queue_delay} messages retried past the queue delay limit; {} status webhooks posted",
        posted.lock().unwrap()
    );
    assert!(
        f64::from(failed_calls) >= 0.3 * f64::from(calls),
        "the fake Graph API must fail at least 30 % of calls"
    );
    for fate in [
        "503",
        "131000",
        "131056",
        "connection reset",
        "hang past the timeout",
        "accept, then hang past the timeout",
        "503 (outage)",
        "130429 (burst)",
    ] {
        assert!(
            graph_log.fates.get(fate).copied().unwrap_or(0) > 0,
            "no {fate} was injected"
        );
    }
    assert!(
        f64::from(smtp_failed) >= 0.3 * f64::from(smtp_calls),
        "the fake SMTP server must fail at least 30 % of transactions"
    );
    assert!(
        past_queue_delay > 0,
        "some retries must wait for the sweeper"
    );
    assert!(
        settled_by_webhook > 0,
        "some unknown attempts are settled by their status webhook"
    );
    assert!(
        lease_expired > 0,
        "a kill mid-send leaves leases for the sweeper to recover"
    );
    assert!(
        deferred > 0 && circuit_deferred > 0,
        "the limits and the breaker deferred work"
    );
    assert_eq!(fell_back, DOOMED - HOT);
    assert!(elapsed < DEADLINE);
}
