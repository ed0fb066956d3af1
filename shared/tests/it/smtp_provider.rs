//! The SMTP provider against a real SMTP server: aiosmtpd, spawned per test from
//! `smtp_server.py` with the test venv's Python (`$CARTEIRO_PYTHON`, else `<repo>/.venv`).
//! The server records every accepted message (envelope, TLS facts, raw bytes and the MIME tree
//! parsed by Python's `email` package), so the assertions read what went over the wire.
//!
//! TLS uses a self-signed certificate generated here with rcgen (for `smtp.carteiro.test`,
//! `localhost` and `127.0.0.1`) and trusted through `MailerOptions::extra_root_certificate_pem`.
//! A non-loopback name is tested with `MailerOptions::connect_to` = 127.0.0.1: the security
//! policy and the certificate check still use the configured name.

use base64::Engine;
use carteiro_shared::config::SmtpSettings;
use carteiro_shared::domain::message::{Attachment, EmailBody, EmailMessage, SendRequest};
use carteiro_shared::providers::email::{EmailSender, MailerOptions, SmtpMailer, SmtpSecurity};
use carteiro_shared::providers::{FailureClass, SendFailure, SendOutcome};
use carteiro_shared::secrets::SmtpSecret;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---- harness ------------------------------------------------------------------------------

const TLS_NAME: &str = "smtp.carteiro.test";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test venv's Python; fails (never skips) with instructions when there is none.
fn python() -> PathBuf {
    let from_env = std::env::var_os("CARTEIRO_PYTHON").map(PathBuf::from);
    let fallback = repo_root().join(".venv/bin/python");
    match from_env {
        Some(p) => p,
        None if fallback.exists() => fallback,
        None => panic!(
            "no Python with aiosmtpd: set CARTEIRO_PYTHON (eval \"$(scripts/test --env)\") or \
             run scripts/test, which creates {}",
            fallback.display()
        ),
    }
}

/// A self-signed certificate and its key, as PEM files in a temp dir.
struct TestCert {
    _dir: tempfile::TempDir,
    cert_pem: String,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl TestCert {
    fn new() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![
            TLS_NAME.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = ck.cert.pem();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
        Self {
            _dir: dir,
            cert_pem,
            cert_path,
            key_path,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    StartTls,
    ImplicitTls,
}

#[derive(Default)]
struct ServerOptions<'a> {
    cert: Option<&'a TestCert>,
    auth: Option<(&'a str, &'a str)>,
    auth_plain_ok: bool,
    smtputf8: bool,
    /// (verb, address, reply)
    failures: Vec<(&'a str, &'a str, &'a str)>,
}

/// One aiosmtpd process; killed on drop.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start(mode: Mode, opts: ServerOptions<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_server.py");
        let python = python();
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("--dir")
            .arg(dir.path())
            .arg("--mode")
            .arg(match mode {
                Mode::Plain => "plain",
                Mode::StartTls => "starttls",
                Mode::ImplicitTls => "tls",
            });
        if let Some(cert) = opts.cert {
            cmd.arg("--cert")
                .arg(&cert.cert_path)
                .arg("--key")
                .arg(&cert.key_path);
        }
        if let Some((u, p)) = opts.auth {
            cmd.arg("--auth").arg(format!("{u}:{p}"));
        }
        if opts.auth_plain_ok {
            cmd.arg("--auth-plain-ok");
        }
        if opts.smtputf8 {
            cmd.arg("--smtputf8");
        }
        for (verb, addr, reply) in &opts.failures {
            cmd.arg("--fail").arg(verb).arg(addr).arg(reply);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));

        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            panic!(
                "the aiosmtpd test server did not start with {} (is aiosmtpd installed? run \
                 scripts/test or eval \"$(scripts/test --env)\"):\nstdout: {line:?}\nstderr: {err}",
                python.display()
            );
        };
        Self { child, port, dir }
    }

    /// The messages accepted so far, in order.
    fn messages(&self) -> Vec<Received> {
        let mut n = 1;
        let mut out = Vec::new();
        loop {
            let json = self.dir.path().join(format!("{n}.json"));
            if !json.exists() {
                return out;
            }
            let record: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            let raw = std::fs::read(self.dir.path().join(format!("{n}.eml"))).unwrap();
            out.push(Received {
                record,
                raw: String::from_utf8(raw).expect("the message on the wire is UTF-8/ASCII"),
            });
            n += 1;
        }
    }

    fn only_message(&self) -> Received {
        let mut all = self.messages();
        assert_eq!(all.len(), 1, "expected exactly one message");
        all.remove(0)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One received message.
struct Received {
    record: Value,
    raw: String,
}

impl Received {
    /// Values of header `name` (decoded by Python), case-insensitively.
    fn header(&self, name: &str) -> Vec<String> {
        self.record["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect()
    }

    fn one_header(&self, name: &str) -> String {
        let v = self.header(name);
        assert_eq!(v.len(), 1, "header {name}: {v:?}");
        v[0].clone()
    }

    fn rcpt_tos(&self) -> Vec<String> {
        strings(&self.record["rcpt_tos"])
    }

    fn structure(&self) -> &str {
        self.record["structure"].as_str().unwrap()
    }

    fn parts(&self) -> &[Value] {
        self.record["parts"].as_array().unwrap()
    }

    fn part(&self, content_type: &str) -> &Value {
        let found: Vec<&Value> = self
            .parts()
            .iter()
            .filter(|p| p["content_type"] == content_type)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {content_type} part in {}",
            self.structure()
        );
        found[0]
    }

    /// A text part's decoded text, with the wire's CRLF line ends turned into LF.
    fn text_of(&self, content_type: &str) -> String {
        self.part(content_type)["text"]
            .as_str()
            .unwrap()
            .replace("\r\n", "\n")
    }

    /// The raw header block, unfolded lines as sent.
    fn raw_header_lines(&self) -> Vec<&str> {
        let head = self.raw.split("\r\n\r\n").next().unwrap();
        head.split("\r\n").collect()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn secret(host: &str, port: u16, use_ssl: bool) -> SmtpSecret {
    SmtpSecret {
        smtp_host: host.to_owned(),
        smtp_port: port,
        smtp_user: None,
        smtp_password: None,
        from_email: "Carteiro <noreply@carteiro.example>".to_owned(),
        use_ssl,
        rate_limit: None,
        relays: Vec::new(),
    }
}

fn with_auth(mut s: SmtpSecret, user: &str, password: &str) -> SmtpSecret {
    s.smtp_user = Some(user.to_owned());
    s.smtp_password = Some(SecretString::from(password.to_owned()));
    s
}

fn settings() -> SmtpSettings {
    SmtpSettings {
        timeout: Duration::from_secs(10),
        ..SmtpSettings::default()
    }
}

fn mailer(secret: &SmtpSecret, options: MailerOptions) -> SmtpMailer {
    crate::logs();
    SmtpMailer::new(secret, &settings(), options).unwrap()
}

fn trusting(cert: &TestCert) -> MailerOptions {
    MailerOptions {
        extra_root_certificate_pem: Some(cert.cert_pem.clone().into_bytes()),
        ..MailerOptions::default()
    }
}

/// A loopback mailer for a plain server.
fn plain_mailer(server: &SmtpServer) -> SmtpMailer {
    mailer(
        &secret("127.0.0.1", server.port, false),
        MailerOptions::default(),
    )
}

fn email(to: &[&str]) -> EmailMessage {
    EmailMessage {
        from: None,
        to: to.iter().map(|s| (*s).to_owned()).collect(),
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: None,
        subject: "Olá".to_owned(),
        body: EmailBody::Content {
            text: Some("texto".to_owned()),
            html: None,
        },
        attachments: Vec::new(),
        relay: None,
    }
}

fn accepted(outcome: SendOutcome) -> String {
    match outcome {
        SendOutcome::Accepted {
            provider_message_id,
            message_status,
            response,
        } => {
            assert_eq!(message_status, None);
            assert_eq!(response, None);
            provider_message_id
        }
        SendOutcome::Failed(f) => panic!("expected Accepted, got {f:?}"),
    }
}

fn failed(outcome: SendOutcome) -> SendFailure {
    match outcome {
        SendOutcome::Failed(f) => f,
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// A free loopback port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---- delivery over plain loopback ---------------------------------------------------------

#[tokio::test]
async fn plain_loopback_delivers_headers_multipart_alternative_and_bcc_only_in_the_envelope() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    let m = plain_mailer(&server);
    assert_eq!(m.security(), SmtpSecurity::Plain);
    let msg = EmailMessage {
        from: Some("Loja Exemplo <vendas@loja.example>".to_owned()),
        to: vec![
            "Ana <ana@example.com>".to_owned(),
            "bruno@example.com".to_owned(),
        ],
        cc: vec!["Carla <carla@example.com>".to_owned()],
        bcc: vec!["auditoria@example.com".to_owned()],
        reply_to: Some("Suporte <suporte@loja.example>".to_owned()),
        subject: "Confirmação do pedido nº 42".to_owned(),
        body: EmailBody::Content {
            text: Some("Olá, Ana!\nSeu pedido foi confirmado.".to_owned()),
            html: Some("<p>Olá, <b>Ana</b>!</p><p>Seu pedido foi confirmado.</p>".to_owned()),
        },
        attachments: Vec::new(),
        relay: None,
    };
    let id = accepted(m.send(&msg).await);

    let got = server.only_message();
    // Envelope: the sender, and every recipient including Bcc.
    assert_eq!(got.record["mail_from"], "vendas@loja.example");
    let mut rcpt = got.rcpt_tos();
    rcpt.sort();
    assert_eq!(
        rcpt,
        [
            "ana@example.com",
            "auditoria@example.com",
            "bruno@example.com",
            "carla@example.com"
        ]
    );
    assert_eq!(got.record["starttls"], false);
    assert_eq!(got.record["tls_version"], Value::Null);

    // Headers.
    assert_eq!(got.one_header("From"), "Loja Exemplo <vendas@loja.example>");
    assert_eq!(
        got.one_header("To"),
        "Ana <ana@example.com>, bruno@example.com"
    );
    assert_eq!(got.one_header("Cc"), "Carla <carla@example.com>");
    assert_eq!(got.one_header("Reply-To"), "Suporte <suporte@loja.example>");
    assert_eq!(got.one_header("Subject"), "Confirmação do pedido nº 42");
    assert_eq!(got.one_header("Message-ID"), id);
    assert!(
        id.starts_with('<') && id.ends_with("@loja.example>"),
        "{id}"
    );
    assert_eq!(got.one_header("MIME-Version"), "1.0");
    assert_eq!(got.header("Date").len(), 1);
    assert!(got.header("Bcc").is_empty(), "Bcc must not be a header");
    assert!(
        !got.raw.contains("auditoria@"),
        "the Bcc address must not appear in the message"
    );

    // Body: multipart/alternative, text first (least preferred), then HTML.
    assert_eq!(
        got.structure(),
        "multipart/alternative(text/plain,text/html)"
    );
    assert_eq!(
        got.text_of("text/plain").trim_end(),
        "Olá, Ana!\nSeu pedido foi confirmado."
    );
    assert_eq!(
        got.text_of("text/html").trim_end(),
        "<p>Olá, <b>Ana</b>!</p><p>Seu pedido foi confirmado.</p>"
    );
    assert_eq!(got.part("text/plain")["charset"], "utf-8");
}

#[tokio::test]
async fn from_defaults_to_the_secret_and_single_bodies_are_single_parts() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    let m = plain_mailer(&server);

    let text_only = email(&["ana@example.com"]);
    let id1 = accepted(m.send(&text_only).await);
    let mut html_only = email(&["ana@example.com"]);
    html_only.body = EmailBody::Content {
        text: None,
        html: Some("<h1>Oi</h1>".to_owned()),
    };
    let id2 = accepted(m.send(&html_only).await);
    assert_ne!(id1, id2, "every message gets its own Message-ID");

    let got = server.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].one_header("From"),
        "Carteiro <noreply@carteiro.example>"
    );
    assert_eq!(got[0].record["mail_from"], "noreply@carteiro.example");
    assert_eq!(got[0].structure(), "text/plain");
    assert_eq!(got[0].text_of("text/plain").trim_end(), "texto");
    assert_eq!(got[0].one_header("Message-ID"), id1);
    assert!(id1.ends_with("@carteiro.example>"), "{id1}");
    assert_eq!(got[1].structure(), "text/html");
    assert_eq!(got[1].text_of("text/html").trim_end(), "<h1>Oi</h1>");
    assert_eq!(got[1].one_header("Message-ID"), id2);
    assert!(got[0].header("Cc").is_empty() && got[0].header("Reply-To").is_empty());
}

#[tokio::test]
async fn a_template_renders_with_the_html_variable_escaped_and_the_text_raw() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    let m = plain_mailer(&server);
    let mut msg = email(&["ana@example.com"]);
    msg.subject = "ignored: the template has a subject".to_owned();
    msg.body = EmailBody::Template {
        name: "welcome".to_owned(),
        variables: json!({
            "name": "<script>alert(1)</script>",
            "app_name": "Loja & Cia",
            "action_url": "https://loja.example/start?a=1&b=2",
        })
        .as_object()
        .cloned()
        .unwrap(),
    };
    let id = accepted(m.send(&msg).await);

    let got = server.only_message();
    assert_eq!(got.one_header("Message-ID"), id);
    assert_eq!(
        got.structure(),
        "multipart/alternative(text/plain,text/html)"
    );
    assert_eq!(
        got.one_header("Subject"),
        "Bem-vindo(a) ao Loja & Cia, <script>alert(1)</script>!"
    );
    let html = got.text_of("text/html");
    assert!(
        html.contains("Olá, <strong>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</strong>!"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("Loja &amp; Cia"), "{html}");
    assert!(
        html.contains("href=\"https:&#x2f;&#x2f;loja.example&#x2f;start?a=1&amp;b=2\""),
        "{html}"
    );
    let text = got.text_of("text/plain");
    assert!(text.contains("Olá, <script>alert(1)</script>!"), "{text}");
    assert!(
        text.contains("https://loja.example/start?a=1&b=2"),
        "{text}"
    );
}

#[tokio::test]
async fn attachments_arrive_with_their_names_types_and_bytes() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    let m = plain_mailer(&server);
    let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let csv = "pedido;valor\n42;R$ 10,00\n".as_bytes().to_vec();
    let mut msg = email(&["ana@example.com"]);
    msg.body = EmailBody::Content {
        text: Some("Segue a nota.".to_owned()),
        html: Some("<p>Segue a nota.</p>".to_owned()),
    };
    msg.attachments = vec![
        Attachment {
            filename: "nota fiscal.pdf".to_owned(),
            content_type: "application/pdf".to_owned(),
            content: binary.clone(),
        },
        Attachment {
            filename: "relatório.csv".to_owned(),
            content_type: "text/csv".to_owned(),
            content: csv.clone(),
        },
    ];
    accepted(m.send(&msg).await);

    let got = server.only_message();
    assert_eq!(
        got.structure(),
        "multipart/mixed(multipart/alternative(text/plain,text/html),application/pdf,text/csv)"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let pdf = got.part("application/pdf");
    assert_eq!(pdf["filename"], "nota fiscal.pdf");
    assert_eq!(pdf["disposition"], "attachment");
    assert_eq!(
        b64.decode(pdf["content_base64"].as_str().unwrap()).unwrap(),
        binary
    );
    let csv_part = got.part("text/csv");
    assert_eq!(csv_part["filename"], "relatório.csv");
    assert_eq!(csv_part["disposition"], "attachment");
    assert_eq!(
        b64.decode(csv_part["content_base64"].as_str().unwrap())
            .unwrap(),
        csv
    );
    assert_eq!(got.text_of("text/plain").trim_end(), "Segue a nota.");

    // A text-only body with an attachment: mixed(text/plain, attachment).
    let mut single = email(&["ana@example.com"]);
    single.attachments = vec![Attachment {
        filename: "a.txt".to_owned(),
        content_type: "text/plain".to_owned(),
        content: b"anexo".to_vec(),
    }];
    accepted(m.send(&single).await);
    let got = server.messages().pop().unwrap();
    assert_eq!(got.structure(), "multipart/mixed(text/plain,text/plain)");
    assert_eq!(got.parts()[1]["filename"], "a.txt");
}

#[tokio::test]
async fn the_pool_reuses_one_connection_for_consecutive_sends() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    let m = plain_mailer(&server);
    for _ in 0..3 {
        accepted(m.send(&email(&["ana@example.com"])).await);
    }
    let ports: Vec<Value> = server
        .messages()
        .iter()
        .map(|r| r.record["peer_port"].clone())
        .collect();
    assert_eq!(ports.len(), 3);
    assert!(
        ports.iter().all(|p| *p == ports[0]),
        "one pooled connection: {ports:?}"
    );
}

// ---- TLS ----------------------------------------------------------------------------------

#[tokio::test]
async fn starttls_is_negotiated_for_a_non_loopback_host_and_auth_happens_inside_it() {
    let cert = TestCert::new();
    let server = SmtpServer::start(
        Mode::StartTls,
        ServerOptions {
            cert: Some(&cert),
            auth: Some(("ses-user", "ses-password")),
            ..ServerOptions::default()
        },
    );
    // The server only advertises AUTH after STARTTLS (aiosmtpd's auth_require_tls).
    let s = with_auth(
        secret(TLS_NAME, server.port, false),
        "ses-user",
        "ses-password",
    );
    let m = mailer(
        &s,
        MailerOptions {
            connect_to: Some("127.0.0.1".to_owned()),
            ..trusting(&cert)
        },
    );
    assert_eq!(m.security(), SmtpSecurity::StartTls);
    let id = accepted(m.send(&email(&["ana@example.com"])).await);

    let got = server.only_message();
    assert_eq!(got.record["starttls"], true, "STARTTLS was negotiated");
    let version = got.record["tls_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        version.starts_with("TLSv1.2") || version.starts_with("TLSv1.3"),
        "{version}"
    );
    assert_eq!(got.record["authenticated"], true);
    assert_eq!(got.record["auth_login"], "ses-user");
    assert_eq!(got.one_header("Message-ID"), id);
}

#[tokio::test]
async fn implicit_tls_delivers_with_the_test_trusted_certificate() {
    let cert = TestCert::new();
    let server = SmtpServer::start(
        Mode::ImplicitTls,
        ServerOptions {
            cert: Some(&cert),
            ..ServerOptions::default()
        },
    );
    // Addressed by IP (the certificate has an IP SAN) and by a name via connect_to.
    for (host, connect_to) in [
        ("127.0.0.1", None),
        (TLS_NAME, Some("127.0.0.1".to_owned())),
    ] {
        let m = mailer(
            &secret(host, server.port, true),
            MailerOptions {
                connect_to,
                ..trusting(&cert)
            },
        );
        assert_eq!(m.security(), SmtpSecurity::ImplicitTls);
        accepted(m.send(&email(&["ana@example.com"])).await);
    }
    let got = server.messages();
    assert_eq!(got.len(), 2);
    for r in &got {
        // TLS from the first byte: no STARTTLS, but a TLS session.
        assert_eq!(r.record["starttls"], false);
        assert!(
            r.record["tls_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{}",
            r.record
        );
    }
}

#[tokio::test]
async fn a_non_loopback_host_without_starttls_is_refused_before_any_mail() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    // The same plain server works when configured as loopback ...
    accepted(
        plain_mailer(&server)
            .send(&email(&["ana@example.com"]))
            .await,
    );
    // ... but named as a remote host, STARTTLS is required and the server offers none.
    let m = mailer(
        &secret(TLS_NAME, server.port, false),
        MailerOptions {
            connect_to: Some("127.0.0.1".to_owned()),
            ..MailerOptions::default()
        },
    );
    assert_eq!(m.security(), SmtpSecurity::StartTls);
    let f = failed(m.send(&email(&["bruno@example.com"])).await);
    assert_eq!(f.class, FailureClass::Retryable, "{f:?}");
    assert_eq!(f.error.source, "smtp");
    assert!(f.error.message.contains("STARTTLS"), "{f:?}");
    assert_eq!(server.messages().len(), 1, "nothing more was delivered");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let cert = TestCert::new();
    let server = SmtpServer::start(
        Mode::StartTls,
        ServerOptions {
            cert: Some(&cert),
            ..ServerOptions::default()
        },
    );
    let m = mailer(
        &secret(TLS_NAME, server.port, false),
        MailerOptions {
            connect_to: Some("127.0.0.1".to_owned()),
            ..MailerOptions::default()
        },
    );
    let f = failed(m.send(&email(&["ana@example.com"])).await);
    assert_eq!(f.class, FailureClass::Retryable, "{f:?}");
    // A certificate for another name is refused even when trusted.
    let other = mailer(
        &secret("mail.elsewhere.test", server.port, false),
        MailerOptions {
            connect_to: Some("127.0.0.1".to_owned()),
            ..trusting(&cert)
        },
    );
    let f = failed(other.send(&email(&["ana@example.com"])).await);
    assert_eq!(f.class, FailureClass::Retryable, "{f:?}");
    assert!(server.messages().is_empty());
}

// ---- failures -----------------------------------------------------------------------------

#[tokio::test]
async fn error_replies_map_to_failure_classes() {
    let server = SmtpServer::start(
        Mode::Plain,
        ServerOptions {
            failures: vec![
                ("RCPT", "busy@example.com", "450 4.2.1 mailbox busy"),
                ("RCPT", "nobody@example.com", "550 5.1.1 no such user"),
                (
                    "MAIL",
                    "throttled@carteiro.example",
                    "454 4.7.0 Throttling failure: Maximum sending rate exceeded.",
                ),
                (
                    "MAIL",
                    "later@carteiro.example",
                    "421 4.7.0 Try again later",
                ),
                (
                    "DATA",
                    "policy@example.com",
                    "554 5.7.1 Message rejected: Email address is not verified.",
                ),
                ("RCPT", "odd@example.com", "451 temporary local problem"),
            ],
            ..ServerOptions::default()
        },
    );
    let m = plain_mailer(&server);
    /// (MAIL FROM, RCPT TO, class, reply code, enhanced code)
    type Case<'a> = (
        Option<&'a str>,
        &'a str,
        FailureClass,
        &'a str,
        Option<&'a str>,
    );
    let cases: [Case<'_>; 6] = [
        (
            None,
            "busy@example.com",
            FailureClass::Retryable,
            "450",
            Some("4.2.1"),
        ),
        (
            None,
            "nobody@example.com",
            FailureClass::Permanent,
            "550",
            Some("5.1.1"),
        ),
        (
            Some("throttled@carteiro.example"),
            "ana@example.com",
            FailureClass::Throttled,
            "454",
            Some("4.7.0"),
        ),
        (
            Some("later@carteiro.example"),
            "ana@example.com",
            FailureClass::Throttled,
            "421",
            Some("4.7.0"),
        ),
        (
            None,
            "policy@example.com",
            FailureClass::Permanent,
            "554",
            Some("5.7.1"),
        ),
        (
            None,
            "odd@example.com",
            FailureClass::Retryable,
            "451",
            None,
        ),
    ];
    for (from, to, class, code, enhanced) in cases {
        let mut msg = email(&[to]);
        msg.from = from.map(str::to_owned);
        let f = failed(m.send(&msg).await);
        assert_eq!(f.class, class, "{to}: {f:?}");
        assert_eq!(f.error.source, "smtp");
        assert_eq!(f.error.code, code, "{to}: {f:?}");
        // The enhanced code first; a refusal at RCPT names the refused address after it.
        let details = f.error.details.as_deref().unwrap_or("");
        let first = details
            .split(' ')
            .next()
            .filter(|t| !t.is_empty() && !t.starts_with("rcpt="));
        assert_eq!(first, enhanced, "{to}: {f:?}");
        assert!(!f.error.message.is_empty());
        assert_eq!(f.retry_after, None);
    }
    let f = failed(m.send(&email(&["nobody@example.com"])).await);
    assert_eq!(f.error.message, "5.1.1 no such user");
    assert_eq!(
        f.error.details.as_deref(),
        Some("5.1.1 rcpt=nobody@example.com"),
        "the refused recipient is named, so it can be suppressed"
    );
    // After all those refusals the pooled connection still delivers.
    accepted(m.send(&email(&["ana@example.com"])).await);
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn refused_credentials_are_a_token_failure() {
    let server = SmtpServer::start(
        Mode::Plain,
        ServerOptions {
            auth: Some(("user", "right")),
            auth_plain_ok: true,
            ..ServerOptions::default()
        },
    );
    let wrong = mailer(
        &with_auth(secret("127.0.0.1", server.port, false), "user", "wrong"),
        MailerOptions::default(),
    );
    let f = failed(wrong.send(&email(&["ana@example.com"])).await);
    assert_eq!(f.class, FailureClass::Token, "{f:?}");
    assert_eq!(f.error.code, "535");
    assert_eq!(f.error.details.as_deref(), Some("5.7.8"));
    assert!(!f.error.message.contains("wrong"), "{f:?}");
    assert!(!format!("{wrong:?}").contains("wrong"));

    let right = mailer(
        &with_auth(secret("127.0.0.1", server.port, false), "user", "right"),
        MailerOptions::default(),
    );
    accepted(right.send(&email(&["ana@example.com"])).await);
    let got = server.only_message();
    assert_eq!(got.record["authenticated"], true);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let m = mailer(
        &secret("127.0.0.1", closed_port(), false),
        MailerOptions::default(),
    );
    let f = failed(m.send(&email(&["ana@example.com"])).await);
    assert_eq!(f.class, FailureClass::Retryable, "{f:?}");
    assert_eq!(f.error.source, "smtp");
    assert_eq!(f.error.code, "connection", "{f:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_as_retryable() {
    // Accepts the connection and never greets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let s = SmtpSettings {
        timeout: Duration::from_millis(300),
        ..SmtpSettings::default()
    };
    let m = SmtpMailer::new(
        &secret("127.0.0.1", port, false),
        &s,
        MailerOptions::default(),
    )
    .unwrap();
    let started = Instant::now();
    let f = failed(m.send(&email(&["ana@example.com"])).await);
    let took = started.elapsed();
    assert_eq!(f.class, FailureClass::Retryable, "{f:?}");
    assert_eq!(f.error.code, "timeout", "{f:?}");
    assert!(
        took < Duration::from_secs(5),
        "the configured timeout applies: {took:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn a_server_that_stops_answering_times_out_and_its_connection_is_not_reused() {
    let server = SmtpServer::start(
        Mode::Plain,
        ServerOptions {
            failures: vec![("MAIL", "hang@carteiro.example", "HANG")],
            ..ServerOptions::default()
        },
    );
    let s = SmtpSettings {
        timeout: Duration::from_millis(500),
        ..SmtpSettings::default()
    };
    let m = SmtpMailer::new(
        &secret("127.0.0.1", server.port, false),
        &s,
        MailerOptions::default(),
    )
    .unwrap();
    // Warm the pool so the hang happens on a pooled connection.
    accepted(m.send(&email(&["ana@example.com"])).await);
    let mut msg = email(&["bruno@example.com"]);
    msg.from = Some("hang@carteiro.example".to_owned());
    let started = Instant::now();
    let f = failed(m.send(&msg).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.class, FailureClass::Retryable, "{f:?}");
    assert_eq!(f.error.code, "timeout", "{f:?}");
    // The next send gets a fresh connection, not the one with a reply still pending.
    accepted(m.send(&email(&["carla@example.com"])).await);
    let got = server.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpt_tos(), ["carla@example.com"]);
    assert_ne!(got[0].record["peer_port"], got[1].record["peer_port"]);
}

#[tokio::test]
async fn no_reply_after_the_content_is_reported_as_ambiguous() {
    let server = SmtpServer::start(
        Mode::Plain,
        ServerOptions {
            failures: vec![
                ("DATA", "hang@example.com", "HANG"),
                ("DATA", "drop@example.com", "DROP"),
            ],
            ..ServerOptions::default()
        },
    );
    let s = SmtpSettings {
        timeout: Duration::from_millis(500),
        ..SmtpSettings::default()
    };
    let m = SmtpMailer::new(
        &secret("127.0.0.1", server.port, false),
        &s,
        MailerOptions::default(),
    )
    .unwrap();
    for to in ["hang@example.com", "drop@example.com"] {
        let f = failed(m.send(&email(&[to])).await);
        assert_eq!(f.class, FailureClass::Unknown, "{to}: {f:?}");
        assert_eq!(f.error.code, "no_reply_after_data", "{to}: {f:?}");
        assert!(f.error.message.contains("may have queued"), "{f:?}");
    }
    accepted(m.send(&email(&["ana@example.com"])).await);
    assert_eq!(server.only_message().rcpt_tos(), ["ana@example.com"]);
}

#[tokio::test]
async fn a_non_ascii_address_towards_a_server_without_smtputf8_is_permanent() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    let m = plain_mailer(&server);
    let f = failed(m.send(&email(&["joão@exemplo.com.br"])).await);
    assert_eq!(f.class, FailureClass::Permanent, "{f:?}");
    assert!(server.messages().is_empty());

    let utf8 = SmtpServer::start(
        Mode::Plain,
        ServerOptions {
            smtputf8: true,
            ..ServerOptions::default()
        },
    );
    accepted(
        plain_mailer(&utf8)
            .send(&email(&["joão@exemplo.com.br"]))
            .await,
    );
    assert_eq!(utf8.only_message().rcpt_tos(), ["joão@exemplo.com.br"]);
}

#[tokio::test]
async fn a_bad_template_fails_permanently_without_connecting() {
    // Nothing listens: a connection attempt would be a retryable failure instead.
    let m = mailer(
        &secret("127.0.0.1", closed_port(), false),
        MailerOptions::default(),
    );
    let mut msg = email(&["ana@example.com"]);
    msg.body = EmailBody::Template {
        name: "nope".to_owned(),
        variables: serde_json::Map::new(),
    };
    let f = failed(m.send(&msg).await);
    assert_eq!(f.class, FailureClass::Permanent);
    assert_eq!(f.error.source, "carteiro");
    assert_eq!(f.error.code, "unknown_template");
    assert!(f.error.message.contains("\"nope\""), "{f:?}");

    msg.body = EmailBody::Template {
        name: "welcome".to_owned(),
        variables: json!({"name": "Ana"}).as_object().cloned().unwrap(),
    };
    let f = failed(m.send(&msg).await);
    assert_eq!(f.error.code, "missing_template_variable");
    assert!(f.error.message.contains("app_name"), "{f:?}");
}

// ---- header injection ---------------------------------------------------------------------

const INJECTED_SUBJECT: &str = "Oi\r\nBcc: evil@attacker.example\r\nX-Injected: yes";

fn no_injected_header(lines: &[&str]) {
    for line in lines {
        let lower = line.to_ascii_lowercase();
        assert!(!lower.starts_with("bcc:"), "injected header line: {line:?}");
        assert!(
            !lower.starts_with("x-injected:"),
            "injected header line: {line:?}"
        );
    }
}

#[test]
fn the_validator_refuses_a_subject_with_line_breaks() {
    let body = json!({
        "channel": "email",
        "to": "ana@example.com",
        "subject": INJECTED_SUBJECT,
        "text": "x",
    });
    let err = SendRequest::parse(&body).unwrap_err();
    assert_eq!(err.field, "subject");
}

#[tokio::test]
async fn lettre_never_emits_an_injected_header() {
    let server = SmtpServer::start(Mode::Plain, ServerOptions::default());
    let m = plain_mailer(&server);

    // Past the validator (a bug elsewhere): the subject is encoded, never split into headers.
    let mut msg = email(&["ana@example.com"]);
    msg.subject = INJECTED_SUBJECT.to_owned();
    msg.attachments = vec![Attachment {
        filename: "a\r\nX-Injected: yes.txt".to_owned(),
        content_type: "text/plain".to_owned(),
        content: b"x".to_vec(),
    }];
    let built = m.build_message(&msg).unwrap();
    let formatted = String::from_utf8(built.message.formatted()).unwrap();
    let lines: Vec<&str> = formatted.split("\r\n").collect();
    no_injected_header(&lines);

    accepted(m.send(&msg).await);
    let got = server.only_message();
    no_injected_header(&got.raw_header_lines());
    assert!(got.header("Bcc").is_empty() && got.header("X-Injected").is_empty());
    assert_eq!(got.rcpt_tos(), ["ana@example.com"], "no injected recipient");
    assert_eq!(got.header("Subject").len(), 1);

    // A display name with a line break is refused as an address.
    let mut bad_from = email(&["ana@example.com"]);
    bad_from.from = Some("Ana\r\nBcc: evil@attacker.example <ana@example.com>".to_owned());
    match m.build_message(&bad_from) {
        Err(e) => assert_eq!(e.code(), "invalid_address"),
        Ok(b) => no_injected_header(
            &String::from_utf8(b.message.formatted())
                .unwrap()
                .split("\r\n")
                .collect::<Vec<_>>(),
        ),
    }

    // A template variable cannot break the subject either.
    let mut templated = email(&["ana@example.com"]);
    templated.body = EmailBody::Template {
        name: "welcome".to_owned(),
        variables: json!({"name": "x\r\nBcc: evil@attacker.example", "app_name": "Loja"})
            .as_object()
            .cloned()
            .unwrap(),
    };
    let f = failed(m.send(&templated).await);
    assert_eq!(f.class, FailureClass::Permanent);
    assert_eq!(f.error.code, "template_render_failed");
    assert_eq!(server.messages().len(), 1);
}
