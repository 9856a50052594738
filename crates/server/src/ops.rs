//! Operations: `/healthz` (the process answers), `/readyz` (store, graph, indexes and
//! model are loaded), `/metrics` (Prometheus), `/openapi.json` and the Swagger UI at
//! `/docs`, served from the binary.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;

pub(crate) fn routes(openapi: utoipa::openapi::OpenApi) -> Router<Arc<AppState>> {
    let docs: Router<Arc<AppState>> = SwaggerUi::new("/docs").url("/openapi.json", openapi).into();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(docs)
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.platform() {
        Ok(p) => {
            // The store must answer now, not only have answered at start: one row of
            // the migrations table, not a count of a table that grows with the shop.
            if let Err(e) = p.store.schema_version().await {
                tracing::warn!("readiness: the store does not answer: {e}");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({ "ready": false, "loading": "the store does not answer" })),
                )
                    .into_response();
            }
            let graph = p.graph.read().unwrap_or_else(|e| e.into_inner()).counts();
            axum::Json(json!({
                "ready": true,
                "model": p.llm.name(),
                "graph": { "products": graph.products, "users": graph.users },
            }))
            .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "loading": state.loading_now() })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
