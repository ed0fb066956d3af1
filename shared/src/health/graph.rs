//! The Graph API probes: the access token, as Graph's `debug_token` sees it, and the phone
//! number's fields (quality rating, messaging-limit tier, throughput).
//!
//! `debug_token` is asked with the app token (`<app_id>|<app_secret>`) when the secret names
//! the app, else with the access token itself. `expires_at: 0` means the token never expires
//! (a system-user token); one expiring within [`TOKEN_WARNING`] is a warning, so there is time
//! to rotate it before sends start failing with code 190.

use super::{Probe, Verdict};
use crate::domain::time::Timestamp;
use crate::providers::whatsapp::{
    GraphClient, access_token, graph_root, parse_error_body, phone_number_id,
};
use crate::secrets::WhatsAppSecret;
use secrecy::ExposeSecret;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A token expiring sooner than this is a warning (and an alert).
pub const TOKEN_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// The scope a token needs to send.
pub const MESSAGING_SCOPE: &str = "whatsapp_business_messaging";

/// The phone number's fields asked for.
pub const PHONE_FIELDS: &str =
    "display_phone_number,verified_name,quality_rating,messaging_limit_tier,throughput";

pub const TOKEN_PART: &str = "whatsapp token";
pub const PHONE_PART: &str = "whatsapp phone number";
const INTEGRATION: &str = "whatsapp";

/// Both probes of the `whatsapp` secret.
pub async fn probe(graph: &GraphClient, secret: &WhatsAppSecret, now: Timestamp) -> Vec<Probe> {
    vec![
        token(graph, secret, now).await,
        phone(graph, secret, now).await,
    ]
}

/// A GET of the Graph API with a bearer token: the JSON body of a 2xx, or why not.
async fn get(
    graph: &GraphClient,
    url: &str,
    query: &[(&str, &str)],
    bearer: &str,
) -> Result<Value, String> {
    let url = reqwest::Url::parse_with_params(url, query)
        .map_err(|_| "whatsapp.graph_base_url does not make a valid URL".to_owned())?;
    let sent = graph
        .http()
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        // The URL may carry the token being inspected: never quote it.
        .map_err(|e| format!("the Graph API could not be reached: {}", e.without_url()))?;
    let status = sent.status();
    let bytes = sent.bytes().await.map_err(|e| {
        format!(
            "the Graph API's answer could not be read: {}",
            e.without_url()
        )
    })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|_| format!("the Graph API answered {status} with a body that is not JSON"));
    }
    Err(match parse_error_body(&bytes) {
        Some(e) => format!(
            "the Graph API answered {status}: code {}: {}",
            e.code,
            e.message.unwrap_or_default()
        ),
        None => format!("the Graph API answered {status}"),
    })
}

/// The token's validity, scopes and expiry.
pub async fn token(graph: &GraphClient, secret: &WhatsAppSecret, now: Timestamp) -> Probe {
    let started = Instant::now();
    let failed = |why: String| Probe::new(TOKEN_PART, INTEGRATION, Verdict::Failed, why, now);
    let token = match access_token(secret) {
        Ok(token) => token,
        Err(f) => return failed(f.error.message),
    };
    let root = match graph_root(secret) {
        Ok(root) => root,
        Err(f) => return failed(f.error.message),
    };
    let app_token = secret
        .app_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| format!("{id}|{}", secret.app_secret.expose_secret()));
    let asked_with = app_token.as_deref().unwrap_or(token);
    let body = match get(
        graph,
        &format!("{root}/debug_token"),
        &[("input_token", token)],
        asked_with,
    )
    .await
    {
        Ok(body) => body,
        Err(why) => return failed(why).took(started),
    };
    judge_token(&body["data"], now).took(started)
}

/// What `debug_token`'s `data` says of the token.
pub fn judge_token(data: &Value, now: Timestamp) -> Probe {
    let valid = data["is_valid"].as_bool().unwrap_or(false);
    let scopes: Vec<&str> = data["scopes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let expires_at = data["expires_at"].as_i64().unwrap_or(0);
    let mut probe = Probe::new(TOKEN_PART, INTEGRATION, Verdict::Ok, "", now)
        .fact("valid", valid)
        .fact("scopes", scopes.clone())
        .fact("expires_at", (expires_at > 0).then_some(expires_at));
    if let Some(kind) = data["type"].as_str() {
        probe = probe.fact("type", kind);
    }
    if !valid {
        let why = data["error"]["message"]
            .as_str()
            .unwrap_or("no reason given");
        probe.verdict = Verdict::Failed;
        probe.detail = format!("Graph calls the access token invalid: {why}");
        return probe;
    }
    if !scopes.is_empty() && !scopes.contains(&MESSAGING_SCOPE) {
        probe.verdict = Verdict::Failed;
        probe.detail = format!("the access token lacks the {MESSAGING_SCOPE} scope");
        return probe;
    }
    if expires_at <= 0 {
        probe.detail = "valid, never expires".to_owned();
        return probe;
    }
    let expires = Timestamp::from_secs(expires_at);
    let left_ms = expires.as_millis() - now.as_millis();
    let days = left_ms as f64 / 86_400_000.0;
    if left_ms <= 0 {
        probe.verdict = Verdict::Failed;
        probe.detail = format!("the access token expired at {}", expires.to_rfc3339());
    } else if left_ms < i64::try_from(TOKEN_WARNING.as_millis()).unwrap_or(i64::MAX) {
        probe.verdict = Verdict::Warning;
        probe.detail = format!(
            "valid, but expires in {days:.1} days ({}); rotate it",
            expires.to_rfc3339()
        );
    } else {
        probe.detail = format!("valid, expires {} ({days:.0} days)", expires.to_rfc3339());
    }
    probe.fact("expires_in_days", (days * 10.0).round() / 10.0)
}

/// The phone number's quality rating, messaging-limit tier and throughput.
pub async fn phone(graph: &GraphClient, secret: &WhatsAppSecret, now: Timestamp) -> Probe {
    let started = Instant::now();
    let failed = |why: String| Probe::new(PHONE_PART, INTEGRATION, Verdict::Failed, why, now);
    let (token, pnid) = match access_token(secret).and_then(|t| Ok((t, phone_number_id(secret)?))) {
        Ok(found) => found,
        Err(f) => return failed(f.error.message),
    };
    let root = match graph_root(secret) {
        Ok(root) => root,
        Err(f) => return failed(f.error.message),
    };
    match get(
        graph,
        &format!("{root}/{pnid}"),
        &[("fields", PHONE_FIELDS)],
        token,
    )
    .await
    {
        Ok(body) => judge_phone(&body, now).took(started),
        Err(why) => failed(why).took(started),
    }
}

/// What the phone number's fields say: GREEN is fine, YELLOW and RED are warnings (Meta lowers
/// the tier of a number whose quality stays low).
pub fn judge_phone(body: &Value, now: Timestamp) -> Probe {
    let text = |k: &str| body[k].as_str().map(str::to_owned);
    let quality = text("quality_rating").unwrap_or_else(|| "UNKNOWN".to_owned());
    let tier = text("messaging_limit_tier");
    let throughput = body["throughput"]["level"].as_str().map(str::to_owned);
    let verdict = match quality.as_str() {
        "GREEN" | "UNKNOWN" | "NA" => Verdict::Ok,
        _ => Verdict::Warning,
    };
    let number = text("display_phone_number").unwrap_or_default();
    let detail = format!(
        "{number} quality {quality}, tier {}, throughput {}",
        tier.as_deref().unwrap_or("unknown"),
        throughput.as_deref().unwrap_or("unknown")
    );
    Probe::new(PHONE_PART, INTEGRATION, verdict, detail.trim(), now)
        .fact("quality_rating", quality)
        .fact("messaging_limit_tier", tier)
        .fact("throughput", throughput)
        .fact("display_phone_number", text("display_phone_number"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_token_that_never_expires_is_fine() {
        let p = judge_token(
            &json!({"is_valid": true, "expires_at": 0, "scopes": [MESSAGING_SCOPE], "type": "SYSTEM_USER"}),
            Timestamp::from_secs(NOW),
        );
        assert_eq!(p.verdict, Verdict::Ok);
        assert_eq!(p.facts["expires_at"], Value::Null);
        assert!(p.detail.contains("never expires"));
    }

    #[test]
    fn a_token_expiring_within_two_weeks_is_a_warning() {
        let now = Timestamp::from_secs(NOW);
        let in_days = |d: i64| json!({"is_valid": true, "expires_at": NOW + d * 86_400});
        assert_eq!(judge_token(&in_days(10), now).verdict, Verdict::Warning);
        assert_eq!(
            judge_token(&in_days(10), now).facts["expires_in_days"],
            10.0
        );
        assert_eq!(judge_token(&in_days(15), now).verdict, Verdict::Ok);
        assert_eq!(judge_token(&in_days(-1), now).verdict, Verdict::Failed);
    }

    #[test]
    fn an_invalid_token_or_a_missing_scope_fails() {
        let now = Timestamp::from_secs(NOW);
        let p = judge_token(
            &json!({"is_valid": false, "error": {"code": 190, "message": "Session has expired"}}),
            now,
        );
        assert_eq!(p.verdict, Verdict::Failed);
        assert!(p.detail.contains("Session has expired"), "{}", p.detail);
        let p = judge_token(
            &json!({"is_valid": true, "scopes": ["whatsapp_business_management"]}),
            now,
        );
        assert_eq!(p.verdict, Verdict::Failed);
    }

    #[test]
    fn a_yellow_number_is_a_warning() {
        let now = Timestamp::from_secs(NOW);
        let body = json!({"quality_rating": "YELLOW", "messaging_limit_tier": "TIER_1K", "throughput": {"level": "STANDARD"}});
        let p = judge_phone(&body, now);
        assert_eq!(p.verdict, Verdict::Warning);
        assert_eq!(p.facts["messaging_limit_tier"], "TIER_1K");
        assert_eq!(p.facts["throughput"], "STANDARD");
        let p = judge_phone(&json!({"quality_rating": "GREEN"}), now);
        assert_eq!(p.verdict, Verdict::Ok);
    }
}
