//! `GET /api/v1/cluster/snapshot` (`cluster:admin`): a consistent snapshot of the whole state,
//! streamed, for backups. `raftcron restore --from FILE` seeds a new cluster from it.
//!
//! The answering node first catches up with every write acknowledged before the request (a
//! linearizable read barrier), then writes its state as of one moment to a temporary file next
//! to its data and streams it; the file is removed when the answer ends. Job secrets stay sealed
//! in it (restoring needs the same master key) and API keys are hashes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use raftcron_client::{Consistency, ErrorBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::AppState;
use crate::model::apikey::Scope;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(snapshot))
}

/// A consistent snapshot of the whole state, for backups (`cluster:admin`).
#[utoipa::path(get, path = "/api/v1/cluster/snapshot", operation_id = "get_cluster_snapshot", tag = "cluster",
    responses(
        (status = 200, description = "The snapshot file (restore it with `raftcron restore --from FILE`)",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 503, description = "NO_LEADER: the read barrier could not complete", body = ErrorBody),
))]
async fn snapshot(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::ClusterAdmin)?;
    state.cluster.read_barrier(Consistency::Linearizable).await?;
    let dir = state.cluster.store.dir().join("backups");
    let cluster = state.cluster.clone();
    let (path, index) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join(format!("backup-{}.snap", uuid::Uuid::new_v4().simple()));
        let index = cluster.write_backup(&path)?;
        Ok((path, index))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ApiError::internal)?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let len = file.metadata().await.map(|m| m.len()).ok();
    // Unlinked while open: the stream keeps reading it, and nothing is left behind.
    let _ = tokio::fs::remove_file(&path).await;
    let body = Body::from_stream(tokio_util_stream(file));
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"raftcron-{index}.snap\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    h.insert("x-raftcron-snapshot-index", HeaderValue::from(index));
    Ok(r)
}

/// The file as a stream of 256 KiB chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
