//! Where credentials come from: Secrets Manager on AWS, a JSON file locally. The source hands
//! back a whole JSON document; [`crate::secrets`] parses it into typed, redacted values.

use async_trait::async_trait;
use secrecy::SecretString;

/// The secret documents Carteiro reads; each is one Secrets Manager secret on AWS and one
/// member of the local secrets file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretName {
    Whatsapp,
    Smtp,
    ApiKeys,
    Callbacks,
}

impl SecretName {
    /// The member name in the local secrets file.
    pub const fn file_key(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Smtp => "smtp",
            Self::ApiKeys => "api_keys",
            Self::Callbacks => "callbacks",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0:?} is not configured")]
    Missing(SecretName),
    #[error("secret {name:?} is not valid JSON of the expected shape: {reason}")]
    Malformed { name: SecretName, reason: String },
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The JSON document behind `name`. `refresh` bypasses any cache (after a provider
    /// rejected the cached credential).
    async fn get(&self, name: SecretName, refresh: bool) -> Result<SecretString, SecretError>;
}
