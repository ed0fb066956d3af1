//! The local runtime's email sandbox: with no `smtp` secret configured, emails are built
//! exactly as the SMTP mailer would build them and kept in memory instead of being sent, so
//! an app can be developed end to end without a mail server.

use crate::config::SmtpSettings;
use crate::domain::ids::MessageId;
use crate::domain::message::EmailMessage;
use crate::domain::payload::DeliveryPayload;
use crate::domain::time::Timestamp;
use crate::ports::provider::Provider;
use crate::providers::SendOutcome;
use crate::providers::email::{EmailSender, MailerOptions, SmtpConfigError, SmtpMailer};
use crate::secrets::SmtpSecret;
use async_trait::async_trait;
use std::sync::{Mutex, PoisonError};

/// The `From` used when a message names none.
pub const SANDBOX_FROM: &str = "Carteiro Sandbox <sandbox@carteiro.invalid>";

/// One email the sandbox took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxEmail {
    /// Envelope recipients: To, Cc and Bcc.
    pub recipients: Vec<String>,
    pub message_id: String,
    /// The whole message as it would have gone over SMTP (RFC 5322, MIME).
    pub raw: String,
    pub accepted_at: Timestamp,
}

/// An [`EmailSender`] that keeps what it is given.
#[derive(Debug)]
pub struct EmailOutbox {
    /// Used only to build messages; it never connects.
    builder: SmtpMailer,
    emails: Mutex<Vec<SandboxEmail>>,
}

impl EmailOutbox {
    pub fn new(options: MailerOptions) -> Result<Self, SmtpConfigError> {
        let secret = SmtpSecret {
            smtp_host: "sandbox.carteiro.invalid".to_owned(),
            smtp_port: 587,
            smtp_user: None,
            smtp_password: None,
            from_email: SANDBOX_FROM.to_owned(),
            use_ssl: false,
            rate_limit: None,
            relays: Vec::new(),
        };
        Ok(Self {
            builder: SmtpMailer::new(&secret, &SmtpSettings::default(), options)?,
            emails: Mutex::new(Vec::new()),
        })
    }

    /// Every email taken so far, oldest first.
    pub fn emails(&self) -> Vec<SandboxEmail> {
        self.emails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Provider for EmailOutbox {
    async fn send(&self, _id: &MessageId, payload: &DeliveryPayload, _fresh: bool) -> SendOutcome {
        match payload {
            DeliveryPayload::EmailV1 { email } => EmailSender::send(self, email).await,
            other => SendOutcome::Failed(crate::providers::wrong_channel(other)),
        }
    }
}

#[async_trait]
impl EmailSender for EmailOutbox {
    async fn send(&self, email: &EmailMessage) -> SendOutcome {
        let built = match self.builder.build_message(email) {
            Ok(built) => built,
            Err(e) => return SendOutcome::Failed(e.into_failure()),
        };
        let recipients = email
            .to
            .iter()
            .chain(&email.cc)
            .chain(&email.bcc)
            .cloned()
            .collect();
        let raw = String::from_utf8_lossy(&built.message.formatted()).into_owned();
        self.emails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(SandboxEmail {
                recipients,
                message_id: built.message_id.clone(),
                raw,
                accepted_at: Timestamp::now(),
            });
        tracing::info!(message_id = %built.message_id, "sandbox: email kept in memory, not sent");
        SendOutcome::Accepted {
            provider_message_id: built.message_id,
            message_status: Some("sandbox".to_owned()),
            response: None,
        }
    }
}
