//! The table itself: does it exist, with the expected key, and can it take writes? Created on
//! demand for local development (`--create-table`), with TTL on `expires_at`.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};

use super::errors::Fault;
use super::{
    DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, StoreError, TABLE_ACTIVE_WAIT,
    errors::error_chain,
};

pub(super) enum DescribeError {
    Missing,
    Failed(StoreError),
}

impl DynamoStore {
    /// Asks DynamoDB for the table's state: `Ok(None)` when usable, `Ok(Some(status))` when it
    /// exists but cannot take writes yet.
    async fn describe(&self) -> Result<Option<TableStatus>, DescribeError> {
        let out = self
            .client
            .describe_table()
            .table_name(self.table())
            .send()
            .await
            .map_err(|err| {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    DescribeError::Missing
                } else {
                    DescribeError::Failed(self.failed("DescribeTable", err))
                }
            })?;
        let table = out.table();
        let key = table
            .map(|t| t.key_schema())
            .unwrap_or_default()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type().clone()))
            .collect::<Vec<_>>();
        let key_is_string = table
            .map(|t| t.attribute_definitions())
            .unwrap_or_default()
            .iter()
            .any(|a| {
                a.attribute_name() == KEY_ATTRIBUTE && *a.attribute_type() == ScalarAttributeType::S
            });
        if key != [(KEY_ATTRIBUTE, KeyType::Hash)] || !key_is_string {
            return Err(DescribeError::Failed(StoreError::unavailable(
                format!(
                    "DynamoDB table {} does not have the expected key: it must have the \
                     partition key {KEY_ATTRIBUTE} (String) and no sort key",
                    self.table()
                ),
                Fault::KeySchema,
            )));
        }
        match table.and_then(|t| t.table_status()) {
            // UPDATING (e.g. a capacity change) still takes reads and writes.
            Some(TableStatus::Active | TableStatus::Updating) => Ok(None),
            Some(other) => Ok(Some(other.clone())),
            None => Ok(Some(TableStatus::from("UNKNOWN"))),
        }
    }

    async fn create(&self) -> Result<(), StoreError> {
        let created = self
            .client
            .create_table()
            .table_name(self.table())
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(KEY_ATTRIBUTE)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| StoreError::unavailable("building a CreateTable request", e))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(KEY_ATTRIBUTE)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| StoreError::unavailable("building a CreateTable request", e))?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(
                    table = self.table(),
                    "created DynamoDB table (--create-table)"
                );
                self.ttl_pending.store(true, Ordering::Relaxed);
                Ok(())
            }
            // Another instance created it first.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(self.failed("CreateTable", err)),
        }
    }

    /// Waits a little for a table that is being created to become usable.
    async fn wait_until_active(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let status = match self.describe().await {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => status,
                Err(DescribeError::Missing) => TableStatus::Creating,
                Err(DescribeError::Failed(err)) => return Err(err),
            };
            if started.elapsed() >= TABLE_ACTIVE_WAIT {
                return Err(StoreError::unavailable(
                    format!(
                        "DynamoDB table {} is {}, not yet ACTIVE",
                        self.table(),
                        status.as_str()
                    ),
                    Fault::TableStatus(status.as_str().to_owned()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the table exists, has the expected key and takes writes; creates it if asked.
    pub(super) async fn table_ready(&self) -> Result<(), StoreError> {
        if self.confirmed_recently() {
            return Ok(());
        }
        let result = match self.describe().await {
            Ok(None) => Ok(()),
            Ok(Some(TableStatus::Creating)) => self.wait_until_active().await,
            Ok(Some(status)) => Err(StoreError::unavailable(
                format!(
                    "DynamoDB table {} is {}, not ACTIVE",
                    self.table(),
                    status.as_str()
                ),
                Fault::TableStatus(status.as_str().to_owned()),
            )),
            Err(DescribeError::Missing) if self.settings.create_table => {
                self.create().await?;
                self.wait_until_active().await
            }
            Err(DescribeError::Missing) => Err(StoreError::unavailable(
                format!(
                    "DynamoDB table {} does not exist in this account and region (create it \
                     with the Terraform dynamodb root, or pass --create-table for local \
                     development)",
                    self.table()
                ),
                Fault::NoTable,
            )),
            Err(DescribeError::Failed(err)) => Err(err),
        };
        if result.is_ok() {
            self.confirm();
            if self.ttl_pending.swap(false, Ordering::Relaxed) {
                self.enable_ttl().await;
            }
        }
        result
    }

    /// Turns on TTL on `expires_at` for a table this instance created, so that expired key
    /// records are deleted. Servers without TTL (dynalite) are tolerated: the service works the
    /// same, and an expired key is treated as absent whether or not it was deleted yet.
    async fn enable_ttl(&self) {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(EXPIRES_AT_ATTRIBUTE)
            .build();
        let spec = match spec {
            Ok(spec) => spec,
            Err(err) => {
                tracing::warn!(error = %err, "cannot describe the TTL setting");
                return;
            }
        };
        match self
            .client
            .update_time_to_live()
            .table_name(self.table())
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => tracing::info!(
                table = self.table(),
                attribute = EXPIRES_AT_ATTRIBUTE,
                "turned on TTL for idempotency keys (--create-table)"
            ),
            Err(err) => tracing::info!(
                table = self.table(),
                error = %error_chain(&err),
                "the DynamoDB server did not turn on TTL; expired idempotency keys will be \
                 ignored but not deleted"
            ),
        }
    }
}
