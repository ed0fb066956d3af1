//! Providers: the clients that hand a message to the outside world, each with its own error
//! classification. Dispatch turns their [`SendOutcome`] into delivery state.

pub mod email;
pub mod email_sandbox;
pub mod smtp_from_secrets;
pub mod smtp_reply;
pub mod ssrf;
pub mod templates;
pub mod webhook;
pub mod whatsapp;

use crate::domain::delivery::DeliveryError;
pub use crate::domain::outcome::{FailureClass, SendFailure, SendOutcome};
use crate::ports::secrets::SecretError;

/// The failure for a provider whose credentials could not be read: a secret store that is
/// down is worth retrying; a secret that is missing or malformed needs an operator.
pub fn secret_failure(e: &SecretError, not_configured_code: &str) -> SendFailure {
    let (class, code) = match e {
        SecretError::Unavailable(_) => (FailureClass::Retryable, "secret_unavailable"),
        SecretError::Missing(_) | SecretError::Malformed { .. } => {
            (FailureClass::Permanent, not_configured_code)
        }
    };
    SendFailure {
        class,
        error: DeliveryError {
            source: "carteiro".to_owned(),
            code: code.to_owned(),
            // SecretError's messages never quote a secret value.
            message: e.to_string(),
            details: None,
        },
        retry_after: None,
    }
}

/// The failure for a payload handed to another channel's provider (a wiring bug).
pub fn wrong_channel(payload: &crate::domain::payload::DeliveryPayload) -> SendFailure {
    SendFailure::carteiro(
        FailureClass::Permanent,
        "wrong_channel",
        format!(
            "a {:?} payload reached another channel's provider",
            payload.channel()
        ),
    )
}

/// The provider set every runtime uses: WhatsApp through `whatsapp` with the `whatsapp`
/// secret, email through `email`.
pub fn standard(
    secrets: &crate::secrets::Secrets,
    whatsapp: std::sync::Arc<dyn whatsapp::WhatsAppSender>,
    email: std::sync::Arc<dyn crate::ports::provider::Provider>,
) -> crate::ports::provider::Providers {
    use crate::domain::delivery::Channel;
    crate::ports::provider::Providers::new()
        .with(
            Channel::Whatsapp,
            std::sync::Arc::new(whatsapp::WhatsAppProvider::new(whatsapp, secrets.clone())),
        )
        .with(Channel::Email, email)
}

/// The provider set that reaches the real providers: the Graph API and SMTP, with their
/// credentials from `secrets` (what the dispatch Lambda runs; the local runtime picks a sandbox
/// for a channel without credentials instead).
pub fn live(
    secrets: &crate::secrets::Secrets,
    graph: &crate::config::GraphSettings,
    smtp: &crate::config::SmtpSettings,
    mailer: email::MailerOptions,
) -> Result<crate::ports::provider::Providers, whatsapp::GraphClientError> {
    let graph = whatsapp::GraphClient::new(graph)?;
    let email = smtp_from_secrets::SmtpFromSecrets::new(secrets.clone(), smtp.clone(), mailer);
    Ok(standard(
        secrets,
        std::sync::Arc::new(graph),
        std::sync::Arc::new(email),
    ))
}
