//! The customer's chat (`/api/v1/chat`): a session token for a guest (or, through a
//! storefront key, for a signed-in customer), the turn streamed as server-sent events,
//! and the conversation read back (after a reload, and for an agent's answers).
//!
//! A token names one customer and one conversation; it reads nothing else. Asking for
//! another conversation is answered as if it did not exist.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shopgraph_assistant::Shown;
use shopgraph_assistant::shop::BookFacts;
use shopgraph_core::conversation::{Handoff, Message, NewMessage, Role as MessageRole};
use shopgraph_core::user::NewUser;
use shopgraph_core::{ConversationId, UserId};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agent::{MessageOut, ProfileInterest, interest_out, message_out};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Body, ErrorBody, Params};
use crate::storefront::Card;
use crate::{AppState, Platform};

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(new_session))
        .routes(routes!(my_conversation))
        .routes(routes!(conversation_by_id))
        .routes(routes!(send, messages_after))
        .routes(routes!(my_profile))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// With a storefront key: the signed-in customer's shop id. Without a key a new
    /// guest is made.
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatSession {
    /// Send as `Authorization: Bearer TOKEN` on the chat endpoints.
    pub token: String,
    pub conversation: i64,
    /// The customer's shop id (`guest:…` for a guest).
    pub customer: String,
}

/// Starts a chat: a new conversation and the token that reads and writes it. Anyone
/// may start one as a guest (rate-limited by address); a storefront key starts one
/// for a customer it names.
#[utoipa::path(
    post, path = "/api/v1/chat/sessions", tag = "chat",
    request_body(content = SessionRequest, description = "Optional: {} for a guest"),
    responses((status = 200, body = ChatSession), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn new_session(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<ChatSession>, ApiError> {
    // No body, or `{}`: a guest.
    let request: SessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a session request: {e}")))?
    };
    let p = state.platform()?;
    let (user, customer) = match (&caller, request.user) {
        (Caller::Key { .. }, Some(external)) => {
            caller.require(Role::Storefront)?;
            let user = p
                .store
                .user_by_external_id(&external)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no user {external:?}")))?;
            (user.id, user.external_id)
        }
        (Caller::Anonymous | Caller::Key { .. }, None) => {
            let external = format!("guest:{:016x}", rand::random::<u64>());
            let guest = NewUser {
                external_id: external.clone(),
                display_name: None,
                location: None,
                age: None,
                attributes: None,
            };
            (p.store.upsert_users(&[guest]).await?[0], external)
        }
        (Caller::Anonymous, Some(_)) => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "starting a chat for a named customer needs a storefront key",
            ));
        }
        (Caller::Customer { .. }, _) => {
            return Err(ApiError::forbidden("this session already has a conversation"));
        }
    };
    if let Some(u) = p.store.user(user).await? {
        p.graph.write().unwrap_or_else(|e| e.into_inner()).upsert_user(&u);
    }
    let conversation = p.tools().assistant.open(user, "web").await?;
    Ok(Json(ChatSession {
        token: state.sessions.token(user, conversation.id),
        conversation: conversation.id.0,
        customer,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatView {
    pub conversation: i64,
    /// `bot` (the assistant answers), `waiting` (handed off), `agent`, `closed`.
    pub state: String,
    /// The customer's, the assistant's and agents' messages, and the product cards
    /// shown with answers (`tool: "cards"`).
    pub messages: Vec<MessageOut>,
}

fn visible(m: &Message) -> bool {
    matches!(m.role, MessageRole::User | MessageRole::Assistant | MessageRole::Agent)
        || (m.role == MessageRole::Tool && m.tool_name.as_deref() == Some("cards"))
}

async fn view(
    p: &Platform,
    user: UserId,
    id: ConversationId,
    after: i64,
) -> Result<ChatView, ApiError> {
    let messages = p.tools().assistant.history(id, user).await?;
    let c = p
        .store
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation"))?;
    Ok(ChatView {
        conversation: id.0,
        state: c.handoff.as_str().into(),
        messages: messages
            .iter()
            .filter(|m| m.id.0 > after && visible(m))
            .map(message_out)
            .collect(),
    })
}

/// The session's conversation: what the page shows again after a reload.
#[utoipa::path(
    get, path = "/api/v1/chat/conversation", tag = "chat",
    responses((status = 200, body = ChatView), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn my_conversation(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ChatView>, ApiError> {
    let (user, conversation) = caller.customer()?;
    let p = state.platform()?;
    Ok(Json(view(&p, user, conversation, 0).await?))
}

/// A conversation by id: only the session's own; any other is "no such conversation".
#[utoipa::path(
    get, path = "/api/v1/chat/conversations/{id}", tag = "chat",
    params(("id" = i64, Path, description = "The conversation")),
    responses((status = 200, body = ChatView), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn conversation_by_id(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ChatView>, ApiError> {
    let (user, _) = caller.customer()?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("no such conversation"))?;
    let p = state.platform()?;
    Ok(Json(view(&p, user, ConversationId(id), 0).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AfterParams {
    /// Only messages after this id (0 when not given).
    after: Option<i64>,
}

/// Messages after one the page already shows: how an agent's answer reaches it.
#[utoipa::path(
    get, path = "/api/v1/chat/messages", tag = "chat", params(AfterParams),
    responses((status = 200, body = ChatView), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn messages_after(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<AfterParams>,
) -> Result<Json<ChatView>, ApiError> {
    let (user, conversation) = caller.customer()?;
    let p = state.platform()?;
    Ok(Json(view(&p, user, conversation, q.after.unwrap_or(0)).await?))
}

/// The session customer's interests, each with where it came from.
#[utoipa::path(
    get, path = "/api/v1/chat/profile", tag = "chat",
    responses((status = 200, body = Vec<ProfileInterest>), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn my_profile(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<ProfileInterest>>, ApiError> {
    let (user, _) = caller.customer()?;
    let p = state.platform()?;
    Ok(Json(p.store.interests(user).await?.iter().map(interest_out).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub text: String,
}

/// Sends the customer's message; the answer comes back as server-sent events:
/// `text` (more of the answer), `replace` (the answer, replacing what was shown),
/// `cards` (the products the answer is about, as a JSON list of cards), `done` (the
/// turn's outcome: `{"kind", "handoff", "intent", "message"}`) or `error`.
#[utoipa::path(
    post, path = "/api/v1/chat/messages", tag = "chat",
    request_body = ChatMessage,
    responses(
        (status = 200, description = "text/event-stream of text, replace, cards and done events"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn send(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(message): Body<ChatMessage>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let (user, conversation) = caller.customer()?;
    // Refused before the stream starts, so bad input is a 400 and nothing is stored.
    shopgraph_assistant::check_message(message.text.as_bytes())?;
    let p = state.platform()?;
    let (tx, rx) = mpsc::unbounded_channel::<SseEvent>();
    let metrics = Arc::clone(&state.metrics);
    tokio::spawn(async move {
        let shown = tx.clone();
        let tools = p.tools();
        let result = tools
            .assistant
            .turn(conversation, user, message.text.as_bytes(), |s| {
                let event = match s {
                    Shown::Text(t) => SseEvent::default().event("text").data(t),
                    Shown::Replace(t) => SseEvent::default().event("replace").data(t),
                };
                let _ = shown.send(event);
            })
            .await;
        metrics.chat_turns.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(reply) => {
                let cards = match cards(&p, &reply.books, &reply.picks).await {
                    Ok(cards) => cards,
                    Err(e) => {
                        tracing::warn!("cards for a chat answer: {}", e.message);
                        Vec::new()
                    }
                };
                // The id of the turn's last stored message: the page polls after it.
                let mut last = None;
                if !cards.is_empty() {
                    let payload = serde_json::to_string(&cards).unwrap_or_default();
                    let _ = tx.send(SseEvent::default().event("cards").data(payload.clone()));
                    let stored = NewMessage {
                        role: MessageRole::Tool,
                        content: String::new(),
                        tool_name: Some("cards".into()),
                        tool_payload: Some(payload),
                    };
                    match p.store.append_message(conversation, &stored).await {
                        Ok(m) => last = Some(m.id.0),
                        Err(e) => tracing::warn!("storing a chat answer's cards: {e}"),
                    }
                }
                if last.is_none() {
                    last = p
                        .store
                        .messages(conversation)
                        .await
                        .ok()
                        .and_then(|m| m.last().map(|m| m.id.0));
                }
                let state = p
                    .store
                    .conversation(conversation)
                    .await
                    .ok()
                    .flatten()
                    .map_or(Handoff::Bot, |c| c.handoff);
                let done = json!({
                    "kind": reply.kind,
                    "handoff": reply.handoff,
                    "state": state.as_str(),
                    "intent": reply.understanding.as_ref().map(|u| u.intent.as_str()),
                    "message": last,
                    "first_text_ms": reply.first_text_ms,
                    "total_ms": reply.total_ms,
                });
                let _ = tx.send(SseEvent::default().event("done").data(done.to_string()));
            }
            Err(e) => {
                let e = ApiError::from(e);
                let _ = tx.send(
                    SseEvent::default()
                        .event("error")
                        .data(json!({ "message": e.message }).to_string()),
                );
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Cards for the books an answer named, with the recommender's reason where it gave one.
async fn cards(
    p: &Platform,
    books: &[String],
    picks: &[(String, String)],
) -> Result<Vec<Card>, ApiError> {
    let mut out = Vec::with_capacity(books.len());
    for sku in books {
        let Some(product) = p.store.product_by_sku(sku).await? else { continue };
        let reason = picks.iter().find(|(s, _)| s == sku).map_or("", |(_, why)| why.as_str());
        out.push(Card::new(&BookFacts::of(&product), reason));
    }
    Ok(out)
}
