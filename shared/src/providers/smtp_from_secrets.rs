//! The email channel's [`Provider`]: the SMTP mailer is built from the current `smtp` secret,
//! kept while the secret is unchanged (its connection pool with it), and rebuilt from a freshly
//! read secret when asked for fresh credentials (the port's `Token` rule, after a 535).

use crate::config::SmtpSettings;
use crate::domain::ids::MessageId;
use crate::domain::payload::DeliveryPayload;
use crate::ports::provider::Provider;
use crate::providers::email::{EmailSender, MailerOptions, SmtpMailer};
use crate::providers::{FailureClass, SendFailure, SendOutcome, secret_failure};
use crate::resilience::rate::Rate;
use crate::secrets::{PRIMARY_RELAY, Secrets, SmtpSecret};
use async_trait::async_trait;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The email [`Provider`] over whatever SMTP server the `smtp` secret names.
#[derive(Debug)]
pub struct SmtpFromSecrets {
    secrets: Secrets,
    settings: SmtpSettings,
    options: MailerOptions,
    /// Per relay id: the mailer and a digest of the secret it was built from.
    current: Mutex<HashMap<String, (String, Arc<SmtpMailer>)>>,
}

impl SmtpFromSecrets {
    pub fn new(secrets: Secrets, settings: SmtpSettings, options: MailerOptions) -> Self {
        Self {
            secrets,
            settings,
            options,
            current: Mutex::new(HashMap::new()),
        }
    }

    async fn mailer(
        &self,
        relay: Option<&str>,
        refresh: bool,
    ) -> Result<Arc<SmtpMailer>, SendFailure> {
        let whole = self
            .secrets
            .smtp(refresh)
            .await
            .map_err(|e| secret_failure(&e, "smtp_not_configured"))?;
        let id = relay.unwrap_or(PRIMARY_RELAY);
        let Some(secret) = whole.relay(Some(id)) else {
            return Err(SendFailure::carteiro(
                FailureClass::Permanent,
                "relay_not_configured",
                format!("the smtp secret has no relay {id:?}"),
            ));
        };
        let digest = fingerprint(&secret);
        let mut current = self.current.lock().await;
        if let Some((known, mailer)) = current.get(id)
            && *known == digest
        {
            return Ok(mailer.clone());
        }
        let mailer = SmtpMailer::new(&secret, &self.settings, self.options.clone())
            .map(Arc::new)
            .map_err(|e| {
                SendFailure::carteiro(
                    FailureClass::Permanent,
                    "smtp_not_configured",
                    e.to_string(),
                )
            })?;
        current.insert(id.to_owned(), (digest, mailer.clone()));
        Ok(mailer)
    }
}

#[async_trait]
impl Provider for SmtpFromSecrets {
    async fn send(
        &self,
        _id: &MessageId,
        payload: &DeliveryPayload,
        fresh_credentials: bool,
    ) -> SendOutcome {
        let DeliveryPayload::EmailV1 { email } = payload else {
            return SendOutcome::Failed(crate::providers::wrong_channel(payload));
        };
        match self.mailer(email.relay.as_deref(), fresh_credentials).await {
            Ok(mailer) => mailer.send(email).await,
            Err(failure) => SendOutcome::Failed(failure),
        }
    }

    async fn rate(&self, payload: &DeliveryPayload) -> Option<Rate> {
        let DeliveryPayload::EmailV1 { email } = payload else {
            return None;
        };
        let secret = self.secrets.smtp(false).await.ok()?;
        secret.relay(email.relay.as_deref())?.rate_limit?.rate()
    }
}

fn fingerprint(secret: &SmtpSecret) -> String {
    let mut h = Sha256::new();
    for part in [
        secret.smtp_host.as_str(),
        &secret.smtp_port.to_string(),
        secret.smtp_user.as_deref().unwrap_or(""),
        secret
            .smtp_password
            .as_ref()
            .map(|p| p.expose_secret())
            .unwrap_or(""),
        &secret.from_email,
        if secret.use_ssl { "ssl" } else { "starttls" },
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}
