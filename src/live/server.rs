//! Serving the API (`api.rs`) on an address.

use std::net::SocketAddr;

use super::api::{routes, ApiState};

/// Serves the API on `addr` in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr, state: ApiState) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, routes(state)).await {
            tracing::error!(message = "API server stopped", error = %e);
        }
    });
    Ok(local)
}
