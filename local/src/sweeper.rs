//! The retry sweeper on a timer: what EventBridge Scheduler does on AWS, every
//! `CARTEIRO_SWEEP_INTERVAL`; its probe rounds every `CARTEIRO_PROBE_INTERVAL`; and the flush
//! of the provider calls dispatch noted for the status read model, every second.

use carteiro_shared::health::Probes;
use carteiro_shared::ports::limits::LimitStore;
use carteiro_shared::status::StatusContext;
use carteiro_shared::status::calls::CallLedger;
use carteiro_shared::sweeper::{self, SweepContext};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Sweeps every interval until shutdown. Each sweep stops before the next one is due.
pub async fn run(ctx: SweepContext, mut shutdown: watch::Receiver<bool>) {
    let interval = ctx.settings.interval;
    while sleep_unless_stopped(interval, &mut shutdown).await {
        if let Err(e) = sweeper::sweep(&ctx, Instant::now() + interval).await {
            tracing::error!(error = %e, "sweep failed; trying again next interval");
        }
    }
}

/// Sleeps `d`; false once shutdown is asked for (or its sender is gone).
pub(crate) async fn sleep_unless_stopped(
    d: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|stop| *stop) => true,
    };
    !stopped && !*shutdown.borrow()
}

/// A probe round every probe interval (none with `0s`), the first one interval after start,
/// as on Lambda: a restart does not knock on every endpoint at once.
pub async fn probe(
    status: Arc<StatusContext>,
    probes: Probes,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = status.settings.probe_interval;
    if interval.is_zero() {
        return;
    }
    while sleep_unless_stopped(interval, &mut shutdown).await {
        let now = carteiro_shared::domain::time::Timestamp::now();
        if let Err(e) = carteiro_shared::status::probe_round(&status, &probes, now).await {
            tracing::error!(error = %e, "probe round failed; trying again next interval");
        }
    }
}

/// Adds the calls dispatch noted to the status read model every second, and once at shutdown.
pub async fn flush_calls(
    calls: Arc<CallLedger>,
    limits: Arc<dyn LimitStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let go_on = sleep_unless_stopped(Duration::from_secs(1), &mut shutdown).await;
        let now = carteiro_shared::domain::time::Timestamp::now();
        if let Err(e) = carteiro_shared::status::calls::flush(&calls, limits.as_ref(), now).await {
            tracing::warn!(error = %e, "status figures not written yet; kept for the next flush");
        }
        if !go_on {
            return;
        }
    }
}
