//! [`SuppressionStore`] on DynamoDB: every suppression in one partition, `pk = suppression`,
//! `sk = <channel>/<address>`, `body` (S, JSON) and, for one that lapses, `expires_at` (the
//! table's TTL, epoch seconds) and `until_ms`. Suppressions are few and written rarely, so one
//! partition lists them in key order with a single `Query`. A lapsed item (TTL is lazy) counts
//! as absent.

use super::{describe_sdk_error, schema};
use crate::domain::suppression::{SuppressedChannel, Suppression, key};
use crate::ports::clock::{Clock, SystemClock};
use crate::ports::store::StoreError;
use crate::ports::suppressions::{SuppressionPage, SuppressionStore};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;
use std::sync::Arc;

const PK: &str = "suppression";

#[derive(Debug, Clone)]
pub struct DynamoSuppressions {
    client: aws_sdk_dynamodb::Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl DynamoSuppressions {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The suppressions on the table named by `CARTEIRO_TABLE_NAME`.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        env: crate::config::Env<'_>,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(
            aws_sdk_dynamodb::Client::new(sdk),
            env.required("CARTEIRO_TABLE_NAME")?,
        ))
    }

    fn live(
        &self,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Option<Suppression>, StoreError> {
        let sk = match item.get(schema::SK) {
            Some(AttributeValue::S(s)) => s.as_str(),
            _ => "(no sk)",
        };
        let s: Suppression = match item.get("body") {
            Some(AttributeValue::S(b)) => serde_json::from_str(b)
                .map_err(|e| StoreError::Corrupt(format!("suppression {sk}: {e}")))?,
            _ => return Err(StoreError::Corrupt(format!("suppression {sk}: no body"))),
        };
        Ok(s.active(self.clock.now()).then_some(s))
    }
}

#[async_trait]
impl SuppressionStore for DynamoSuppressions {
    async fn put_suppression(&self, suppression: &Suppression) -> Result<(), StoreError> {
        let body = serde_json::to_string(suppression)
            .map_err(|e| StoreError::Unavailable(format!("suppression body: {e}")))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(schema::PK, AttributeValue::S(PK.to_owned()))
            .item(schema::SK, AttributeValue::S(suppression.key()))
            .item("body", AttributeValue::S(body));
        if let Some(until) = suppression.until {
            let ms = until.as_millis();
            put = put
                .item(
                    schema::TTL_ATTRIBUTE,
                    AttributeValue::N((ms.div_euclid(1000) + 1).to_string()),
                )
                .item("until_ms", AttributeValue::N(ms.to_string()));
        }
        put.send()
            .await
            .map_err(|e| StoreError::Unavailable(describe_sdk_error("PutItem", &e)))?;
        Ok(())
    }

    async fn get_suppression(
        &self,
        channel: SuppressedChannel,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(schema::PK, AttributeValue::S(PK.to_owned()))
            .key(schema::SK, AttributeValue::S(key(channel, address)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(describe_sdk_error("GetItem", &e)))?;
        match out.item {
            Some(item) => self.live(&item),
            None => Ok(None),
        }
    }

    async fn delete_suppression(
        &self,
        channel: SuppressedChannel,
        address: &str,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(schema::PK, AttributeValue::S(PK.to_owned()))
            .key(schema::SK, AttributeValue::S(key(channel, address)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(describe_sdk_error("DeleteItem", &e)))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn list_suppressions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SuppressionPage, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        // DynamoDB takes no empty key value: without `after`, the partition from its start.
        let after = after.filter(|a| !a.is_empty()).map(str::to_owned);
        // Lapsed items are skipped, so a page may take more than one query.
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#pk", schema::PK)
                .expression_attribute_values(":pk", AttributeValue::S(PK.to_owned()));
            query = match &after {
                Some(a) => query
                    .key_condition_expression("#pk = :pk AND #sk > :after")
                    .expression_attribute_names("#sk", schema::SK)
                    .expression_attribute_values(":after", AttributeValue::S(a.clone())),
                None => query.key_condition_expression("#pk = :pk"),
            };
            let out = query
                .consistent_read(true)
                .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(describe_sdk_error("Query", &e)))?;
            for item in out.items.unwrap_or_default() {
                if let Some(s) = self.live(&item)? {
                    items.push(s);
                }
            }
            start = out.last_evaluated_key;
            if items.len() > limit || start.is_none() {
                break;
            }
        }
        Ok(SuppressionPage::of(items, limit))
    }
}
