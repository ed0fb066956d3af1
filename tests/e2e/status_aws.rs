//! The status on AWS: the retry-sweeper Lambda handler runs a probe round against the Graph
//! API (wiremock) and aiosmtpd and writes it to the read model in DynamoDB (moto); the
//! send-api Lambda handler serves `GET /v1/status`, `GET /status` and `GET /health` from it.
//! A second tick inside the probe interval probes nothing.

use carteiro_e2e::apigw;
use carteiro_e2e::moto::moto;
use carteiro_e2e::smtp::SmtpServer;
use carteiro_e2e::webhooks::whatsapp_secret_json;
use carteiro_shared::config::Env;
use carteiro_shared::ports::{OutgoingMessage, Queue};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "status-aws-api-key";
const PNID: &str = "1122334455667";

async fn get(
    ctx: &carteiro_shared::send_api::SendApiContext,
    path: &str,
    key: bool,
) -> (u16, String, String) {
    let auth = format!("Bearer {KEY}");
    let headers: Vec<(&str, &str)> = if key {
        vec![("authorization", &auth)]
    } else {
        vec![]
    };
    let res = carteiro_send_api::handler(ctx, apigw::request("GET", path, "", &headers, b""))
        .await
        .unwrap();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        res.status().as_u16(),
        kind,
        String::from_utf8(res.body().to_vec()).unwrap(),
    )
}

/// A Graph API whose `debug_token` calls the token valid for ever (asked `token_reads` times,
/// when given) and whose phone number answers `phone`; and the `whatsapp` secret pointing at it.
async fn graph_and_secret(
    token: &str,
    phone: Value,
    token_reads: Option<u64>,
) -> (MockServer, Value) {
    let graph = MockServer::start().await;
    let debug_token = Mock::given(method("GET"))
        .and(path("/v23.0/debug_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "is_valid": true, "expires_at": 0, "type": "SYSTEM_USER",
            "scopes": ["whatsapp_business_messaging"]
        }})));
    match token_reads {
        Some(n) => debug_token.expect(n).mount(&graph).await,
        None => debug_token.mount(&graph).await,
    }
    Mock::given(method("GET"))
        .and(path(format!("/v23.0/{PNID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(phone))
        .mount(&graph)
        .await;
    let mut whatsapp = whatsapp_secret_json();
    whatsapp["access_token"] = json!(token);
    whatsapp["phone_number_id"] = json!(PNID);
    whatsapp["graph_base_url"] = json!(graph.uri());
    (graph, whatsapp)
}

#[tokio::test]
async fn the_sweeper_probes_into_the_table_and_the_send_api_reports_it() {
    let moto = moto();
    let sdk = moto.sdk_config().await;
    let (_graph, whatsapp) = graph_and_secret(
        "EAAG-status-aws-token",
        json!({
            "quality_rating": "YELLOW", "messaging_limit_tier": "TIER_10K",
            "throughput": {"level": "STANDARD"}
        }),
        Some(1),
    )
    .await;
    let smtp = SmtpServer::start();
    let dlq = moto.create_queue("status-outbound-dlq").await;
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        ("CARTEIRO_TABLE_NAME", moto.create_table().await),
        ("CARTEIRO_OUTBOUND_QUEUE_URL", moto.create_queue("status-outbound").await),
        ("CARTEIRO_OUTBOUND_DLQ_URL", dlq.clone()),
        ("CARTEIRO_PROBE_INTERVAL", "10m".to_owned()),
        (
            "CARTEIRO_WHATSAPP_SECRET_ID",
            moto.create_secret("status-whatsapp", &whatsapp.to_string()).await,
        ),
        (
            "CARTEIRO_SMTP_SECRET_ID",
            moto.create_secret(
                "status-smtp",
                &json!({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "from_email": "noreply@example.com"})
                    .to_string(),
            )
            .await,
        ),
        (
            "CARTEIRO_API_KEYS_SECRET_ID",
            moto.create_secret(
                "status-api-keys",
                &json!({"keys": [{"id": "ops", "key": KEY}]}).to_string(),
            )
            .await,
        ),
    ]);
    let lookup = move |k: &str| vars.get(k).cloned();
    let env = Env::new(&lookup);
    let sweeper = carteiro_retry_sweeper::context(&sdk, env).await.unwrap();
    let send_api = carteiro_send_api::context(&sdk, env).await.unwrap();
    // A dead letter, as SQS's redrive would leave one.
    carteiro_shared::adapters::aws::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), dlq)
        .send_batch(&[OutgoingMessage::new(r#"{"id":"msg_dead"}"#)])
        .await
        .unwrap();

    let (status, _, body) = get(&send_api, "/health", false).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _, _) = get(&send_api, "/v1/status", false).await;
    assert_eq!(status, 401);

    let tick = || {
        let mut context = Context::default();
        context.deadline =
            u64::try_from(carteiro_shared::domain::time::Timestamp::now().as_millis() + 50_000)
                .unwrap();
        LambdaEvent::new(json!({}), context)
    };
    carteiro_retry_sweeper::handler(&sweeper, tick())
        .await
        .unwrap();
    // Inside the interval: nothing probed again (debug_token is expected once).
    carteiro_retry_sweeper::handler(&sweeper, tick())
        .await
        .unwrap();

    let (status, kind, body) = get(&send_api, "/v1/status", true).await;
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("application/json"));
    let report: Value = serde_json::from_str(&body).unwrap();
    let integration = |name: &str| {
        report["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {report:#}"))
            .clone()
    };
    let whatsapp = integration("whatsapp");
    let probes = whatsapp["probes"].as_array().unwrap();
    let token = probes
        .iter()
        .find(|p| p["part"] == "whatsapp token")
        .unwrap();
    assert_eq!(token["verdict"], "ok", "{token}");
    let phone = probes
        .iter()
        .find(|p| p["part"] == "whatsapp phone number")
        .unwrap();
    assert_eq!(phone["verdict"], "warning", "YELLOW quality: {phone}");
    assert_eq!(phone["facts"]["messaging_limit_tier"], "TIER_10K");
    assert_eq!(whatsapp["state"], "degraded");
    let smtp_status = integration("smtp:primary");
    assert_eq!(smtp_status["probes"][0]["verdict"], "ok", "{smtp_status:#}");
    let dead = report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "outbound-dlq")
        .unwrap();
    assert_eq!(dead["messages"], 1, "{dead}");
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["code"] == "dead_letters"),
        "{report:#}"
    );

    let (status, kind, html) = get(&send_api, "/status", false).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"));
    assert!(html.contains(r#"data-integration="whatsapp" data-state="degraded""#));
    assert!(!html.contains("EAAG-status-aws-token"));
    assert_eq!(smtp.received(0).len(), 0, "the probe sent an email");
}

#[tokio::test]
async fn carteiro_check_aws_probes_the_deployed_secrets() {
    let moto = moto();
    let sdk = moto.sdk_config().await;
    let (_graph, whatsapp) = graph_and_secret(
        "EAAG-check-aws-token",
        json!({"quality_rating": "GREEN", "messaging_limit_tier": "TIER_1K"}),
        None,
    )
    .await;
    // A relay nothing listens on: the check must name it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        (
            "CARTEIRO_WHATSAPP_SECRET_ID",
            moto.create_secret("check-whatsapp", &whatsapp.to_string()).await,
        ),
        (
            "CARTEIRO_SMTP_SECRET_ID",
            moto.create_secret(
                "check-smtp",
                &json!({"smtp_host": "127.0.0.1", "smtp_port": closed, "from_email": "noreply@example.com"})
                    .to_string(),
            )
            .await,
        ),
    ]);
    let lookup = move |k: &str| vars.get(k).cloned();
    let secrets = carteiro_local::check::deployed_secrets(&sdk, Env::new(&lookup))
        .await
        .unwrap();
    let checked = carteiro_local::check::run(
        secrets,
        &carteiro_shared::config::Settings::default(),
        Default::default(),
        false,
    )
    .await
    .unwrap();
    let table = checked.table();
    assert_eq!(checked.failed(), vec!["smtp:primary"], "{table}");
    assert!(table.contains("whatsapp token         ok"), "{table}");
    assert!(table.contains("webhook                skipped"), "{table}");
    assert!(!table.contains("EAAG-check-aws-token"), "{table}");
}
