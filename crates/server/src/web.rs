//! The web pages in `web/` (the customer chat at `/`, the agent console at
//! `/console`), built into the binary: no build step, nothing fetched at run time.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// (name, content type, content)
const FILES: [(&str, &str, &str); 5] = [
    ("chat.html", "text/html; charset=utf-8", include_str!("../../../web/chat.html")),
    ("console.html", "text/html; charset=utf-8", include_str!("../../../web/console.html")),
    ("shopgraph.css", "text/css; charset=utf-8", include_str!("../../../web/shopgraph.css")),
    ("chat.js", "text/javascript; charset=utf-8", include_str!("../../../web/chat.js")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../../../web/console.js")),
];

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { file("chat.html") }))
        .route("/console", get(|| async { file("console.html") }))
        .route("/web/{name}", get(|Path(name): Path<String>| async move { file(&name) }))
}

fn file(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *body)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
