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
    pub rate_limit: Option<ApiKeyRateLimit>,
}

/// `"rate_limit": {"per_second": 10, "burst": 20}` on an API key.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ApiKeyRateLimit {
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell; default: one second's worth (at least 1).
    #[serde(default)]
    pub burst: Option<f64>,
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
