//! The send-api Lambda: API Gateway (HTTP API, payload v2) → [`carteiro_shared::send_api`].

use carteiro_shared::adapters::aws::SdkConfig;
use carteiro_shared::adapters::aws::{
    DynamoLimits, DynamoStore, DynamoSuppressions, SecretIds, SecretsManagerSource, SqsQueue,
};
use carteiro_shared::config::{ConfigError, DispatchSettings, Env, StatusSettings};
use carteiro_shared::lambda::serve_http;
use carteiro_shared::ports::SystemClock;
use carteiro_shared::ports::limits::LimitStore;
use carteiro_shared::ports::{DeliveryStore, Queue};
use carteiro_shared::providers::templates::EmailTemplates;
use carteiro_shared::send_api::{self, SendApiContext, SendApiSettings};
use carteiro_shared::status::StatusContext;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

/// Builds the handler's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<SendApiContext, ConfigError> {
    context(
        &carteiro_shared::adapters::aws::load_sdk_config().await,
        env,
    )
    .await
}

/// The context over the AWS services `sdk` reaches (tests point it at an emulator).
pub async fn context(sdk: &SdkConfig, env: Env<'_>) -> Result<SendApiContext, ConfigError> {
    let secret_ids = SecretIds {
        api_keys: Some(env.required("CARTEIRO_API_KEYS_SECRET_ID")?),
        callbacks: env.optional("CARTEIRO_CALLBACKS_SECRET_ID"),
        ..SecretIds::default()
    };
    let secrets = SecretsManagerSource::secrets_from_env(sdk, env, secret_ids).await?;
    let store: Arc<dyn DeliveryStore> = Arc::new(DynamoStore::from_env(sdk, env)?);
    let outbound: Arc<dyn Queue> =
        Arc::new(SqsQueue::from_env(sdk, env, "CARTEIRO_OUTBOUND_QUEUE_URL")?);
    let limits: Arc<dyn LimitStore> = Arc::new(DynamoLimits::from_env(sdk, env)?);
    let status = StatusContext {
        limits: limits.clone(),
        store: store.clone(),
        secrets: secrets.clone(),
        outbound: outbound.clone(),
        dead_letters: SqsQueue::dead_letters_from_env(sdk, env)?,
        settings: StatusSettings::from_env(env)?,
        messaging_limit: DispatchSettings::from_env(env)?.messaging_limit,
        modes: Default::default(),
    };
    Ok(SendApiContext {
        store,
        outbound,
        secrets,
        clock: Arc::new(SystemClock),
        templates: Arc::new(EmailTemplates::embedded()),
        settings: SendApiSettings::from_env(env)?,
        limits: Some(limits),
        suppressions: Some(Arc::new(DynamoSuppressions::from_env(sdk, env)?)),
        status: Some(Arc::new(status)),
    })
}

/// The Lambda handler.
pub async fn handler(
    ctx: &SendApiContext,
    req: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    serve_http(req, |req| send_api::handle(ctx, req)).await
}
