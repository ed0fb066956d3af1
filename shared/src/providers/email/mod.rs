//! The SMTP provider: lettre's async SMTP connection, with a small pool and timeouts of ours.
//! This module holds the mailer and its configuration; `mime` turns an email into MIME,
//! `connection` opens, pools and drives connections and judges a failed exchange.
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

mod connection;
mod mime;

pub use mime::{BuiltEmail, EmailBuildError};

use crate::domain::message::EmailMessage;
use crate::providers::SendOutcome;
use crate::providers::templates::EmailTemplates;
use async_trait::async_trait;
use connection::{ConnectionTls, Connector, Idle, transport_failure};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use secrecy::ExposeSecret;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Sends email. Implemented by [`SmtpMailer`]; faked in tests of the layers above.
#[async_trait]
pub trait EmailSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, email: &EmailMessage) -> SendOutcome;
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
