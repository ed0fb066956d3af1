//! The retry-sweeper Lambda: an EventBridge Scheduler tick → [`carteiro_shared::sweeper`].
//! It stops a few seconds before the invocation's deadline; what is left waits for the next
//! tick.

use carteiro_shared::adapters::aws::{DynamoStore, SqsQueue};
use carteiro_shared::config::{ConfigError, DispatchSettings, Env, SweepSettings};
use carteiro_shared::ports::SystemClock;
use carteiro_shared::sweeper::{self, SweepContext, SweepReport};
use lambda_runtime::LambdaEvent;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time kept back before the deadline for the last writes and the response.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// Builds the sweeper's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<SweepContext, ConfigError> {
    let sdk = carteiro_shared::adapters::aws::load_sdk_config().await;
    Ok(SweepContext {
        store: Arc::new(DynamoStore::from_env(&sdk, env)?),
        outbound: Arc::new(SqsQueue::from_env(
            &sdk,
            env,
            "CARTEIRO_OUTBOUND_QUEUE_URL",
        )?),
        clock: Arc::new(SystemClock),
        dispatch: DispatchSettings::from_env(env)?,
        settings: SweepSettings::from_env(env)?,
    })
}

/// The instant to stop at, from the invocation's deadline (epoch ms).
pub fn stop_at(deadline_epoch_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let left = Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(DEADLINE_MARGIN)
}

/// The Lambda handler; the scheduler's event carries nothing the sweep needs.
pub async fn handler(
    ctx: &SweepContext,
    event: LambdaEvent<serde_json::Value>,
) -> Result<SweepReport, lambda_runtime::Error> {
    let deadline = stop_at(event.context.deadline);
    Ok(sweeper::sweep(ctx, deadline).await?)
}
