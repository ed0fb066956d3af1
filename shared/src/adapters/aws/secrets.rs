//! [`SecretSource`] over AWS Secrets Manager with an in-process cache.
//!
//! Each [`SecretName`] maps to one secret id (name or ARN) in [`SecretIds`]; a name without an
//! id is [`SecretError::Missing`], and so is a secret Secrets Manager does not know. A value is
//! served from the cache for the TTL given at construction; after it, the next read calls
//! `GetSecretValue` (`AWSCURRENT`) again, and if that call fails for a transient reason the
//! stale value is served (and the failure logged), so a Secrets Manager blip does not stop
//! sends. `refresh = true` bypasses the cache: use it once after a provider rejected a cached
//! credential; a failure then is reported, not hidden behind the old value.
//!
//! Why not `aws_secretsmanager_caching`: it depends on `aws-config` and the Secrets Manager SDK
//! with their default features, which link a second HTTP and TLS stack (hyper 0.14, rustls
//! 0.21, ring) and the SSO credential clients into every function — megabytes of binary and
//! INIT time for a cache this small (docs/benchmarks.md, cold start).
//!
//! Secret values never appear in errors or `Debug` output: [`SecretsManagerSource`]'s `Debug`
//! prints the configured ids and the TTL only.

use super::describe_sdk_error;
use crate::ports::secrets::{SecretError, SecretName, SecretSource};
use async_trait::async_trait;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    client: aws_sdk_secretsmanager::Client,
    ids: SecretIds,
    ttl: Duration,
    cache: Mutex<HashMap<SecretName, Cached>>,
}

struct Cached {
    value: SecretString,
    read_at: Instant,
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
        Ok(Self {
            client: aws_sdk_secretsmanager::Client::from_conf(config.build()),
            ids,
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, name: SecretName, fresh_only: bool) -> Option<SecretString> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(&name)?;
        (!fresh_only || entry.read_at.elapsed() < self.ttl).then(|| entry.value.clone())
    }

    /// `GetSecretValue` for `id`, as a string.
    async fn read(&self, name: SecretName, id: &str) -> Result<SecretString, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(GetSecretValueError::is_resource_not_found_exception)
                {
                    SecretError::Missing(name)
                } else {
                    SecretError::Unavailable(describe_sdk_error("GetSecretValue", &e))
                }
            })?;
        if let Some(s) = out.secret_string {
            return Ok(SecretString::from(s));
        }
        match out.secret_binary.map(|b| String::from_utf8(b.into_inner())) {
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

    pub fn ids(&self) -> &SecretIds {
        &self.ids
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn get(&self, name: SecretName, refresh: bool) -> Result<SecretString, SecretError> {
        let id = self.ids.get(name).ok_or(SecretError::Missing(name))?;
        if !refresh && let Some(value) = self.cached(name, true) {
            return Ok(value);
        }
        match self.read(name, id).await {
            Ok(value) => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(
                        name,
                        Cached {
                            value: value.clone(),
                            read_at: Instant::now(),
                        },
                    );
                }
                Ok(value)
            }
            // Past its TTL, a value is still better than none while Secrets Manager is down.
            Err(SecretError::Unavailable(reason)) if !refresh => match self.cached(name, false) {
                Some(stale) => {
                    tracing::warn!(secret = ?name, %reason, "serving a cached secret past its TTL");
                    Ok(stale)
                }
                None => Err(SecretError::Unavailable(reason)),
            },
            Err(e) => Err(e),
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
