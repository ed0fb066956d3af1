//! Lambda entry point for dispatch.

use carteiro_shared::config::{Env, process_env};
use carteiro_shared::observability::{init_lambda, metrics};
use lambda_runtime::{run, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_lambda();
    let ctx = carteiro_dispatch::context_from_env(Env::new(&process_env)).await?;
    let ctx = &ctx;
    run(service_fn(move |event| async move {
        let answer = carteiro_dispatch::handler(ctx, event).await;
        metrics::flush_emf();
        answer
    }))
    .await
}
