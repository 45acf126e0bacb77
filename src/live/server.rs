//! The HTTP side of a running planner: health probes and the status API.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::SharedStatus;

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(status): State<SharedStatus>) -> Response {
    let st = status.lock().expect("status lock");
    match (st.ready, &st.holding) {
        (true, None) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        (true, Some(why)) => {
            (StatusCode::OK, format!("ready, holding replicas: {why}\n")).into_response()
        }
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no decision yet\n".to_string(),
        )
            .into_response(),
    }
}

async fn status_json(State(status): State<SharedStatus>) -> Response {
    Json(status.lock().expect("status lock").clone()).into_response()
}

pub fn routes(status: SharedStatus) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status_json))
        .with_state(status)
}

/// Serves the routes on `addr` in the background.
pub async fn spawn(addr: SocketAddr, status: SharedStatus) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, routes(status)).await {
            tracing::error!(message = "status server stopped", error = %e);
        }
    });
    Ok(local)
}
