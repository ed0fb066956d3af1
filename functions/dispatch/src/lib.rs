//! The dispatch Lambda: SQS (outbound queue) → [`carteiro_shared::dispatch`], reporting
//! partial batch failures (infrastructure faults only; provider failures become state).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use carteiro_shared::adapters::aws::SdkConfig;
use carteiro_shared::adapters::aws::{
    DynamoLimits, DynamoStore, DynamoSuppressions, SecretIds, SecretsManagerSource, SqsQueue,
};
use carteiro_shared::callbacks::EventPublisher;
use carteiro_shared::config::{CallbackSettings, GraphSettings, SmtpSettings};
use carteiro_shared::config::{ConfigError, Env};
use carteiro_shared::dispatch::{self, DispatchContext, DispatchSettings};
use carteiro_shared::domain::delivery::Channel;
use carteiro_shared::lambda::serve_sqs;
use carteiro_shared::ports::SystemClock;
use carteiro_shared::ports::{Clock, DeliveryStore, Queue};
use carteiro_shared::providers;
use carteiro_shared::providers::email::MailerOptions;
use carteiro_shared::providers::webhook::CallbackSender;
use carteiro_shared::status::calls::{LAMBDA_FLUSH_EVERY, flush};
use lambda_runtime::LambdaEvent;
use std::sync::Arc;

/// Builds the dispatcher's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<DispatchContext, ConfigError> {
    context(
        &carteiro_shared::adapters::aws::load_sdk_config().await,
        env,
    )
    .await
}

/// The context over the AWS services `sdk` reaches (tests point it at an emulator).
pub async fn context(sdk: &SdkConfig, env: Env<'_>) -> Result<DispatchContext, ConfigError> {
    let secret_ids = SecretIds {
        whatsapp: env.optional("CARTEIRO_WHATSAPP_SECRET_ID"),
        smtp: env.optional("CARTEIRO_SMTP_SECRET_ID"),
        callbacks: env.optional("CARTEIRO_CALLBACKS_SECRET_ID"),
        ..SecretIds::default()
    };
    let secrets = SecretsManagerSource::secrets_from_env(sdk, env, secret_ids).await?;
    let store: Arc<dyn DeliveryStore> = Arc::new(DynamoStore::from_env(sdk, env)?);
    let outbound: Arc<dyn Queue> =
        Arc::new(SqsQueue::from_env(sdk, env, "CARTEIRO_OUTBOUND_QUEUE_URL")?);
    let callbacks = CallbackSettings::from_env(env)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sender = CallbackSender::new(
        secrets.clone(),
        store.clone(),
        clock.clone(),
        callbacks.clone(),
    )
    .map_err(|e| ConfigError::Invalid {
        var: "CARTEIRO_CALLBACK_TIMEOUT",
        reason: e.to_string(),
    })?;
    let providers = providers::live(
        &secrets,
        &GraphSettings::from_env(env)?,
        &SmtpSettings::from_env(env)?,
        MailerOptions::default(),
    )
    .map_err(|e| ConfigError::Invalid {
        var: "CARTEIRO_GRAPH_TIMEOUT_MS",
        reason: e.to_string(),
    })?
    .with(Channel::Webhook, Arc::new(sender));
    let events = EventPublisher {
        store: store.clone(),
        outbound: outbound.clone(),
        secrets,
        settings: callbacks,
    };
    Ok(DispatchContext {
        store,
        outbound,
        providers,
        clock,
        settings: DispatchSettings::from_env(env)?,
        events: Some(events),
        limits: Some(Arc::new(DynamoLimits::from_env(sdk, env)?)),
        sender_gate: Default::default(),
        calls: Default::default(),
        suppressions: Some(Arc::new(DynamoSuppressions::from_env(sdk, env)?)),
    })
}

/// The Lambda handler.
pub async fn handler(
    ctx: &DispatchContext,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let answer = serve_sqs(event.payload, |events| async move {
        dispatch::process_batch(ctx, &events).await
    })
    .await?;
    // The calls for the status read model: at most one write every few seconds per instance.
    if let Some(limits) = &ctx.limits
        && ctx.calls.due(LAMBDA_FLUSH_EVERY)
        && let Err(e) = flush(&ctx.calls, limits.as_ref(), ctx.clock.now()).await
    {
        tracing::warn!(error = %e, "status figures not written yet; kept for the next flush");
    }
    Ok(answer)
}
