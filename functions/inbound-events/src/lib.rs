//! The inbound-events Lambda: SQS (inbound queue) → [`carteiro_shared::inbound`], reporting
//! partial batch failures so only the failed events are redelivered.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use carteiro_shared::adapters::aws::SdkConfig;
use carteiro_shared::adapters::aws::{
    DynamoLimits, DynamoStore, DynamoSuppressions, SecretIds, SecretsManagerSource, SqsQueue,
};
use carteiro_shared::callbacks::EventPublisher;
use carteiro_shared::config::{CallbackSettings, ConfigError, Env, InboundSettings};
use carteiro_shared::inbound::{self, InboundContext};
use carteiro_shared::lambda::serve_sqs;
use carteiro_shared::ports::SystemClock;
use lambda_runtime::LambdaEvent;
use std::sync::Arc;

/// Builds the consumer's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<InboundContext, ConfigError> {
    context(
        &carteiro_shared::adapters::aws::load_sdk_config().await,
        env,
    )
    .await
}

/// The context over the AWS services `sdk` reaches (tests point it at an emulator).
pub async fn context(sdk: &SdkConfig, env: Env<'_>) -> Result<InboundContext, ConfigError> {
    let store: Arc<dyn carteiro_shared::ports::DeliveryStore> =
        Arc::new(DynamoStore::from_env(sdk, env)?);
    // Without a callbacks secret there is no endpoint to publish to.
    let events = match env.optional("CARTEIRO_CALLBACKS_SECRET_ID") {
        None => None,
        Some(id) => {
            let ids = SecretIds {
                callbacks: Some(id),
                ..SecretIds::default()
            };
            Some(EventPublisher {
                store: store.clone(),
                outbound: Arc::new(SqsQueue::from_env(sdk, env, "CARTEIRO_OUTBOUND_QUEUE_URL")?),
                secrets: SecretsManagerSource::secrets_from_env(sdk, env, ids).await?,
                settings: CallbackSettings::from_env(env)?,
            })
        }
    };
    Ok(InboundContext {
        store,
        clock: Arc::new(SystemClock),
        settings: InboundSettings::from_env(env)?,
        events,
        outbound: Some(Arc::new(SqsQueue::from_env(
            sdk,
            env,
            "CARTEIRO_OUTBOUND_QUEUE_URL",
        )?)),
        limits: Some(Arc::new(DynamoLimits::from_env(sdk, env)?)),
        suppressions: Some(Arc::new(DynamoSuppressions::from_env(sdk, env)?)),
    })
}

/// The Lambda handler.
pub async fn handler(
    ctx: &InboundContext,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(serve_sqs(event.payload, |events| async move {
        inbound::process_batch(ctx, &events).await
    })
    .await?)
}
