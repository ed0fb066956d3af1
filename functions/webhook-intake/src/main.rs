//! Lambda entry point for webhook intake.

use carteiro_shared::config::{Env, process_env};
use carteiro_shared::observability::{init_lambda, metrics};
use lambda_http::{run, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_lambda();
    let ctx = carteiro_webhook_intake::context_from_env(Env::new(&process_env)).await?;
    let ctx = &ctx;
    run(service_fn(move |req| async move {
        let answer = carteiro_webhook_intake::handler(ctx, req).await;
        metrics::flush_emf();
        answer
    }))
    .await
}
