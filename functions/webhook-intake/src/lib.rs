//! The webhook-intake Lambda: API Gateway (HTTP API, payload v2) → [`carteiro_shared::intake`].
//!
//! This crate only builds the AWS adapters once per execution environment; the behaviour
//! lives in the shared crate, where the local runtime runs it too.

use carteiro_shared::adapters::aws::SdkConfig;
use carteiro_shared::adapters::aws::{SecretIds, SecretsManagerSource, SqsQueue};
use carteiro_shared::config::IntakeSettings;
use carteiro_shared::config::{ConfigError, Env};
use carteiro_shared::intake::{self, IntakeContext};
use carteiro_shared::lambda::serve_http;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

/// Builds the handler's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<IntakeContext, ConfigError> {
    context(
        &carteiro_shared::adapters::aws::load_sdk_config().await,
        env,
    )
    .await
}

/// The context over the AWS services `sdk` reaches (tests point it at an emulator).
pub async fn context(sdk: &SdkConfig, env: Env<'_>) -> Result<IntakeContext, ConfigError> {
    let secret_ids = SecretIds {
        whatsapp: Some(env.required("CARTEIRO_WHATSAPP_SECRET_ID")?),
        ..SecretIds::default()
    };
    let secrets = SecretsManagerSource::secrets_from_env(sdk, env, secret_ids).await?;
    Ok(IntakeContext {
        queue: Arc::new(SqsQueue::from_env(sdk, env, "CARTEIRO_INBOUND_QUEUE_URL")?),
        secrets,
        settings: IntakeSettings::from_env(env)?,
    })
}

/// The Lambda handler.
pub async fn handler(
    ctx: &IntakeContext,
    req: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    serve_http(req, |req| intake::handle(ctx, req)).await
}
