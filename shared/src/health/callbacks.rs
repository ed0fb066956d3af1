//! The callback endpoint probe: a `HEAD` of the endpoint's URL through the callback sender's
//! own client (the same SSRF checks and TLS roots), so no event is sent. Any HTTP answer proves
//! the endpoint reachable and its certificate good — a receiver that only takes POST answers
//! 405, which is fine; no answer, a refused address or a TLS failure is not.

use super::{Probe, Verdict};
use crate::callbacks::endpoints::CallbackEndpoint;
use crate::domain::time::Timestamp;
use crate::providers::webhook::CallbackSender;
use std::time::Instant;

pub async fn probe(sender: &CallbackSender, endpoint: &CallbackEndpoint, now: Timestamp) -> Probe {
    let started = Instant::now();
    let integration = format!("webhook:{}", endpoint.id);
    let tls = endpoint.url.starts_with("https://");
    let probe = match sender.reach(&endpoint.url).await {
        Ok(status) => Probe::new(
            &integration,
            &integration,
            Verdict::Ok,
            format!(
                "{} answered {status}{}; no event sent",
                endpoint.url,
                if tls { " over TLS" } else { "" }
            ),
            now,
        )
        .fact("status", status),
        Err(why) => Probe::new(
            &integration,
            &integration,
            Verdict::Failed,
            format!("{}: {why}", endpoint.url),
            now,
        ),
    };
    probe.fact("tls", tls).took(started)
}
