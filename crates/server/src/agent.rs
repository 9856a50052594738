//! The agent API (`/api/v1/agent`, agent keys): the knowledge graph's typed queries, a
//! customer's profile with where each interest came from (and removing a wrong one),
//! and the conversations: the handoff inbox, taking one over, answering, closing.
//!
//! Nodes are written as the shop names things: `sku:SKU`, `user:SHOP_ID`, and the
//! graph's own `author:KEY`, `publisher:KEY`, `category:KEY`, `year:1990s`, ….

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};
use shopgraph_core::conversation::{
    Conversation, Handoff, Message, NewMessage, Role as MessageRole,
};
use shopgraph_core::user::User;
use shopgraph_core::{ConversationId, InterestId, UserId};
use shopgraph_graph::query::Step;
use shopgraph_graph::{Limits, NodeKey, Relation};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, Body, ErrorBody, Params, bounded};
use crate::storefront::{Card, product_by_sku};
use crate::{AppState, Platform};

/// The longest answer an agent may send, in characters.
pub const MAX_ANSWER_CHARS: usize = 4_000;

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(neighbours))
        .routes(routes!(neighbourhood))
        .routes(routes!(similar))
        .routes(routes!(connect))
        .routes(routes!(explain))
        .routes(routes!(bought_rated_low))
        .routes(routes!(customer))
        .routes(routes!(remove_interest))
        .routes(routes!(conversations))
        .routes(routes!(conversation))
        .routes(routes!(take_over))
        .routes(routes!(answer))
        .routes(routes!(close))
}

// ---- graph --------------------------------------------------------------------------

/// Resolves `sku:…` and `user:…` through the store; the rest is the graph's own form.
async fn node(p: &Platform, text: &str) -> Result<NodeKey, ApiError> {
    if let Some(sku) = text.strip_prefix("sku:") {
        return Ok(NodeKey::Product(product_by_sku(p, sku).await?.id));
    }
    if let Some(user) = text.strip_prefix("user:") {
        return Ok(NodeKey::User(user_by_external(p, user).await?.id));
    }
    match NodeKey::parse(text) {
        Some(NodeKey::Product(_) | NodeKey::User(_)) | None => Err(ApiError::bad_request(format!(
            "{text:?} is not a node: write sku:SKU, user:SHOP_ID, author:KEY, publisher:KEY, category:KEY, …"
        ))),
        Some(key) => Ok(key),
    }
}

/// How the API names a node (the form [`node`] reads back).
async fn node_ref(p: &Platform, key: &NodeKey) -> Result<String, ApiError> {
    Ok(match key {
        NodeKey::Product(id) => match p.store.product(*id).await? {
            Some(product) => format!("sku:{}", product.sku),
            None => key.to_string(),
        },
        NodeKey::User(id) => match p.store.user(*id).await? {
            Some(user) => format!("user:{}", user.external_id),
            None => key.to_string(),
        },
        other => other.to_string(),
    })
}

fn kind_of(key: &NodeKey) -> &'static str {
    match key {
        NodeKey::Product(_) => "product",
        NodeKey::Category(_) => "category",
        NodeKey::Maker(kind, _) => kind.as_str(),
        NodeKey::Attribute(_) => "attribute",
        NodeKey::User(_) => "user",
        NodeKey::Concept(_) => "concept",
        NodeKey::Segment(_) => "segment",
        NodeKey::Entity(_) => "entity",
    }
}

async fn user_by_external(p: &Platform, external: &str) -> Result<User, ApiError> {
    p.store
        .user_by_external_id(external)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {external:?}")))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GraphNode {
    /// How to name it in another query.
    #[serde(rename = "ref")]
    pub reference: String,
    pub label: String,
    /// `product`, `category`, `author`, `publisher`, `user`, `attribute`, ….
    pub kind: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GraphNeighbour {
    pub node: GraphNode,
    pub relation: String,
    /// True when the edge points from the queried node to this one.
    pub forward: bool,
    pub weight: f32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NeighboursParams {
    /// The node: `sku:…`, `user:…`, `author:…`, `category:…`, ….
    node: String,
    /// Only edges of this relation (`made-by`, `in-category`, `interacted`, …).
    relation: Option<String>,
    /// 1 to 1000 (20 when not given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A node's neighbours, strongest edges first.
#[utoipa::path(
    get, path = "/api/v1/agent/graph/neighbours", tag = "agent", params(NeighboursParams),
    responses((status = 200, body = Vec<GraphNeighbour>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn neighbours(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<NeighboursParams>,
) -> Result<Json<Vec<GraphNeighbour>>, ApiError> {
    caller.require(Role::Agent)?;
    let p = state.platform()?;
    let key = node(&p, &q.node).await?;
    let relation = match &q.relation {
        Some(name) => Some(
            Relation::parse(name)
                .ok_or_else(|| ApiError::bad_request(format!("no relation {name:?}")))?,
        ),
        None => None,
    };
    let found = {
        let graph = p.graph.read().unwrap_or_else(|e| e.into_inner());
        graph.neighbours(
            &key,
            relation,
            bounded("limit", q.limit, 20, 1_000)?,
            &Limits::default(),
        )?
    };
    let mut out = Vec::with_capacity(found.len());
    for n in found {
        out.push(GraphNeighbour {
            node: GraphNode {
                reference: node_ref(&p, &n.key).await?,
                label: n.label,
                kind: kind_of(&n.key).into(),
            },
            relation: n.relation_name,
            forward: n.forward,
            weight: n.weight,
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GraphView {
    /// The first node is the one asked about.
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GraphEdge {
    /// Indexes into `nodes`, in the edge's direction.
    pub from: usize,
    pub to: usize,
    pub relation: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NeighbourhoodParams {
    node: String,
    /// 1 or 2 (1 when not given).
    #[param(minimum = 1, maximum = 2)]
    hops: Option<usize>,
    /// Neighbours drawn around the node, 1 to 60 (24 when not given).
    #[param(minimum = 1, maximum = 60)]
    limit: Option<usize>,
}

/// A node's neighbourhood as nodes and edges, for drawing: its strongest neighbours
/// and, with `hops=2`, a few of theirs.
#[utoipa::path(
    get, path = "/api/v1/agent/graph/neighbourhood", tag = "agent", params(NeighbourhoodParams),
    responses((status = 200, body = GraphView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn neighbourhood(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<NeighbourhoodParams>,
) -> Result<Json<GraphView>, ApiError> {
    caller.require(Role::Agent)?;
    let hops = bounded("hops", q.hops, 1, 2)?;
    let limit = bounded("limit", q.limit, 24, 60)?;
    let p = state.platform()?;
    let center = node(&p, &q.node).await?;
    // Walk under the read lock; name the nodes (store reads) after it.
    let (keys, labels, edges) = {
        let graph = p.graph.read().unwrap_or_else(|e| e.into_inner());
        let limits = Limits::default();
        let center_label = graph.label(&center).unwrap_or_default().to_owned();
        let mut index: HashMap<NodeKey, usize> = HashMap::from([(center.clone(), 0)]);
        let mut keys = vec![center.clone()];
        let mut labels = vec![center_label];
        let mut edges = Vec::new();
        let mut frontier = vec![(center.clone(), limit)];
        for depth in 0..hops {
            let mut next = Vec::new();
            for (from, n) in frontier {
                for nb in graph.neighbours(&from, None, n, &limits)? {
                    let at = *index.entry(nb.key.clone()).or_insert_with(|| {
                        keys.push(nb.key.clone());
                        labels.push(nb.label.clone());
                        keys.len() - 1
                    });
                    let here = index[&from];
                    let (a, b) = if nb.forward { (here, at) } else { (at, here) };
                    edges.push(GraphEdge { from: a, to: b, relation: nb.relation_name });
                    if depth + 1 < hops && next.len() < 8 {
                        next.push((nb.key, 4));
                    }
                }
            }
            frontier = next;
        }
        (keys, labels, edges)
    };
    let mut nodes = Vec::with_capacity(keys.len());
    for (key, label) in keys.iter().zip(labels) {
        nodes.push(GraphNode {
            reference: node_ref(&p, key).await?,
            label,
            kind: kind_of(key).into(),
        });
    }
    Ok(Json(GraphView { nodes, edges }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SimilarParams {
    sku: String,
    /// 1 to 100 (10 when not given).
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SimilarProduct {
    pub sku: String,
    pub title: String,
    pub score: f32,
    /// What it shares with the product asked about, strongest first.
    pub shared: Vec<String>,
}

/// Products sharing the most (and rarest) nodes with a product.
#[utoipa::path(
    get, path = "/api/v1/agent/graph/similar", tag = "agent", params(SimilarParams),
    responses((status = 200, body = Vec<SimilarProduct>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn similar(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<SimilarParams>,
) -> Result<Json<Vec<SimilarProduct>>, ApiError> {
    caller.require(Role::Agent)?;
    let k = bounded("k", q.k, 10, 100)?;
    let p = state.platform()?;
    let product = product_by_sku(&p, &q.sku).await?;
    let found = p.graph.read().unwrap_or_else(|e| e.into_inner()).similar_products(
        product.id,
        k,
        &Limits::default(),
    )?;
    let mut out = Vec::with_capacity(found.len());
    for s in found {
        let sku = p.store.product(s.product).await?.map(|p| p.sku).unwrap_or_default();
        out.push(SimilarProduct { sku, title: s.title, score: s.score, shared: s.shared });
    }
    Ok(Json(out))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PathStep {
    pub from: String,
    pub relation: String,
    pub to: String,
    pub forward: bool,
}

async fn steps(p: &Platform, path: &[Step]) -> Result<Vec<PathStep>, ApiError> {
    let mut out = Vec::with_capacity(path.len());
    for s in path {
        let relation =
            p.graph.read().unwrap_or_else(|e| e.into_inner()).relation_name(s.relation).to_owned();
        out.push(PathStep {
            from: node_ref(p, &s.from).await?,
            relation,
            to: node_ref(p, &s.to).await?,
            forward: s.forward,
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectParams {
    a: String,
    b: String,
    /// 1 to 4 (3 when not given).
    #[param(minimum = 1, maximum = 4)]
    hops: Option<usize>,
    /// Paths, 1 to 20 (5 when not given).
    #[param(minimum = 1, maximum = 20)]
    k: Option<usize>,
}

/// What connects two nodes: the shortest paths between them.
#[utoipa::path(
    get, path = "/api/v1/agent/graph/connect", tag = "agent", params(ConnectParams),
    responses((status = 200, body = Vec<Vec<PathStep>>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn connect(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<ConnectParams>,
) -> Result<Json<Vec<Vec<PathStep>>>, ApiError> {
    caller.require(Role::Agent)?;
    let k = bounded("k", q.k, 5, 20)?;
    let p = state.platform()?;
    let (a, b) = (node(&p, &q.a).await?, node(&p, &q.b).await?);
    let paths = p.graph.read().unwrap_or_else(|e| e.into_inner()).connect(
        &a,
        &b,
        bounded("hops", q.hops, 3, 4)?,
        k,
        &Limits::default(),
    )?;
    let mut out = Vec::with_capacity(paths.len());
    for path in &paths {
        out.push(steps(&p, path).await?);
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainParams {
    /// The shop's id of the customer.
    user: String,
    sku: String,
    /// 1 to 10 (3 when not given).
    #[param(minimum = 1, maximum = 10)]
    k: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    pub text: String,
    pub score: f32,
    /// How many of the customer's products go through the same node.
    pub support: usize,
    pub path: Vec<PathStep>,
}

/// Why a product fits a customer, in words, with the graph paths behind each reason.
#[utoipa::path(
    get, path = "/api/v1/agent/graph/explain", tag = "agent", params(ExplainParams),
    responses((status = 200, body = Vec<Reason>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn explain(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<ExplainParams>,
) -> Result<Json<Vec<Reason>>, ApiError> {
    caller.require(Role::Agent)?;
    let k = bounded("k", q.k, 3, 10)?;
    let p = state.platform()?;
    let user = user_by_external(&p, &q.user).await?;
    let product = product_by_sku(&p, &q.sku).await?;
    let found = p.graph.read().unwrap_or_else(|e| e.into_inner()).explain(
        user.id,
        product.id,
        k,
        &Limits::default(),
    )?;
    let mut out = Vec::with_capacity(found.len());
    for e in found {
        out.push(Reason {
            text: e.text,
            score: e.score,
            support: e.support,
            path: steps(&p, &e.path).await?,
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoughtRatedLowParams {
    bought: String,
    rated: String,
    /// Ratings at or below this (4 when not given).
    max_rating: Option<f32>,
    /// 1 to 1000 (100 when not given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Customers who bought one product and rated another low (shop ids).
#[utoipa::path(
    get, path = "/api/v1/agent/graph/bought-rated-low", tag = "agent", params(BoughtRatedLowParams),
    responses((status = 200, body = Vec<String>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn bought_rated_low(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<BoughtRatedLowParams>,
) -> Result<Json<Vec<String>>, ApiError> {
    caller.require(Role::Agent)?;
    let p = state.platform()?;
    let bought = product_by_sku(&p, &q.bought).await?;
    let rated = product_by_sku(&p, &q.rated).await?;
    let users = p.graph.read().unwrap_or_else(|e| e.into_inner()).bought_and_rated_low(
        bought.id,
        rated.id,
        q.max_rating.unwrap_or(4.0),
        bounded("limit", q.limit, 100, 1_000)?,
        &Limits::default(),
    )?;
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        if let Some(user) = p.store.user(u).await? {
            out.push(user.external_id);
        }
    }
    Ok(Json(out))
}

// ---- customers -------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProfileInterest {
    /// Give it to DELETE …/interests/{id} to remove it.
    pub id: i64,
    /// `maker:…`, `category:…`, `topic:…`.
    pub subject: String,
    pub weight: f64,
    /// `likes` or `dislikes`.
    pub polarity: String,
    /// Where it came from: `chat`, `review`, `event`, `stated`, `agent`.
    pub source: String,
    /// The chat message, review or event it came from, or the agent who entered it.
    pub source_ref: Option<String>,
    pub at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationHeader {
    pub id: i64,
    /// The customer's shop id.
    pub customer: String,
    pub channel: String,
    /// `bot`, `waiting`, `agent` or `closed`.
    pub state: String,
    pub agent: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CustomerProfile {
    pub id: String,
    pub name: Option<String>,
    pub location: Option<String>,
    pub age: Option<i32>,
    pub interests: Vec<ProfileInterest>,
    pub conversations: Vec<ConversationHeader>,
    /// What the storefront would recommend now, and why.
    pub recommendations: Vec<Card>,
}

pub(crate) fn interest_out(i: &shopgraph_core::interest::Interest) -> ProfileInterest {
    ProfileInterest {
        id: i.id.0,
        subject: i.subject.clone(),
        weight: i.weight,
        polarity: match i.polarity {
            shopgraph_core::interest::Polarity::Likes => "likes".into(),
            shopgraph_core::interest::Polarity::Dislikes => "dislikes".into(),
        },
        source: i.source.kind().into(),
        source_ref: i.source.reference(),
        at: i.at,
    }
}

fn header(c: &Conversation, customer: &str) -> ConversationHeader {
    ConversationHeader {
        id: c.id.0,
        customer: customer.to_owned(),
        channel: c.channel.clone(),
        state: c.handoff.as_str().into(),
        agent: c.agent.clone(),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

/// A customer: who they are, their interests with the source of each, their
/// conversations, and what they would be recommended now.
#[utoipa::path(
    get, path = "/api/v1/agent/customers/{user}", tag = "agent",
    params(("user" = String, Path, description = "The customer's shop id")),
    responses((status = 200, body = CustomerProfile), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn customer(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Json<CustomerProfile>, ApiError> {
    caller.require(Role::Agent)?;
    let p = state.platform()?;
    let user = user_by_external(&p, &user).await?;
    let interests = p.store.interests(user.id).await?;
    let conversations = p.store.conversations_of_user(user.id).await?;
    let picks = p.tools().shop.recommend_known(&user.external_id, &interests, 5).await?;
    Ok(Json(CustomerProfile {
        interests: interests.iter().map(interest_out).collect(),
        conversations: conversations.iter().map(|c| header(c, &user.external_id)).collect(),
        recommendations: picks.iter().map(|pick| Card::new(&pick.book, &pick.reason)).collect(),
        id: user.external_id,
        name: user.display_name,
        location: user.location,
        age: user.age,
    }))
}

/// Removes a wrong interest from a customer's profile; their next list no longer uses it.
#[utoipa::path(
    delete, path = "/api/v1/agent/customers/{user}/interests/{id}", tag = "agent",
    params(("user" = String, Path, description = "The customer's shop id"), ("id" = i64, Path, description = "The interest")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn remove_interest(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((user, id)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.require(Role::Agent)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("interest id {id:?} is not a number")))?;
    let p = state.platform()?;
    let user = user_by_external(&p, &user).await?;
    let interests = p.store.interests(user.id).await?;
    if !interests.iter().any(|i| i.id.0 == id) {
        return Err(ApiError::not_found(format!(
            "customer {:?} has no interest {id}",
            user.external_id
        )));
    }
    p.store.remove_interest(InterestId(id)).await?;
    p.graph.write().unwrap_or_else(|e| e.into_inner()).remove_interest(InterestId(id));
    tracing::info!(interest = id, customer = %user.external_id, by = ?caller, "interest removed");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

// ---- conversations ---------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// `waiting` (the default: handed off, nobody has taken it), `agent`, `bot`, `closed`.
    state: Option<String>,
    /// 1 to 200 (50 when not given).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// Conversations in one state, oldest activity first: the handoff inbox by default.
#[utoipa::path(
    get, path = "/api/v1/agent/conversations", tag = "agent", params(InboxParams),
    responses((status = 200, body = Vec<ConversationHeader>), (status = 400, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn conversations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<InboxParams>,
) -> Result<Json<Vec<ConversationHeader>>, ApiError> {
    caller.require(Role::Agent)?;
    let wanted = q.state.as_deref().unwrap_or("waiting");
    let handoff = Handoff::parse(wanted).ok_or_else(|| {
        ApiError::bad_request(format!(
            "state must be bot, waiting, agent or closed, got {wanted:?}"
        ))
    })?;
    let limit = bounded("limit", q.limit, 50, 200)? as u32;
    let p = state.platform()?;
    let list = p.store.conversations_by_handoff(handoff, limit).await?;
    let mut out = Vec::with_capacity(list.len());
    for c in &list {
        out.push(header(c, &external_of(&p, c.user).await?));
    }
    Ok(Json(out))
}

async fn external_of(p: &Platform, user: UserId) -> Result<String, ApiError> {
    Ok(p.store.user(user).await?.map(|u| u.external_id).unwrap_or_default())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageOut {
    pub id: i64,
    /// `user`, `assistant`, `agent`, `tool`, `system`.
    pub role: String,
    pub content: String,
    /// For tool messages: `handoff` (the packet for the agent), `summary`, `cards`, ….
    pub tool: Option<String>,
    /// The tool message's data.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub at: i64,
}

pub(crate) fn message_out(m: &Message) -> MessageOut {
    MessageOut {
        id: m.id.0,
        role: m.role.as_str().into(),
        content: m.content.clone(),
        tool: m.tool_name.clone(),
        data: m.tool_payload.as_deref().and_then(|t| serde_json::from_str(t).ok()),
        at: m.created_at,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationView {
    pub conversation: ConversationHeader,
    /// Every message, tool results and the handoff packet included.
    pub messages: Vec<MessageOut>,
}

fn conversation_id(text: &str) -> Result<ConversationId, ApiError> {
    text.parse()
        .map(ConversationId)
        .map_err(|_| ApiError::bad_request(format!("conversation id {text:?} is not a number")))
}

async fn conversation_header(p: &Platform, id: ConversationId) -> Result<Conversation, ApiError> {
    p.store
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no conversation {}", id.0)))
}

/// One conversation, whole.
#[utoipa::path(
    get, path = "/api/v1/agent/conversations/{id}", tag = "agent",
    params(("id" = i64, Path, description = "The conversation")),
    responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn conversation(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    caller.require(Role::Agent)?;
    let p = state.platform()?;
    let c = conversation_header(&p, conversation_id(&id)?).await?;
    let messages = p.store.messages(c.id).await?;
    Ok(Json(ConversationView {
        conversation: header(&c, &external_of(&p, c.user).await?),
        messages: messages.iter().map(message_out).collect(),
    }))
}

fn agent_name(caller: &Caller) -> String {
    match caller {
        Caller::Key { name, .. } => name.clone(),
        _ => "agent".into(),
    }
}

/// Takes a conversation over: from now on this agent answers it, not the assistant.
#[utoipa::path(
    post, path = "/api/v1/agent/conversations/{id}/takeover", tag = "agent",
    params(("id" = i64, Path, description = "The conversation")),
    responses((status = 200, body = ConversationHeader), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn take_over(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ConversationHeader>, ApiError> {
    caller.require(Role::Agent)?;
    let p = state.platform()?;
    let c = conversation_header(&p, conversation_id(&id)?).await?;
    let me = agent_name(&caller);
    match (c.handoff, c.agent.as_deref()) {
        (Handoff::Closed, _) => return Err(ApiError::conflict("the conversation is closed")),
        (Handoff::Agent, Some(other)) if other != me => {
            return Err(ApiError::conflict(format!("{other} has already taken this conversation")));
        }
        _ => {}
    }
    let c = p.store.set_handoff(c.id, Handoff::Agent, Some(&me)).await?;
    Ok(Json(header(&c, &external_of(&p, c.user).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentAnswer {
    pub text: String,
}

/// Answers the customer, in a conversation this agent has taken over.
#[utoipa::path(
    post, path = "/api/v1/agent/conversations/{id}/messages", tag = "agent",
    params(("id" = i64, Path, description = "The conversation")),
    request_body = AgentAnswer,
    responses((status = 200, body = MessageOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn answer(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<AgentAnswer>,
) -> Result<Json<MessageOut>, ApiError> {
    caller.require(Role::Agent)?;
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > MAX_ANSWER_CHARS {
        return Err(ApiError::bad_request(format!(
            "the answer must be 1 to {MAX_ANSWER_CHARS} characters"
        )));
    }
    let p = state.platform()?;
    let c = conversation_header(&p, conversation_id(&id)?).await?;
    let me = agent_name(&caller);
    if c.handoff != Handoff::Agent || c.agent.as_deref() != Some(me.as_str()) {
        return Err(ApiError::conflict("take the conversation over before answering it"));
    }
    let message = NewMessage {
        role: MessageRole::Agent,
        content: text.to_owned(),
        tool_name: None,
        tool_payload: None,
    };
    let stored = p.store.append_message(c.id, &message).await?;
    Ok(Json(message_out(&stored)))
}

/// Closes a conversation.
#[utoipa::path(
    post, path = "/api/v1/agent/conversations/{id}/close", tag = "agent",
    params(("id" = i64, Path, description = "The conversation")),
    responses((status = 200, body = ConversationHeader), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn close(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ConversationHeader>, ApiError> {
    caller.require(Role::Agent)?;
    let p = state.platform()?;
    let c = conversation_header(&p, conversation_id(&id)?).await?;
    let c = p.store.set_handoff(c.id, Handoff::Closed, c.agent.as_deref()).await?;
    Ok(Json(header(&c, &external_of(&p, c.user).await?)))
}
