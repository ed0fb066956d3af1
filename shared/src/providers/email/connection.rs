//! Connections to the relay: opening one (TCP, TLS, EHLO, STARTTLS, AUTH) under the mailer's
//! timeout, the small pool, one SMTP transaction, the probe, and what a failed exchange means.

use super::{ERROR_SOURCE, MAX_CONNECTION_AGE, NO_REPLY_AFTER_DATA, SmtpMailer};
use crate::domain::delivery::DeliveryError;
use crate::providers::{FailureClass, SendFailure};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

/// How to open a connection: where, with which TLS, as whom.
pub(super) struct Connector {
    pub(super) connect_host: String,
    pub(super) port: u16,
    pub(super) tls: ConnectionTls,
    pub(super) hello: ClientId,
    pub(super) credentials: Option<Credentials>,
    pub(super) timeout: Duration,
}

/// The TLS of a connection, with the parameters its mode needs.
pub(super) enum ConnectionTls {
    Plain,
    StartTls(TlsParameters),
    Wrapper(TlsParameters),
}

/// An idle connection in the pool.
pub(super) struct Idle {
    conn: AsyncSmtpConnection,
    opened: Instant,
    since: Instant,
}

/// Where a send failed; a failure without a reply in `Content` is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Connect,
    Envelope,
    Content,
}

/// A failed SMTP exchange.
#[derive(Debug)]
pub(super) enum TransportError {
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
    pub(super) async fn deliver(
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

/// The [`SendFailure`] for a failed exchange: [`failure`] for lettre's errors, except that a
/// failure without a reply once the content was written is [`NO_REPLY_AFTER_DATA`].
pub(super) fn transport_failure(err: &TransportError) -> SendFailure {
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

use crate::domain::suppression::RCPT_PREFIX;
use crate::providers::smtp_reply::failure;
