//! Lambda entry point for the inbound-event consumer.

use carteiro_shared::config::{Env, process_env};
use carteiro_shared::observability::{init_lambda, metrics};
use lambda_runtime::{run, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_lambda();
    let ctx = carteiro_inbound_events::context_from_env(Env::new(&process_env)).await?;
    let ctx = &ctx;
    run(service_fn(move |event| async move {
        let answer = carteiro_inbound_events::handler(ctx, event).await;
        metrics::flush_emf();
        answer
    }))
    .await
}
