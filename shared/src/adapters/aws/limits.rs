//! [`LimitStore`] on DynamoDB: `pk = limit#<key>`, `sk = limit`, `version` (N), `body` (S,
//! JSON), `expires_at` (the table's TTL, epoch seconds) and `expires_at_ms`. Writes are
//! conditional `PutItem`s on the version; an expired item (TTL is lazy) counts as absent. It
//! shares the delivery table (one table to provision) but not its trait.

use super::dynamodb::put_conditional;
use super::{describe_sdk_error, schema};
use crate::domain::time::Timestamp;
use crate::ports::clock::{Clock, SystemClock};
use crate::ports::limits::{LimitDoc, LimitStore};
use crate::ports::store::{ReplaceOutcome, StoreError};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::sync::Arc;

const SK: &str = "limit";
const EXPIRES_AT_MS: &str = "expires_at_ms";

#[derive(Debug, Clone)]
pub struct DynamoLimits {
    client: aws_sdk_dynamodb::Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl DynamoLimits {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The limits on the table named by `CARTEIRO_TABLE_NAME`.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        env: crate::config::Env<'_>,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(
            aws_sdk_dynamodb::Client::new(sdk),
            env.required("CARTEIRO_TABLE_NAME")?,
        ))
    }
}

fn pk(key: &str) -> String {
    format!("limit#{key}")
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A conditional `PutItem` answers in single-digit milliseconds at the median; the bound
/// covers its slow tail, so a token is rarely not spent.
const WRITE_LAG: std::time::Duration = std::time::Duration::from_millis(60);

#[async_trait]
impl LimitStore for DynamoLimits {
    fn write_lag(&self) -> std::time::Duration {
        WRITE_LAG
    }

    async fn get_limit(&self, key: &str) -> Result<Option<LimitDoc>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(schema::PK, AttributeValue::S(pk(key)))
            .key(schema::SK, AttributeValue::S(SK.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(describe_sdk_error("GetItem", &e)))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let num = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
            _ => None,
        };
        let body = match item.get("body") {
            Some(AttributeValue::S(b)) => serde_json::from_str(b).ok(),
            _ => None,
        };
        match (num("version"), num(EXPIRES_AT_MS), body) {
            (Some(version), Some(expires_at), Some(body)) => {
                if expires_at <= self.clock.now().as_millis() {
                    return Ok(None);
                }
                Ok(Some(LimitDoc {
                    key: key.to_owned(),
                    version: u64::try_from(version).unwrap_or(0),
                    body,
                    expires_at: Timestamp::from_millis(expires_at),
                }))
            }
            _ => Err(StoreError::Corrupt(format!(
                "limit {key} could not be decoded"
            ))),
        }
    }

    async fn put_limit(
        &self,
        doc: &LimitDoc,
        expected_version: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let body = serde_json::to_string(&doc.body)
            .map_err(|e| StoreError::Unavailable(format!("limit body: {e}")))?;
        let ms = doc.expires_at.as_millis();
        let item: HashMap<String, AttributeValue> = HashMap::from([
            (schema::PK.to_owned(), AttributeValue::S(pk(&doc.key))),
            (schema::SK.to_owned(), AttributeValue::S(SK.to_owned())),
            (
                "version".to_owned(),
                AttributeValue::N(doc.version.to_string()),
            ),
            ("body".to_owned(), AttributeValue::S(body)),
            (schema::TTL_ATTRIBUTE.to_owned(), n(ms.div_euclid(1000) + 1)),
            (EXPIRES_AT_MS.to_owned(), n(ms)),
        ]);
        let now = n(self.clock.now().as_millis());
        let written = if expected_version == 0 {
            // Absent, or expired (TTL is lazy): as good as absent.
            put_conditional(
                &self.client,
                &self.table,
                item,
                "attribute_not_exists(#pk) OR #exp <= :now",
                &[("#pk", schema::PK), ("#exp", EXPIRES_AT_MS)],
                vec![(":now", now)],
            )
            .await?
        } else {
            put_conditional(
                &self.client,
                &self.table,
                item,
                "#v = :v AND #exp > :now",
                &[("#v", "version"), ("#exp", EXPIRES_AT_MS)],
                vec![
                    (":v", AttributeValue::N(expected_version.to_string())),
                    (":now", now),
                ],
            )
            .await?
        };
        Ok(if written {
            ReplaceOutcome::Replaced
        } else {
            ReplaceOutcome::Conflict
        })
    }
}
