//! Typed secret documents. Field names follow the product's original configuration and the
//! secrets-file contract in ARCHITECTURE.md. Secret values are `SecretString`s: redacted in
//! `Debug`, zeroised on drop, and never serialised.

use crate::ports::secrets::{SecretError, SecretName, SecretSource};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub const DEFAULT_GRAPH_API_VERSION: &str = "v23.0";
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.facebook.com";

fn default_graph_api_version() -> String {
    DEFAULT_GRAPH_API_VERSION.to_owned()
}

fn default_graph_base_url() -> String {
    DEFAULT_GRAPH_BASE_URL.to_owned()
}

/// The `whatsapp` document.
#[derive(Debug, Clone, Deserialize)]
pub struct WhatsAppSecret {
    /// System-user token for the Graph API. Absent in a receive-only or sandbox setup.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// The Meta app's id: with `app_secret` it makes the app token `debug_token` is asked with
    /// (absent: the access token inspects itself).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Signs Meta's webhooks (`X-Hub-Signature-256`).
    pub app_secret: SecretString,
    /// Echoed back in the GET handshake.
    pub verify_token: SecretString,
    /// The app secret before the last reset: accepted too while Meta retries old deliveries.
    #[serde(default)]
    pub previous_app_secret: Option<SecretString>,
    #[serde(default = "default_graph_api_version")]
    pub graph_api_version: String,
    #[serde(default = "default_graph_base_url")]
    pub graph_base_url: String,
}

impl WhatsAppSecret {
    pub fn app_secret_bytes(&self) -> &[u8] {
        self.app_secret.expose_secret().as_bytes()
    }

    pub fn previous_app_secret_bytes(&self) -> Option<&[u8]> {
        self.previous_app_secret
            .as_ref()
            .map(|s| s.expose_secret().as_bytes())
            .filter(|s| !s.is_empty())
    }
}

/// The `smtp` document.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSecret {
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    #[serde(default)]
    pub smtp_user: Option<String>,
    #[serde(default)]
    pub smtp_password: Option<SecretString>,
    /// The default `From` when a message names none.
    pub from_email: String,
    /// Implicit TLS (port 465). Otherwise STARTTLS is required, except towards loopback hosts.
    #[serde(default)]
    pub use_ssl: bool,
    /// Messages a second this server takes, shared by every instance (SES's sending quota).
    #[serde(default)]
    pub rate_limit: Option<RateLimitSetting>,
    /// Further relays a message (or a fallback) names by `"relay"`, to fail over to.
    #[serde(default)]
    pub relays: Vec<SmtpRelay>,
}

/// One further relay of the `smtp` secret: a server of its own, `from_email` defaulting to the
/// secret's.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpRelay {
    pub id: String,
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    #[serde(default)]
    pub smtp_user: Option<String>,
    #[serde(default)]
    pub smtp_password: Option<SecretString>,
    #[serde(default)]
    pub from_email: Option<String>,
    #[serde(default)]
    pub use_ssl: bool,
    #[serde(default)]
    pub rate_limit: Option<RateLimitSetting>,
}

pub use crate::domain::message::PRIMARY_RELAY;

impl SmtpSecret {
    /// The relay `id` names (the secret's own server for `None` or [`PRIMARY_RELAY`]), as a
    /// secret of its own with no further relays; `None` when the secret has no such relay.
    pub fn relay(&self, id: Option<&str>) -> Option<Self> {
        let id = id.unwrap_or(PRIMARY_RELAY);
        if id == PRIMARY_RELAY {
            return Some(Self {
                relays: Vec::new(),
                ..self.clone()
            });
        }
        let r = self.relays.iter().find(|r| r.id == id)?;
        Some(Self {
            smtp_host: r.smtp_host.clone(),
            smtp_port: r.smtp_port,
            smtp_user: r.smtp_user.clone(),
            smtp_password: r.smtp_password.clone(),
            from_email: r
                .from_email
                .clone()
                .unwrap_or_else(|| self.from_email.clone()),
            use_ssl: r.use_ssl,
            rate_limit: r.rate_limit,
            relays: Vec::new(),
        })
    }
}

fn default_smtp_port() -> u16 {
    587
}

/// One API key of the `api_keys` document.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKey {
    /// Names the key's owner; records created with the key belong to it.
    pub id: String,
    pub key: SecretString,
    /// `POST /v1/messages` requests this key may make, shared by every instance; absent: no
    /// limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSetting>,
}

/// `"rate_limit": {"per_second": 10, "burst": 20}` on an API key or an SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct RateLimitSetting {
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell; default: one second's worth (at least 1).
    #[serde(default)]
    pub burst: Option<f64>,
}

impl RateLimitSetting {
    /// The bucket it describes; `None` for a rate of 0 or less (no limit).
    pub fn rate(&self) -> Option<crate::resilience::rate::Rate> {
        (self.per_second > 0.0).then(|| {
            crate::resilience::rate::Rate::new(
                self.per_second,
                self.burst.unwrap_or(self.per_second.ceil()),
            )
        })
    }
}

/// The `api_keys` document.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeys {
    #[serde(default)]
    pub keys: Vec<ApiKey>,
}

/// Reads and parses secret documents from a [`SecretSource`].
#[derive(Debug, Clone)]
pub struct Secrets {
    source: Arc<dyn SecretSource>,
}

impl Secrets {
    pub fn new(source: Arc<dyn SecretSource>) -> Self {
        Self { source }
    }

    pub async fn whatsapp(&self, refresh: bool) -> Result<WhatsAppSecret, SecretError> {
        self.document(SecretName::Whatsapp, refresh).await
    }

    pub async fn smtp(&self, refresh: bool) -> Result<SmtpSecret, SecretError> {
        self.document(SecretName::Smtp, refresh).await
    }

    pub async fn api_keys(&self, refresh: bool) -> Result<ApiKeys, SecretError> {
        self.document(SecretName::ApiKeys, refresh).await
    }

    /// The `callbacks` document: the app's endpoints and their signing secrets.
    pub async fn callbacks(
        &self,
        refresh: bool,
    ) -> Result<crate::callbacks::endpoints::CallbacksSecret, SecretError> {
        self.document(SecretName::Callbacks, refresh).await
    }

    async fn document<T: DeserializeOwned>(
        &self,
        name: SecretName,
        refresh: bool,
    ) -> Result<T, SecretError> {
        let raw = self.source.get(name, refresh).await?;
        serde_json::from_str(raw.expose_secret()).map_err(|e| SecretError::Malformed {
            name,
            reason: crate::json::describe_error(&e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secret_values() {
        let doc = r#"{"access_token":"EAAG-token","app_secret":"s3cr3t","verify_token":"vt-123"}"#;
        let parsed: Result<WhatsAppSecret, _> = serde_json::from_str(doc);
        let shown = format!("{parsed:?}");
        for secret in ["EAAG-token", "s3cr3t", "vt-123"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
        assert!(shown.contains(DEFAULT_GRAPH_API_VERSION));
    }
}
