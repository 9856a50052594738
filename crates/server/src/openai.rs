//! `POST /v1/chat/completions` (streamed as server-sent events, or whole), `GET
//! /v1/models` and `GET /health`, over any [`Llm`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use crate::AppState;
use crate::auth::Caller;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use shopgraph_llm::{ChatMessage, ChatRequest, Event, Llm, LlmError, ToolSpec, complete};

/// The most tokens one request may ask for.
const MAX_TOKENS: usize = 4_096;

struct Shared {
    llm: Arc<dyn Llm>,
    timeout: Duration,
}

/// The routes, over `llm`; one generation may take `timeout`.
pub fn router(llm: Arc<dyn Llm>, timeout: Duration) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models_alone))
        .route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(Shared { llm, timeout }))
}

#[derive(Deserialize)]
pub(crate) struct Body {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    tools: Vec<WireTool>,
}

#[derive(Deserialize)]
struct WireTool {
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters: Value,
}

/// An error in OpenAI's shape, which its clients read.
fn error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    (status, Json(json!({ "error": { "message": message, "type": kind } }))).into_response()
}

async fn models_alone(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(model_list(&*shared.llm))
}

fn model_list(llm: &dyn Llm) -> Value {
    json!({ "object": "list", "data": [{ "id": llm.name(), "object": "model" }] })
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<Body>, axum::extract::rejection::JsonRejection>,
) -> Response {
    respond(&shared.llm, shared.timeout, body).await
}

/// `GET /v1/models` of the whole server: any API key.
pub(crate) async fn models(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Err(e) = caller.require_key() {
        return error(e.status, &e.message);
    }
    match state.platform() {
        Ok(p) => Json(model_list(&*p.llm)).into_response(),
        Err(e) => error(e.status, &e.message),
    }
}

/// `POST /v1/chat/completions` of the whole server: any API key.
pub(crate) async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<Body>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(e) = caller.require_key() {
        return error(e.status, &e.message);
    }
    match state.platform() {
        Ok(p) => {
            let timeout = Duration::from_secs(state.config.llm_timeout_secs);
            respond(&p.llm, timeout, body).await
        }
        Err(e) => error(e.status, &e.message),
    }
}

async fn respond(
    llm: &Arc<dyn Llm>,
    timeout: Duration,
    body: Result<Json<Body>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => {
            return error(
                rejection.status(),
                &format!("the body is not a chat-completions request: {}", rejection.body_text()),
            );
        }
    };
    if body.messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages is empty");
    }
    let max_tokens = body.max_tokens.unwrap_or(512);
    if max_tokens == 0 || max_tokens > MAX_TOKENS {
        return error(StatusCode::BAD_REQUEST, &format!("max_tokens must be 1 to {MAX_TOKENS}"));
    }
    let json_schema = body
        .response_format
        .as_ref()
        .and_then(|f| (f["type"] == "json_schema").then(|| f["json_schema"]["schema"].clone()));
    let request = ChatRequest {
        messages: body.messages,
        max_tokens,
        json_schema,
        tools: body
            .tools
            .into_iter()
            .map(|t| ToolSpec {
                name: t.function.name,
                description: t.function.description,
                parameters: t.function.parameters,
            })
            .collect(),
        temperature: body.temperature.filter(|&t| t > 0.0),
    };
    let name = llm.name().to_owned();
    if body.stream {
        return Sse::new(events(llm.stream(request), name)).into_response();
    }
    match complete(&**llm, request, timeout).await {
        Ok(done) => {
            let tool_calls: Vec<Value> = done
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| json!({ "id": format!("call_{i}"), "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
                .collect();
            let mut message = json!({ "role": "assistant", "content": done.text });
            if !tool_calls.is_empty() {
                message["tool_calls"] = Value::Array(tool_calls);
            }
            Json(json!({
                "object": "chat.completion",
                "model": name,
                "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": done.usage.prompt_tokens, "completion_tokens": done.usage.completion_tokens,
                           "total_tokens": done.usage.prompt_tokens + done.usage.completion_tokens },
            }))
            .into_response()
        }
        Err(e @ LlmError::Timeout(_)) => error(StatusCode::GATEWAY_TIMEOUT, &e.to_string()),
        Err(e @ LlmError::Request(_)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ LlmError::Unavailable(_)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

/// The generation's events as OpenAI stream chunks, ending with `[DONE]`.
fn events(
    rx: tokio::sync::mpsc::Receiver<Event>,
    model: String,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let chunk = move |delta: Value, finish: Option<&str>, usage: Option<Value>| {
        let mut c = json!({ "object": "chat.completion.chunk", "model": model,
                            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        SseEvent::default().data(c.to_string())
    };
    stream::unfold((rx, 0usize, false), move |(mut rx, calls, done)| {
        let chunk = chunk.clone();
        async move {
            if done {
                return None;
            }
            let event = match rx.recv().await {
                Some(Event::Text(t)) => chunk(json!({ "role": "assistant", "content": t }), None, None),
                Some(Event::ToolCall(c)) => {
                    let delta = json!({ "tool_calls": [{ "index": calls, "id": format!("call_{calls}"), "type": "function",
                                        "function": { "name": c.name, "arguments": c.arguments } }] });
                    return Some((vec![chunk(delta, None, None)], (rx, calls + 1, false)));
                }
                Some(Event::Done(u)) => {
                    let usage = json!({ "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                                        "total_tokens": u.prompt_tokens + u.completion_tokens });
                    let last = chunk(json!({}), Some("stop"), Some(usage));
                    return Some((vec![last, SseEvent::default().data("[DONE]")], (rx, calls, true)));
                }
                Some(Event::Failed(e)) => {
                    // The stream has begun (status 200): the error travels as an event.
                    let e = SseEvent::default().data(json!({ "error": { "message": e.to_string() } }).to_string());
                    return Some((vec![e], (rx, calls, true)));
                }
                None => return None,
            };
            Some((vec![event], (rx, calls, false)))
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
}
