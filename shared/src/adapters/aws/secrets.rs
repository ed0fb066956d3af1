//! [`SecretSource`] over AWS Secrets Manager, cached in-process by
//! `aws_secretsmanager_caching` (the library behind the Secrets Manager Agent).
//!
//! Each [`SecretName`] maps to one secret id (name or ARN) in [`SecretIds`]; a name without an
//! id is [`SecretError::Missing`], and so is a secret Secrets Manager does not know. Cached
//! values are served for the TTL given at construction; after it, the cache asks
//! `DescribeSecret` whether `AWSCURRENT` moved and re-reads only if it did. Transient failures
//! during such a refresh serve the stale value (`ignore_transient_errors`). `refresh = true`
//! bypasses the cache: use it once after a provider rejected a cached credential.
//!
//! Secret values never appear in errors or `Debug` output: [`SecretsManagerSource`]'s `Debug`
//! prints the configured ids only (the caching client's own `Debug` would print its cache).

use super::describe_sdk_error;
use crate::ports::secrets::{SecretError, SecretName, SecretSource};
use async_trait::async_trait;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_secretsmanager_caching::SecretsManagerCachingClient;
use secrecy::SecretString;
use std::num::NonZeroUsize;
use std::time::Duration;

/// How many secret versions the cache holds: four documents, with room for stages.
const CACHE_ENTRIES: NonZeroUsize = match NonZeroUsize::new(16) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// The Secrets Manager secret id (name or ARN) behind each [`SecretName`]; `None` means the
/// deployment does not use that document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretIds {
    pub whatsapp: Option<String>,
    pub smtp: Option<String>,
    pub api_keys: Option<String>,
    pub callbacks: Option<String>,
}

impl SecretIds {
    pub fn get(&self, name: SecretName) -> Option<&str> {
        match name {
            SecretName::Whatsapp => self.whatsapp.as_deref(),
            SecretName::Smtp => self.smtp.as_deref(),
            SecretName::ApiKeys => self.api_keys.as_deref(),
            SecretName::Callbacks => self.callbacks.as_deref(),
        }
        .filter(|id| !id.is_empty())
    }
}

/// A [`SecretSource`] reading Secrets Manager through an in-process cache.
pub struct SecretsManagerSource {
    cache: SecretsManagerCachingClient,
    ids: SecretIds,
    ttl: Duration,
}

impl std::fmt::Debug for SecretsManagerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerSource")
            .field("ids", &self.ids)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerSource {
    /// Builds the source from the shared SDK configuration (loaded once at INIT), caching
    /// each value for `ttl` (REFERENCE §4.4: 5–15 minutes).
    pub async fn new(
        config: &aws_config::SdkConfig,
        ids: SecretIds,
        ttl: Duration,
    ) -> Result<Self, SecretError> {
        Self::from_builder(
            aws_sdk_secretsmanager::config::Builder::from(config),
            ids,
            ttl,
        )
        .await
    }

    /// What every Lambda builds at INIT: the source for `ids`, cached for
    /// `CARTEIRO_SECRET_CACHE_TTL_SECS` (default 300 s), wrapped for typed reads.
    pub async fn secrets_from_env(
        config: &aws_config::SdkConfig,
        env: crate::config::Env<'_>,
        ids: SecretIds,
    ) -> Result<crate::secrets::Secrets, crate::config::ConfigError> {
        const TTL_VAR: &str = "CARTEIRO_SECRET_CACHE_TTL_SECS";
        let ttl = Duration::from_secs(env.number_or(TTL_VAR, 300)?);
        let source =
            Self::new(config, ids, ttl)
                .await
                .map_err(|e| crate::config::ConfigError::Invalid {
                    var: TTL_VAR,
                    reason: e.to_string(),
                })?;
        Ok(crate::secrets::Secrets::new(std::sync::Arc::new(source)))
    }

    /// Like [`Self::new`], from a Secrets Manager client configuration builder.
    pub async fn from_builder(
        config: aws_sdk_secretsmanager::config::Builder,
        ids: SecretIds,
        ttl: Duration,
    ) -> Result<Self, SecretError> {
        let cache = SecretsManagerCachingClient::from_builder(config, CACHE_ENTRIES, ttl, true)
            .await
            .map_err(|e| SecretError::Unavailable(format!("secrets cache: {e}")))?;
        Ok(Self { cache, ids, ttl })
    }

    pub fn ids(&self) -> &SecretIds {
        &self.ids
    }
}

/// What went wrong, without the value: `Missing` when the secret does not exist.
fn classify(name: SecretName, err: &(dyn std::error::Error + 'static)) -> SecretError {
    if let Some(e) = err.downcast_ref::<SdkError<GetSecretValueError, HttpResponse>>() {
        if e.as_service_error()
            .is_some_and(GetSecretValueError::is_resource_not_found_exception)
        {
            return SecretError::Missing(name);
        }
        return SecretError::Unavailable(describe_sdk_error("GetSecretValue", e));
    }
    if let Some(e) = err.downcast_ref::<SdkError<DescribeSecretError, HttpResponse>>() {
        if e.as_service_error()
            .is_some_and(DescribeSecretError::is_resource_not_found_exception)
        {
            return SecretError::Missing(name);
        }
        return SecretError::Unavailable(describe_sdk_error("DescribeSecret", e));
    }
    // The cache's own errors describe the store, never a value; still, keep them short.
    SecretError::Unavailable(format!("secrets cache failed reading {name:?}"))
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn get(&self, name: SecretName, refresh: bool) -> Result<SecretString, SecretError> {
        let id = self.ids.get(name).ok_or(SecretError::Missing(name))?;
        let value = match self.cache.get_secret_value(id, None, None, refresh).await {
            Ok(v) => v,
            Err(e) => return Err(classify(name, e.as_ref())),
        };
        if let Some(s) = value.secret_string {
            return Ok(SecretString::from(s));
        }
        match value.secret_binary.map(|b| String::from_utf8(b.inner)) {
            Some(Ok(s)) => Ok(SecretString::from(s)),
            Some(Err(_)) => Err(SecretError::Malformed {
                name,
                reason: "the secret is binary and not UTF-8".to_owned(),
            }),
            None => Err(SecretError::Malformed {
                name,
                reason: "the secret has no value".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_ids_count_as_missing() {
        let ids = SecretIds {
            whatsapp: Some(String::new()),
            smtp: Some("carteiro/smtp".into()),
            ..SecretIds::default()
        };
        assert_eq!(ids.get(SecretName::Whatsapp), None);
        assert_eq!(ids.get(SecretName::Smtp), Some("carteiro/smtp"));
        assert_eq!(ids.get(SecretName::Callbacks), None);
    }
}
