//! The inbound-events Lambda: SQS (inbound queue) → [`carteiro_shared::inbound`], reporting
//! partial batch failures so only the failed events are redelivered.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use carteiro_shared::adapters::aws::DynamoStore;
use carteiro_shared::config::{ConfigError, Env, InboundSettings};
use carteiro_shared::inbound::{self, InboundContext};
use carteiro_shared::lambda::serve_sqs;
use carteiro_shared::ports::SystemClock;
use lambda_runtime::LambdaEvent;
use std::sync::Arc;

/// Builds the consumer's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<InboundContext, ConfigError> {
    let sdk = carteiro_shared::adapters::aws::load_sdk_config().await;
    Ok(InboundContext {
        store: Arc::new(DynamoStore::from_env(&sdk, env)?),
        clock: Arc::new(SystemClock),
        settings: InboundSettings::from_env(env)?,
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
