//! What operators do through the API: export a snapshot of the whole store while the service
//! runs (`GET /admin/export`, for a key with the `admin` scope). The snapshot streams as JSON
//! Lines as the store yields it; writes go on meanwhile.

use std::sync::Arc;

use bytes::Bytes;
use poem::Body;
use poem_openapi::{ApiResponse, OpenApi, payload::Binary};
use tokio::sync::mpsc;

use super::{
    ApiTags,
    auth::Caller,
    error::{ErrorBody, ErrorCode},
    json::JsonBody as Json,
};
use crate::{
    ledger::Ledger,
    snapshot::{Header, SnapshotWriter},
    telemetry::logging::error_chain,
};

/// Records read ahead of the client.
const RECORDS_IN_FLIGHT: usize = 1024;
/// Records written into one chunk of the body.
const RECORDS_PER_CHUNK: usize = 256;

#[derive(ApiResponse)]
pub enum ExportResponse {
    /// The snapshot, as JSON Lines: a header line (format, version, snapshot id, source store,
    /// time taken), one line per route in ascending order, one per unexpired idempotency key,
    /// and an end line with the number of each. A body without its end line was cut short (the
    /// store failed mid-way): discard it. `flight-counter import --input FILE` reads it.
    #[oai(status = 200, content_type = "application/x-ndjson")]
    Ok(
        Binary<Body>,
        /// The snapshot's id, also in its header line.
        #[oai(header = "Snapshot-Id")]
        String,
    ),
    /// No API key, a malformed `Authorization` header, or a key that is not valid
    /// (`unauthorized`); only when the service runs with API keys. Produced before the
    /// operation runs.
    #[oai(status = 401)]
    #[allow(dead_code)]
    Unauthorized(
        Json<ErrorBody>,
        /// Always `Bearer`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The API key's scope is `read` or `write`; exporting needs `admin` (`forbidden`).
    /// Produced before the operation runs.
    #[oai(status = 403)]
    #[allow(dead_code)]
    Forbidden(Json<ErrorBody>),
    /// Unexpected failure (`internal`); nothing about it is exposed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

pub struct AdminApi {
    ledger: Arc<Ledger>,
}

impl AdminApi {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }
}

fn internal() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Internal,
        "the export could not begin; see the service's log",
    )
}

/// A new snapshot's id: 128 random bits, as hex.
fn snapshot_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// Export a snapshot of the whole store.
    ///
    /// Every route's lifetime total and the days and months kept, and every idempotency key
    /// still within its retention window, as JSON Lines, streamed while the service keeps
    /// recording. On the embedded and memory stores the snapshot is one point in time: every
    /// transaction acknowledged before the export began is in it, none after. On DynamoDB each
    /// route comes from one item read. Needs a key with the `admin` scope when the service runs
    /// with API keys.
    #[oai(
        path = "/admin/export",
        method = "get",
        operation_id = "exportSnapshot"
    )]
    async fn export(&self, _caller: Caller) -> ExportResponse {
        let id = match snapshot_id() {
            Ok(id) => id,
            Err(err) => {
                tracing::error!(error = %err, "cannot make a snapshot id");
                return ExportResponse::Internal(Json(internal()));
            }
        };
        let header = Header {
            id: id.clone(),
            source: self.ledger.store_kind().to_owned(),
            taken_at: self.ledger.epoch_seconds(),
        };
        let writer = match SnapshotWriter::new(Vec::new(), &header) {
            Ok(writer) => writer,
            Err(err) => {
                tracing::error!(error = %err, "cannot write a snapshot header");
                return ExportResponse::Internal(Json(internal()));
            }
        };
        let (sink, records) = mpsc::channel(RECORDS_IN_FLIGHT);
        let exporting = tokio::spawn({
            let ledger = Arc::clone(&self.ledger);
            let taken_at = header.taken_at;
            async move { ledger.export(taken_at, sink).await }
        });
        tracing::info!(snapshot = %id, "export started");
        let body =
            futures_util::stream::unfold(Some((writer, records, exporting)), |state| async move {
                let (mut writer, mut records, exporting) = state?;
                let mut batch = Vec::with_capacity(RECORDS_PER_CHUNK);
                let open = records.recv_many(&mut batch, RECORDS_PER_CHUNK).await > 0;
                for record in &batch {
                    if let Err(err) = writer.record(record) {
                        return Some((Err(err), None));
                    }
                }
                if open {
                    let chunk = Bytes::from(std::mem::take(writer.output()));
                    return Some((Ok(chunk), Some((writer, records, exporting))));
                }
                // The store is done: the end line if it finished, else an error that cuts the
                // body short, so that the client sees a snapshot without its end line.
                Some(match exporting.await {
                    Ok(Ok(_)) => match writer.finish() {
                        Ok((rest, routes, keys)) => {
                            tracing::info!(routes, keys, "export finished");
                            (Ok(Bytes::from(rest)), None)
                        }
                        Err(err) => (Err(err), None),
                    },
                    Ok(Err(err)) => {
                        tracing::error!(error = %error_chain(&err), "export failed");
                        (Err(std::io::Error::other("the export failed")), None)
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "export ended abnormally");
                        (Err(std::io::Error::other("the export failed")), None)
                    }
                })
            });
        ExportResponse::Ok(Binary(Body::from_bytes_stream(body)), id)
    }
}
