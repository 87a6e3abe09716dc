//! Operational endpoints for orchestrators and operators: liveness, readiness, version.
//! They sit under their own tag, apart from the public transactions API.

use std::sync::Arc;

use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiTags, json::JsonBody as Json};
use crate::lifecycle::Lifecycle;

/// State of the instance.
// Not `Status`: client generators name a variable after its model, and a model `Status` with
// a field `status` made openapi-python-client's code assign one to the other.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    /// `ok`/`ready`, or why not: `starting`, `draining`, `store_unavailable`.
    pub status: String,
}

/// Name and version of the running service.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub name: String,
    pub version: String,
    /// The store this instance counts in.
    pub store: String,
    /// `api-keys` when the transactions API needs an API key, `off` when any client may
    /// read and write.
    pub auth: String,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Ready to take traffic.
    #[oai(status = 200)]
    Ready(Json<InstanceStatus>),
    /// Not ready: starting, draining, or (with a store local to the instance) the store cannot
    /// commit.
    #[oai(status = 503)]
    NotReady(Json<InstanceStatus>),
}

pub struct OperationsApi {
    lifecycle: Arc<Lifecycle>,
    store_kind: &'static str,
    auth_mode: &'static str,
}

impl OperationsApi {
    pub fn new(
        lifecycle: Arc<Lifecycle>,
        store_kind: &'static str,
        auth_mode: &'static str,
    ) -> Self {
        Self {
            lifecycle,
            store_kind,
            auth_mode,
        }
    }
}

#[OpenApi(tag = "ApiTags::Operations")]
impl OperationsApi {
    /// Liveness: the process is up and serving HTTP. Checks no dependency.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<InstanceStatus> {
        Json(InstanceStatus {
            status: "ok".into(),
        })
    }

    /// Readiness: `503` while starting or draining. With a store local to the instance
    /// (embedded, memory) also while that store is failing; with a shared store (DynamoDB)
    /// store failures are answered `503` by the requests that need the store, and readiness
    /// stays `200` so that the load balancer keeps sending clients to an instance that answers.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self) -> ReadyResponse {
        match self.lifecycle.readiness() {
            Ok(()) => ReadyResponse::Ready(Json(InstanceStatus {
                status: "ready".into(),
            })),
            Err(why) => ReadyResponse::NotReady(Json(InstanceStatus {
                status: why.code().into(),
            })),
        }
    }

    /// Name, version, store and authentication mode of this instance.
    #[oai(path = "/version", method = "get", operation_id = "version")]
    async fn version(&self) -> Json<Version> {
        Json(Version {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            store: self.store_kind.into(),
            auth: self.auth_mode.into(),
        })
    }
}
