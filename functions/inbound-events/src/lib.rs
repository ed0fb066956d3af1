//! The inbound-events Lambda: SQS (inbound queue) → [`carteiro_shared::inbound`], reporting
//! partial batch failures so only the failed events are redelivered.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use carteiro_shared::adapters::aws::DynamoStore;
use carteiro_shared::config::{ConfigError, Env, InboundSettings};
use carteiro_shared::inbound::{self, InboundContext, QueuedEvent};
use carteiro_shared::ports::SystemClock;
use lambda_runtime::LambdaEvent;
use std::sync::Arc;

/// Builds the consumer's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<InboundContext, ConfigError> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = env.required("CARTEIRO_TABLE_NAME")?;
    Ok(InboundContext {
        store: Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)),
        clock: Arc::new(SystemClock),
        settings: InboundSettings::from_env(env)?,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("all {0} events of the batch failed")]
pub struct WholeBatchFailed(usize);

/// The Lambda handler. A record without a message id cannot be reported individually, so its
/// failure fails the whole batch rather than being dropped. When every record fails the
/// handler returns `Err`, so Lambda backs off instead of retrying at once.
pub async fn handler(
    ctx: &InboundContext,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let records = event.payload.records;
    let total = records.len();
    let events: Vec<QueuedEvent> = records
        .into_iter()
        .map(|r| QueuedEvent {
            message_id: r.message_id.unwrap_or_default(),
            body: r.body.unwrap_or_default(),
        })
        .collect();
    let failed = inbound::process_batch(ctx, &events).await;
    if total > 0 && failed.len() == total {
        return Err(WholeBatchFailed(total).into());
    }
    if failed.iter().any(String::is_empty) {
        return Err(WholeBatchFailed(failed.len()).into());
    }
    let mut response = SqsBatchResponse::default();
    for id in failed {
        response.add_failure(id);
    }
    Ok(response)
}
