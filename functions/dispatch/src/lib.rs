//! The dispatch Lambda: SQS (outbound queue) → [`carteiro_shared::dispatch`], reporting
//! partial batch failures (infrastructure faults only; provider failures become state).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use carteiro_shared::adapters::aws::{DynamoStore, SecretIds, SecretsManagerSource, SqsQueue};
use carteiro_shared::config::{ConfigError, Env};
use carteiro_shared::config::{GraphSettings, SmtpSettings};
use carteiro_shared::dispatch::{self, DispatchContext, DispatchSettings};
use carteiro_shared::lambda::serve_sqs;
use carteiro_shared::ports::SystemClock;
use carteiro_shared::providers;
use carteiro_shared::providers::email::MailerOptions;
use lambda_runtime::LambdaEvent;
use std::sync::Arc;

/// Builds the dispatcher's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<DispatchContext, ConfigError> {
    let sdk = carteiro_shared::adapters::aws::load_sdk_config().await;
    let secret_ids = SecretIds {
        whatsapp: env.optional("CARTEIRO_WHATSAPP_SECRET_ID"),
        smtp: env.optional("CARTEIRO_SMTP_SECRET_ID"),
        ..SecretIds::default()
    };
    let secrets = SecretsManagerSource::secrets_from_env(&sdk, env, secret_ids).await?;
    let providers = providers::live(
        &secrets,
        &GraphSettings::from_env(env)?,
        &SmtpSettings::from_env(env)?,
        MailerOptions::default(),
    )
    .map_err(|e| ConfigError::Invalid {
        var: "CARTEIRO_GRAPH_TIMEOUT_MS",
        reason: e.to_string(),
    })?;
    Ok(DispatchContext {
        store: Arc::new(DynamoStore::from_env(&sdk, env)?),
        outbound: Arc::new(SqsQueue::from_env(
            &sdk,
            env,
            "CARTEIRO_OUTBOUND_QUEUE_URL",
        )?),
        providers,
        clock: Arc::new(SystemClock),
        settings: DispatchSettings::from_env(env)?,
    })
}

/// The Lambda handler.
pub async fn handler(
    ctx: &DispatchContext,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(serve_sqs(event.payload, |events| async move {
        dispatch::process_batch(ctx, &events).await
    })
    .await?)
}
