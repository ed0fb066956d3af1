//! The SMTP provider: lettre's async SMTP connection, with a small pool and timeouts of ours.
//!
//! - **Transport security** is decided by the SMTP secret's `smtp_host`, never by the server:
//!   `use_ssl` → implicit TLS (port 465 style, [`SmtpSecurity::ImplicitTls`]); otherwise STARTTLS
//!   is **required** ([`SmtpSecurity::StartTls`]: a server that does not offer it, or a
//!   certificate that does not verify, fails the send before any credential or content is
//!   written). The one exception is a loopback host (`localhost`, `127.0.0.0/8`, `::1`), spoken
//!   to in plain text ([`SmtpSecurity::Plain`], no STARTTLS attempted): the traffic never leaves
//!   the machine, and a local relay's STARTTLS usually has a self-signed certificate (Postfix's
//!   snakeoil), which an opportunistic upgrade would then fail on.
//! - **Certificates** are checked against the Mozilla roots compiled in (`webpki-roots`), plus
//!   one extra root when [`MailerOptions::extra_root_certificate_pem`] is given (tests).
//! - **Timeouts and pool** come from [`SmtpSettings`]. lettre's async transport only bounds the
//!   TCP connect: a server that stops answering hangs a send forever, and cancelling a pooled
//!   send from outside returns a connection with a reply still pending to lettre's pool (the
//!   next message would read the previous one's reply). So the mailer drives
//!   [`AsyncSmtpConnection`] itself: connecting (TCP, TLS, EHLO, STARTTLS, AUTH) and then every
//!   command are each bounded by `timeout`; a connection that failed or timed out is dropped,
//!   never reused; idle connections are kept up to `pool_max_size`, checked with NOOP before
//!   reuse, and closed when idle longer than `pool_idle_timeout` or older than
//!   [`MAX_CONNECTION_AGE`] (SES asks clients not to hold connections for long). No background
//!   task: stale connections are dropped on the next checkout.
//! - **No reply after the content** (connection lost or timed out once the message was written)
//!   is ambiguous: the server may have queued it (RFC 1047). It is reported as retryable with
//!   code [`NO_REPLY_AFTER_DATA`] so dispatch can tell it apart from a clean failure.
//! - **Message-ID**: generated here as `<uuid-v7@from-domain>` and returned as the provider id;
//!   it is what the recipient's server and any bounce will quote.
//! - **Replies** are classified by [`classify`]: 4xx / `4.x.x` retryable (421 and 454
//!   throttled), 535 / `5.7.8` token, other 5xx / `5.x.x` permanent, and every failure without
//!   a reply (connection, TLS, timeout) retryable.
//!
//! Secrets: the password only reaches lettre's `Credentials` (whose `Debug` is empty);
//! [`SmtpMailer`]'s `Debug` shows the host, port and security, and errors quote only the
//! server's replies and lettre's error kinds. lettre's `tracing` feature stays off: it logs
//! every line written at debug level, `AUTH PLAIN <base64 user+password>` included.

use crate::domain::delivery::DeliveryError;
use crate::domain::message::{EmailBody, EmailMessage};
use crate::providers::templates::{EmailTemplates, TemplateError};
use crate::providers::{FailureClass, SendFailure, SendOutcome};
use async_trait::async_trait;
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use secrecy::ExposeSecret;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::secrets::SmtpSecret;

/// `DeliveryError::source` for failures reported by the SMTP server or connection.
pub const ERROR_SOURCE: &str = "smtp";

use crate::config::SmtpSettings;
/// A pooled connection is not reused once this old (SES rotates its endpoints behind a load
/// balancer and advises against long-lived connections).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// `DeliveryError::code` when the connection failed after the message content was written and
/// before the server's reply: the message may or may not have been queued (RFC 1047).
pub const NO_REPLY_AFTER_DATA: &str = "no_reply_after_data";

/// How the mailer protects the connection, decided by the configured host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (`use_ssl`, usually port 465).
    ImplicitTls,
    /// Plain connection upgraded with STARTTLS; refusing servers that do not offer it.
    StartTls,
    /// No TLS: only ever chosen for loopback hosts.
    Plain,
}

/// `localhost`, `127.0.0.0/8`, `::1` (also bracketed, and IPv4-mapped). Names other than
/// `localhost` are never trusted to be local, whatever they resolve to.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Extras for building a mailer; all optional.
#[derive(Debug, Clone, Default)]
pub struct MailerOptions {
    /// Templates for `EmailBody::Template`; the embedded set when absent.
    pub templates: Option<Arc<EmailTemplates>>,
    /// One more trusted root certificate (PEM), on top of the Mozilla roots. For tests and
    /// private relays.
    pub extra_root_certificate_pem: Option<Vec<u8>>,
    /// Connect to this host or IP instead of `smtp_host`, like curl's `--connect-to`: the
    /// security policy and certificate check still use `smtp_host`. For tests (a
    /// non-loopback name served on 127.0.0.1) and private endpoints.
    pub connect_to: Option<String>,
}

/// A mailer that cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("smtp_host is empty")]
    EmptyHost,
    #[error("from_email is not a valid mailbox: {0}")]
    InvalidFrom(String),
    #[error("smtp_user and smtp_password must be given together")]
    HalfCredentials,
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

/// A message that cannot be turned into MIME (refused before any connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailBuildError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{field}: not a valid mailbox: {reason}")]
    Address { field: String, reason: String },
    #[error("attachments[{index}].content_type: {reason}")]
    ContentType { index: usize, reason: String },
    #[error("the email has neither a text nor an HTML body")]
    NoBody,
    #[error("the message could not be built: {0}")]
    Message(String),
}

impl EmailBuildError {
    /// A message that cannot be built will never be sent: a permanent failure, before any
    /// connection.
    pub fn into_failure(self) -> SendFailure {
        SendFailure {
            class: FailureClass::Permanent,
            error: DeliveryError {
                source: "carteiro".to_owned(),
                code: self.code().to_owned(),
                message: self.to_string(),
                details: None,
            },
            retry_after: None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Template(e) => e.code(),
            Self::Address { .. } => "invalid_address",
            Self::ContentType { .. } => "invalid_content_type",
            Self::NoBody => "missing_content",
            Self::Message(_) => "invalid_email",
        }
    }
}

/// A built message and the Message-ID it carries (the provider id).
#[derive(Debug, Clone)]
pub struct BuiltEmail {
    pub message: Message,
    /// The `Message-ID` header value, angle brackets included: `<…@domain>`.
    pub message_id: String,
}

/// Sends email. Implemented by [`SmtpMailer`]; faked in tests of the layers above.
#[async_trait]
pub trait EmailSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, email: &EmailMessage) -> SendOutcome;
}

/// How to open a connection: where, with which TLS, as whom.
struct Connector {
    connect_host: String,
    port: u16,
    tls: ConnectionTls,
    hello: ClientId,
    credentials: Option<Credentials>,
    timeout: Duration,
}

/// The TLS of a connection, with the parameters its mode needs.
enum ConnectionTls {
    Plain,
    StartTls(TlsParameters),
    Wrapper(TlsParameters),
}

/// An idle connection in the pool.
struct Idle {
    conn: AsyncSmtpConnection,
    opened: Instant,
    since: Instant,
}

/// Where a send failed; a failure without a reply in `Content` is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Envelope,
    Content,
}

/// A failed SMTP exchange.
#[derive(Debug)]
enum TransportError {
    /// lettre's error: a negative reply, or a connection, TLS or protocol failure.
    Smtp {
        error: lettre::transport::smtp::Error,
        stage: Stage,
    },
    /// The server refused one recipient at RCPT.
    Refused {
        error: lettre::transport::smtp::Error,
        address: String,
    },
    /// Our timeout elapsed.
    Timeout { stage: Stage },
    /// The message needs an extension the server lacks (SMTPUTF8, 8BITMIME).
    Unsupported(&'static str),
}

/// An SMTP client for one SMTP secret: a connection pool, the default sender and the
/// templates. Build once per secret (in INIT) and share (`Arc`).
pub struct SmtpMailer {
    connector: Connector,
    idle: Mutex<Vec<Idle>>,
    pool_max_size: usize,
    pool_idle_timeout: Duration,
    templates: Arc<EmailTemplates>,
    default_from: Mailbox,
    host: String,
    port: u16,
    security: SmtpSecurity,
    authenticates: bool,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("authenticates", &self.authenticates)
            .field("timeout", &self.connector.timeout)
            .field("pool_max_size", &self.pool_max_size)
            .finish_non_exhaustive()
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

impl SmtpMailer {
    /// Checks the configuration and builds the mailer; connections open on the first send.
    pub fn new(
        secret: &SmtpSecret,
        settings: &SmtpSettings,
        options: MailerOptions,
    ) -> Result<Self, SmtpConfigError> {
        let host = secret.smtp_host.trim().to_owned();
        if host.is_empty() {
            return Err(SmtpConfigError::EmptyHost);
        }
        let default_from: Mailbox =
            secret
                .from_email
                .trim()
                .parse()
                .map_err(|e: lettre::address::AddressError| {
                    SmtpConfigError::InvalidFrom(e.to_string())
                })?;

        let security = if secret.use_ssl {
            SmtpSecurity::ImplicitTls
        } else if is_loopback_host(&host) {
            SmtpSecurity::Plain
        } else {
            SmtpSecurity::StartTls
        };
        let tls = match security {
            SmtpSecurity::Plain => ConnectionTls::Plain,
            SmtpSecurity::ImplicitTls | SmtpSecurity::StartTls => {
                // The certificate must name the configured host, wherever we connect.
                let tls_name = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(&host)
                    .to_owned();
                let mut params = TlsParameters::builder(tls_name);
                if let Some(pem) = &options.extra_root_certificate_pem {
                    // lettre accepts a PEM with no certificate in it; we do not.
                    let marker = b"-----BEGIN CERTIFICATE-----";
                    if !pem.windows(marker.len()).any(|w| w == marker) {
                        return Err(SmtpConfigError::Tls(
                            "the extra root certificate PEM holds no certificate".to_owned(),
                        ));
                    }
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| SmtpConfigError::Tls(e.to_string()))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build()
                    .map_err(|e| SmtpConfigError::Tls(e.to_string()))?;
                if security == SmtpSecurity::ImplicitTls {
                    ConnectionTls::Wrapper(params)
                } else {
                    ConnectionTls::StartTls(params)
                }
            }
        };

        let user = non_empty(secret.smtp_user.as_deref());
        let password = non_empty(secret.smtp_password.as_ref().map(|p| p.expose_secret()));
        let credentials = match (user, password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.to_owned(), password.to_owned()))
            }
            (None, None) => None,
            _ => return Err(SmtpConfigError::HalfCredentials),
        };
        let authenticates = credentials.is_some();

        Ok(Self {
            connector: Connector {
                connect_host: options.connect_to.clone().unwrap_or_else(|| host.clone()),
                port: secret.smtp_port,
                tls,
                hello: ClientId::default(),
                credentials,
                timeout: settings.timeout,
            },
            idle: Mutex::new(Vec::new()),
            pool_max_size: usize::try_from(settings.pool_max_size).unwrap_or(usize::MAX),
            pool_idle_timeout: settings.pool_idle_timeout,
            templates: options
                .templates
                .unwrap_or_else(|| Arc::new(EmailTemplates::embedded())),
            default_from,
            host,
            port: secret.smtp_port,
            security,
            authenticates,
        })
    }

    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    pub fn templates(&self) -> &EmailTemplates {
        &self.templates
    }

    /// Turns a validated email into MIME: headers, body (rendering its template), attachments,
    /// and a fresh Message-ID. Bcc recipients go to the envelope only, never into a header.
    pub fn build_message(&self, email: &EmailMessage) -> Result<BuiltEmail, EmailBuildError> {
        let mailbox = |field: &str, s: &str| -> Result<Mailbox, EmailBuildError> {
            s.trim().parse().map_err(
                |e: lettre::address::AddressError| EmailBuildError::Address {
                    field: field.to_owned(),
                    reason: e.to_string(),
                },
            )
        };

        let from = match &email.from {
            Some(f) => mailbox("from", f)?,
            None => self.default_from.clone(),
        };
        // The sender's domain (deliverability checks like it), unless it is an IDN, which a
        // header cannot hold as is.
        let domain = Some(from.email.domain())
            .filter(|d| d.is_ascii())
            .unwrap_or("carteiro.invalid");
        let message_id = format!("<{}@{domain}>", uuid::Uuid::now_v7().simple());

        let (subject, text, html) = match &email.body {
            EmailBody::Content { text, html } => {
                (email.subject.clone(), text.clone(), html.clone())
            }
            EmailBody::Template { name, variables } => {
                let rendered = self.templates.render(name, variables)?;
                (
                    rendered.subject.unwrap_or_else(|| email.subject.clone()),
                    rendered.text,
                    rendered.html,
                )
            }
        };

        let mut builder = Message::builder()
            .from(from)
            .subject(subject)
            .message_id(Some(message_id.clone()));
        for (i, to) in email.to.iter().enumerate() {
            builder = builder.to(mailbox(&format!("to[{i}]"), to)?);
        }
        for (i, cc) in email.cc.iter().enumerate() {
            builder = builder.cc(mailbox(&format!("cc[{i}]"), cc)?);
        }
        for (i, bcc) in email.bcc.iter().enumerate() {
            builder = builder.bcc(mailbox(&format!("bcc[{i}]"), bcc)?);
        }
        if let Some(reply_to) = &email.reply_to {
            builder = builder.reply_to(mailbox("reply_to", reply_to)?);
        }

        enum Body {
            Single(SinglePart),
            Multi(MultiPart),
        }
        let body = match (text, html) {
            (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(text, html)),
            (Some(text), None) => Body::Single(SinglePart::plain(text)),
            (None, Some(html)) => Body::Single(SinglePart::html(html)),
            (None, None) => return Err(EmailBuildError::NoBody),
        };

        let built = if email.attachments.is_empty() {
            match body {
                Body::Single(part) => builder.singlepart(part),
                Body::Multi(part) => builder.multipart(part),
            }
        } else {
            let mut mixed = match body {
                Body::Single(part) => MultiPart::mixed().singlepart(part),
                Body::Multi(part) => MultiPart::mixed().multipart(part),
            };
            for (index, a) in email.attachments.iter().enumerate() {
                let content_type = ContentType::parse(&a.content_type).map_err(|e| {
                    EmailBuildError::ContentType {
                        index,
                        reason: e.to_string(),
                    }
                })?;
                mixed = mixed.singlepart(
                    Attachment::new(a.filename.clone()).body(a.content.clone(), content_type),
                );
            }
            builder.multipart(mixed)
        };
        let message = built.map_err(|e| EmailBuildError::Message(e.to_string()))?;
        Ok(BuiltEmail {
            message,
            message_id,
        })
    }
}

/// Runs `fut` under the mailer's timeout, tagging errors with the stage.
async fn bounded<T>(
    timeout: Duration,
    stage: Stage,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(error)) => Err(TransportError::Smtp { error, stage }),
        Err(_) => Err(TransportError::Timeout { stage }),
    }
}

impl Connector {
    /// Opens a connection ready for MAIL: TCP (+ TLS), greeting, EHLO, STARTTLS, AUTH, all
    /// within one timeout.
    async fn connect(&self) -> Result<AsyncSmtpConnection, TransportError> {
        let open = async {
            let wrapper = match &self.tls {
                ConnectionTls::Wrapper(params) => Some(params.clone()),
                ConnectionTls::StartTls(_) | ConnectionTls::Plain => None,
            };
            let mut conn = AsyncSmtpConnection::connect_tokio1(
                (self.connect_host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                wrapper,
                None,
            )
            .await?;
            if let ConnectionTls::StartTls(params) = &self.tls {
                // Fails when the server does not offer STARTTLS: never falls back to plain.
                conn.starttls(params.clone(), &self.hello).await?;
            }
            if let Some(credentials) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await?;
            }
            Ok(conn)
        };
        bounded(self.timeout, Stage::Connect, open).await
    }
}

impl SmtpMailer {
    /// An idle connection that still answers NOOP, or a new one.
    async fn checkout(&self) -> Result<(AsyncSmtpConnection, Instant), TransportError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(mut idle) = idle else {
                return Ok((self.connector.connect().await?, Instant::now()));
            };
            if idle.since.elapsed() >= self.pool_idle_timeout
                || idle.opened.elapsed() >= MAX_CONNECTION_AGE
            {
                continue; // dropped: the server has likely closed it anyway
            }
            let alive = tokio::time::timeout(self.connector.timeout, idle.conn.test_connected())
                .await
                .unwrap_or(false);
            if alive {
                return Ok((idle.conn, idle.opened));
            }
        }
    }

    /// Returns a healthy connection to the pool, or drops it when the pool is full.
    fn checkin(&self, conn: AsyncSmtpConnection, opened: Instant) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.pool_max_size {
            idle.push(Idle {
                conn,
                opened,
                since: Instant::now(),
            });
        }
    }

    /// One SMTP transaction: MAIL, RCPT for every envelope recipient, DATA, the content.
    /// A connection is reused only after a transaction that succeeded.
    async fn deliver(
        &self,
        envelope: &Envelope,
        content: &[u8],
    ) -> Result<Response, TransportError> {
        let (mut conn, opened) = self.checkout().await?;
        let result = self.transaction(&mut conn, envelope, content).await;
        if result.is_ok() {
            self.checkin(conn, opened);
        }
        result
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        content: &[u8],
    ) -> Result<Response, TransportError> {
        let timeout = self.connector.timeout;
        let mut params = Vec::new();
        let non_ascii_address = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii_address {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(TransportError::Unsupported(
                    "a non-ASCII address needs SMTPUTF8, which the server does not offer",
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !content.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(TransportError::Unsupported(
                    "8-bit content needs 8BITMIME, which the server does not offer",
                ));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        bounded(
            timeout,
            Stage::Envelope,
            conn.command(Mail::new(envelope.from().cloned(), params)),
        )
        .await?;
        for to in envelope.to() {
            let answered = bounded(
                timeout,
                Stage::Envelope,
                conn.command(Rcpt::new(to.clone(), Vec::new())),
            )
            .await;
            match answered {
                Err(TransportError::Smtp { error, .. }) if error.status().is_some() => {
                    return Err(TransportError::Refused {
                        error,
                        address: to.to_string(),
                    });
                }
                other => {
                    other?;
                }
            }
        }
        bounded(timeout, Stage::Envelope, conn.command(Data)).await?;
        bounded(timeout, Stage::Content, conn.message(content)).await
    }
}

impl SmtpMailer {
    /// Proves the relay takes us without sending anything: a fresh connection (TCP, TLS,
    /// EHLO, STARTTLS, AUTH, each bounded by the timeout), then NOOP and QUIT. What
    /// `carteiro check` and the sweeper's probes ask.
    pub async fn probe(&self) -> Result<(), SendFailure> {
        let mut conn = self
            .connector
            .connect()
            .await
            .map_err(|e| transport_failure(&e))?;
        let noop = bounded(
            self.connector.timeout,
            Stage::Envelope,
            conn.command(lettre::transport::smtp::commands::Noop),
        )
        .await;
        let _ = tokio::time::timeout(self.connector.timeout, conn.quit()).await;
        noop.map(|_| ()).map_err(|e| transport_failure(&e))
    }

    /// Whether the relay is asked to authenticate (a user and password are configured).
    pub fn authenticates(&self) -> bool {
        self.authenticates
    }
}

#[async_trait]
impl EmailSender for SmtpMailer {
    async fn send(&self, email: &EmailMessage) -> SendOutcome {
        let built = match self.build_message(email) {
            Ok(built) => built,
            Err(e) => return SendOutcome::Failed(e.into_failure()),
        };
        let envelope = built.message.envelope().clone();
        match self.deliver(&envelope, &built.message.formatted()).await {
            Ok(response) => {
                tracing::debug!(
                    message_id = %built.message_id,
                    reply = %response.code(),
                    reply_text = %response.message().collect::<Vec<_>>().join(" "),
                    "smtp accepted"
                );
                SendOutcome::Accepted {
                    provider_message_id: built.message_id,
                    message_status: None,
                    response: None,
                }
            }
            Err(e) => {
                let failure = transport_failure(&e);
                tracing::warn!(
                    host = %self.host,
                    class = failure.class.as_str(),
                    code = %failure.error.code,
                    error = %failure.error.message,
                    "smtp send failed"
                );
                SendOutcome::Failed(failure)
            }
        }
    }
}

/// The [`SendFailure`] for a failed exchange: [`failure`] for lettre's errors, except that a
/// failure without a reply once the content was written is [`NO_REPLY_AFTER_DATA`].
fn transport_failure(err: &TransportError) -> SendFailure {
    let ambiguous = |detail: String| SendFailure {
        class: FailureClass::Unknown,
        error: DeliveryError {
            source: ERROR_SOURCE.to_owned(),
            code: NO_REPLY_AFTER_DATA.to_owned(),
            message: format!(
                "no reply after the message was sent; the server may have queued it ({detail})"
            ),
            details: None,
        },
        retry_after: None,
    };
    match err {
        TransportError::Smtp { error, stage } => {
            if *stage == Stage::Content && error.status().is_none() {
                ambiguous(error.to_string())
            } else {
                failure(error)
            }
        }
        // The refused address goes with the enhanced code, so an unknown one can be suppressed.
        TransportError::Refused { error, address } => {
            let mut f = failure(error);
            f.error.details = Some(match f.error.details.take() {
                Some(enhanced) => format!("{enhanced} {RCPT_PREFIX}{address}"),
                None => format!("{RCPT_PREFIX}{address}"),
            });
            f
        }
        TransportError::Timeout {
            stage: Stage::Content,
        } => ambiguous("timed out".to_owned()),
        TransportError::Timeout { stage } => SendFailure {
            class: FailureClass::Retryable,
            error: DeliveryError {
                source: ERROR_SOURCE.to_owned(),
                code: "timeout".to_owned(),
                message: match stage {
                    Stage::Connect => "timed out connecting to the SMTP server",
                    _ => "timed out waiting for the SMTP server's reply",
                }
                .to_owned(),
                details: None,
            },
            retry_after: None,
        },
        TransportError::Unsupported(what) => SendFailure {
            class: FailureClass::Permanent,
            error: DeliveryError {
                source: ERROR_SOURCE.to_owned(),
                code: "unsupported".to_owned(),
                message: (*what).to_owned(),
                details: None,
            },
            retry_after: None,
        },
    }
}

use super::smtp_reply::failure;
use crate::domain::suppression::RCPT_PREFIX;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn secret(host: &str, use_ssl: bool) -> SmtpSecret {
        SmtpSecret {
            smtp_host: host.to_owned(),
            smtp_port: 587,
            smtp_user: Some("AKIAUSER".to_owned()),
            smtp_password: Some(SecretString::from("pa55w0rd-very-secret")),
            from_email: "Carteiro <noreply@carteiro.example>".to_owned(),
            use_ssl,
            rate_limit: None,
            relays: Vec::new(),
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "smtp.example.com",
            "10.0.0.1",
            "0.0.0.0",
            "localhost.example.com",
            "x.localhost",
            "::",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[tokio::test]
    async fn security_follows_the_configured_host() {
        let s = SmtpSettings::default();
        let m =
            |host, ssl| SmtpMailer::new(&secret(host, ssl), &s, MailerOptions::default()).unwrap();
        assert_eq!(
            m("email-smtp.us-east-1.amazonaws.com", false).security(),
            SmtpSecurity::StartTls
        );
        assert_eq!(
            m("smtp.example.com", true).security(),
            SmtpSecurity::ImplicitTls
        );
        assert_eq!(m("127.0.0.1", false).security(), SmtpSecurity::Plain);
        assert_eq!(m("localhost", true).security(), SmtpSecurity::ImplicitTls);
        // Connecting elsewhere does not relax the policy.
        let via = SmtpMailer::new(
            &secret("smtp.example.com", false),
            &s,
            MailerOptions {
                connect_to: Some("127.0.0.1".to_owned()),
                ..MailerOptions::default()
            },
        )
        .unwrap();
        assert_eq!(via.security(), SmtpSecurity::StartTls);
    }

    #[tokio::test]
    async fn debug_and_errors_never_show_the_password() {
        let m = SmtpMailer::new(
            &secret("smtp.example.com", false),
            &SmtpSettings::default(),
            MailerOptions::default(),
        )
        .unwrap();
        let shown = format!("{m:?}");
        assert!(!shown.contains("pa55w0rd"), "{shown}");
        assert!(!shown.contains("AKIAUSER"), "{shown}");
        assert!(shown.contains("smtp.example.com"));
    }

    #[tokio::test]
    async fn bad_configuration_is_refused() {
        let s = SmtpSettings::default();
        let mut half = secret("smtp.example.com", false);
        half.smtp_password = None;
        assert_eq!(
            SmtpMailer::new(&half, &s, MailerOptions::default()).unwrap_err(),
            SmtpConfigError::HalfCredentials
        );
        let mut from = secret("smtp.example.com", false);
        from.from_email = "not an address".to_owned();
        assert!(matches!(
            SmtpMailer::new(&from, &s, MailerOptions::default()),
            Err(SmtpConfigError::InvalidFrom(_))
        ));
        let empty = secret(" ", false);
        assert_eq!(
            SmtpMailer::new(&empty, &s, MailerOptions::default()).unwrap_err(),
            SmtpConfigError::EmptyHost
        );
        let bad_pem = MailerOptions {
            extra_root_certificate_pem: Some(b"not a pem".to_vec()),
            ..MailerOptions::default()
        };
        assert!(matches!(
            SmtpMailer::new(&secret("smtp.example.com", true), &s, bad_pem),
            Err(SmtpConfigError::Tls(_))
        ));
    }
}
