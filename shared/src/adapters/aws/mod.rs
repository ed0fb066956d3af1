//! The AWS adapters: [`SqsQueue`] (SQS), [`DynamoStore`] (DynamoDB, one table) and
//! [`SecretsManagerSource`] (Secrets Manager, with an in-process TTL cache).
//!
//! Each takes an SDK client (or builder) built once at INIT, so connections and credentials are
//! reused across invocations. SDK failures are turned into port errors whose messages carry
//! the operation, the service's error code and message, or the kind of transport failure —
//! never a request's payload, credentials or secret values.
//!
//! [`schema`] names the table's keys, indexes and attributes; `template.yaml` and the test
//! harness that creates tables on moto must use the same names.

pub mod dynamodb;
pub mod limits;
pub mod secrets;
pub mod sqs;
pub mod suppressions;

pub use aws_config::SdkConfig;
pub use dynamodb::DynamoStore;
pub use limits::DynamoLimits;
pub use secrets::{SecretIds, SecretsManagerSource};
pub use sqs::SqsQueue;
pub use suppressions::DynamoSuppressions;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use std::error::Error as StdError;

/// The SDK configuration every Lambda loads once at INIT: region and credentials from the
/// default chain (on Lambda, the environment), and the SDK's HTTPS client (rustls over
/// aws-lc-rs, as its default) trusting the Amazon Trust Services roots compiled in
/// ([`crate::tls`]) instead of reading the system store.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    let trust = TrustStore::empty().with_pem_certificate(crate::tls::aws_root_certificates_pem());
    let http_client = match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(e) => {
            tracing::warn!(error = %e, "compiled-in roots refused; using the system store");
            builder.build_https()
        }
    };
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client);
    // Lambda always sets the region and the credentials in the environment, where the default
    // chains would find them first anyway; given them, the loader does not build the chains
    // (profile files, IMDS, ECS, web identity) at all. Elsewhere the chains still apply.
    if let Ok(region) = std::env::var("AWS_REGION") {
        loader = loader.region(aws_config::Region::new(region));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    loader.load().await
}

/// The DynamoDB single-table schema. `template.yaml` declares exactly this.
pub mod schema {
    /// Partition key, type S.
    pub const PK: &str = "pk";
    /// Sort key, type S.
    pub const SK: &str = "sk";
    /// Sort key of a delivery record (whose `pk` is `msg#<id>`).
    pub const RECORD_SK: &str = "record";
    /// Prefix of a delivery record's `pk`.
    pub const MESSAGE_PK_PREFIX: &str = "msg#";
    /// Sort key of an inbound record whose sub-key is empty.
    pub const EMPTY_SUB_KEY_SK: &str = "-";

    /// GSI over `provider_message_id` (S), projection KEYS_ONLY.
    pub const GSI_BY_PROVIDER_ID: &str = "by-provider-id";
    /// Hash key of [`GSI_BY_PROVIDER_ID`]; a top-level attribute of delivery records.
    pub const PROVIDER_MESSAGE_ID: &str = "provider_message_id";

    /// Sparse GSI: hash `due_bucket` (S), range `due_at` (N, epoch ms), projection
    /// KEYS_ONLY. Only records with work pending carry them (the sweeper's scan).
    pub const GSI_BY_DUE: &str = "by-due";
    pub const DUE_BUCKET: &str = "due_bucket";
    /// [`DUE_BUCKET`] is this prefix and the record's shard (`pending#0` … `pending#15`), so
    /// the index spreads over that many partitions.
    pub const DUE_BUCKET_PREFIX: &str = "pending#";
    /// When the sweeper should look at the record (`DeliveryRecord::sweep_due_at`).
    pub const DUE_AT: &str = "due_at";

    /// GSI over a key's messages: hash `owner` (S, the API key id), range `owner_at` (S,
    /// [`crate::ports::store::Cursor::sort_key`] of creation time and id), KEYS_ONLY.
    pub const GSI_BY_OWNER: &str = "by-owner";
    pub const OWNER: &str = "owner";
    pub const OWNER_AT: &str = "owner_at";
    /// GSI over a contact's conversation, outbound records and inbound messages alike: hash
    /// `contact` (S, the wa_id), range `contact_at` (S, time and id), KEYS_ONLY.
    pub const GSI_BY_CONTACT: &str = "by-contact";
    pub const CONTACT: &str = "contact";
    pub const CONTACT_AT: &str = "contact_at";

    /// The table's TTL attribute: epoch **seconds** (DynamoDB ignores anything else).
    pub const TTL_ATTRIBUTE: &str = "expires_at";
}

/// Describes an SDK failure for an error message: operation, error code and the service's
/// message, or the kind of transport failure. Request contents are never included.
pub(crate) fn describe_sdk_error<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("unknown error");
            match err.message() {
                Some(message) => format!("{operation}: {code}: {}", truncate(message, 300)),
                None => format!("{operation}: {code}"),
            }
        }
        SdkError::TimeoutError(_) => format!("{operation}: timed out"),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                "timed out connecting"
            } else if failure.is_io() {
                "connection failed"
            } else {
                "request could not be sent"
            };
            match failure.as_connector_error().and_then(|c| c.source()) {
                Some(source) => format!(
                    "{operation}: {kind}: {}",
                    truncate(&source.to_string(), 300)
                ),
                None => format!("{operation}: {kind}"),
            }
        }
        SdkError::ResponseError(_) => format!("{operation}: the response could not be read"),
        SdkError::ConstructionFailure(_) => format!("{operation}: the request could not be built"),
        _ => format!("{operation}: unexpected SDK failure"),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ação", 2), "aç…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
