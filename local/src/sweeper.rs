//! The retry sweeper on a timer: what EventBridge Scheduler does on AWS, every
//! `CARTEIRO_SWEEP_INTERVAL`.

use carteiro_shared::sweeper::{self, SweepContext};
use std::time::Instant;
use tokio::sync::watch;

/// Sweeps every interval until shutdown. Each sweep stops before the next one is due.
pub async fn run(ctx: SweepContext, mut shutdown: watch::Receiver<bool>) {
    let interval = ctx.settings.interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = sweeper::sweep(&ctx, Instant::now() + interval).await {
            tracing::error!(error = %e, "sweep failed; trying again next interval");
        }
    }
}
