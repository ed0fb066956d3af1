//! The retry-sweeper Lambda: an EventBridge Scheduler tick → [`carteiro_shared::sweeper`].
//! It stops a few seconds before the invocation's deadline; what is left waits for the next
//! tick. When a probe round is due (`CARTEIRO_PROBE_INTERVAL`), it runs one after the sweep.

use carteiro_shared::adapters::aws::{
    DynamoLimits, DynamoStore, SdkConfig, SecretIds, SecretsManagerSource, SqsQueue,
};
use carteiro_shared::config::{
    CallbackSettings, ConfigError, DispatchSettings, Env, GraphSettings, SmtpSettings,
    StatusSettings, SweepSettings,
};
use carteiro_shared::health::Probes;
use carteiro_shared::health::smtp::SmtpProbeConfig;
use carteiro_shared::ports::{Clock, DeliveryStore, Queue, SystemClock};
use carteiro_shared::providers::webhook::CallbackSender;
use carteiro_shared::providers::whatsapp::GraphClient;
use carteiro_shared::status::{self, StatusContext};
use carteiro_shared::sweeper::{self, SweepContext, SweepReport};
use lambda_runtime::LambdaEvent;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time kept back before the deadline for the last writes and the response.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// What the sweeper Lambda holds: the sweep, and the probe rounds it runs when one is due.
#[derive(Debug)]
pub struct Sweeper {
    pub sweep: SweepContext,
    pub status: StatusContext,
    pub probes: Probes,
}

/// Builds the sweeper's context from the environment template.yaml sets.
pub async fn context_from_env(env: Env<'_>) -> Result<Sweeper, ConfigError> {
    context(
        &carteiro_shared::adapters::aws::load_sdk_config().await,
        env,
    )
    .await
}

/// The context over the AWS services `sdk` reaches (tests point it at an emulator).
pub async fn context(sdk: &SdkConfig, env: Env<'_>) -> Result<Sweeper, ConfigError> {
    let store: Arc<dyn DeliveryStore> = Arc::new(DynamoStore::from_env(sdk, env)?);
    let outbound: Arc<dyn Queue> =
        Arc::new(SqsQueue::from_env(sdk, env, "CARTEIRO_OUTBOUND_QUEUE_URL")?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dispatch = DispatchSettings::from_env(env)?;
    let secret_ids = SecretIds {
        whatsapp: env.optional("CARTEIRO_WHATSAPP_SECRET_ID"),
        smtp: env.optional("CARTEIRO_SMTP_SECRET_ID"),
        callbacks: env.optional("CARTEIRO_CALLBACKS_SECRET_ID"),
        ..SecretIds::default()
    };
    let secrets = SecretsManagerSource::secrets_from_env(sdk, env, secret_ids).await?;
    let graph =
        GraphClient::new(&GraphSettings::from_env(env)?).map_err(|e| ConfigError::Invalid {
            var: "CARTEIRO_GRAPH_TIMEOUT_MS",
            reason: e.to_string(),
        })?;
    let sender = CallbackSender::new(
        secrets.clone(),
        store.clone(),
        clock.clone(),
        CallbackSettings::from_env(env)?,
    )
    .map_err(|e| ConfigError::Invalid {
        var: "CARTEIRO_CALLBACK_TIMEOUT",
        reason: e.to_string(),
    })?;
    Ok(Sweeper {
        status: StatusContext {
            limits: Arc::new(DynamoLimits::from_env(sdk, env)?),
            store: store.clone(),
            secrets: secrets.clone(),
            outbound: outbound.clone(),
            dead_letters: SqsQueue::dead_letters_from_env(sdk, env)?,
            settings: StatusSettings::from_env(env)?,
            messaging_limit: dispatch.messaging_limit,
            modes: Default::default(),
        },
        probes: Probes {
            secrets,
            graph: Some(graph),
            smtp: SmtpProbeConfig {
                settings: SmtpSettings::from_env(env)?,
                options: Default::default(),
            },
            callbacks: Some(Arc::new(sender)),
        },
        sweep: SweepContext {
            store,
            outbound,
            clock,
            dispatch,
            settings: SweepSettings::from_env(env)?,
        },
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
    ctx: &Sweeper,
    event: LambdaEvent<serde_json::Value>,
) -> Result<SweepReport, lambda_runtime::Error> {
    let deadline = stop_at(event.context.deadline);
    let report = sweeper::sweep(&ctx.sweep, deadline).await?;
    // The probes, once per CARTEIRO_PROBE_INTERVAL whatever the schedule; a failed round is
    // logged and tried again at the next tick, never failing the sweep.
    let now = ctx.sweep.clock.now();
    let limits = ctx.status.limits.as_ref();
    match status::probe_due(limits, ctx.status.settings.probe_interval, now).await {
        Ok(true) => {
            if let Err(e) = status::probe_round(&ctx.status, &ctx.probes, now).await {
                tracing::error!(error = %e, "probe round failed; trying again next tick");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not tell whether probes are due"),
    }
    Ok(report)
}
