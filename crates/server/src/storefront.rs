//! The storefront API (`/api/v1`, storefront keys): recommendations with their
//! reasons, personalised search, event ingestion, and catalog and user upserts.
//!
//! Products are named by sku and users by the shop's own id (`external_id`), as the
//! shop knows them; the store's numeric ids never leave the server.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopgraph_assistant::shop::{BookFacts, Pick, interest_name, normalise};
use shopgraph_core::event::NewEvent;
use shopgraph_core::interest::{Interest, Polarity};
use shopgraph_core::product::Product;
use shopgraph_search::{ProductDoc, SearchRequest};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Role};
use crate::config::Strategy;
use crate::error::{ApiError, Body, ErrorBody, Params, bounded};
use crate::{AppState, Platform};

/// The most products one upsert, or events one batch, may carry.
pub const MAX_BATCH: usize = 1_000;
/// The most results a list may ask for.
pub const MAX_N: usize = 100;

pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(user_recommendations))
        .routes(routes!(session_recommendations))
        .routes(routes!(similar))
        .routes(routes!(bought_together))
        .routes(routes!(search))
        .routes(routes!(events))
        .routes(routes!(upsert_products))
        .routes(routes!(upsert_users))
        .routes(routes!(link_code))
}

/// A product as a list shows it, with why it is there.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Card {
    pub sku: String,
    pub title: String,
    pub author: Option<String>,
    pub year: Option<i32>,
    /// With its currency, such as `12.99 EUR`.
    pub price: String,
    pub stock: i64,
    /// Why it is recommended, in words (from the graph, the shopper's interests, or
    /// co-purchases).
    pub reason: String,
}

impl Card {
    pub fn new(book: &BookFacts, reason: &str) -> Card {
        Card {
            sku: book.sku.clone(),
            title: book.title.clone(),
            author: book.author.clone(),
            year: book.year,
            price: book.price.clone(),
            stock: book.stock,
            reason: reason.to_owned(),
        }
    }

    fn of_pick(pick: &Pick) -> Card {
        Card::new(&pick.book, &pick.reason)
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CardList {
    pub items: Vec<Card>,
    /// The experiment arm that chose the list, when an experiment runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many (1 to 100; 20 when not given).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) n: Option<usize>,
}

fn n_of(n: Option<usize>) -> Result<usize, ApiError> {
    bounded("n", n, 20, MAX_N)
}

/// The items of a batch: 1 to [`MAX_BATCH`] of them.
fn batch<T>(what: &str, items: &[T]) -> Result<(), ApiError> {
    bounded(what, Some(items.len()), 1, MAX_BATCH).map(|_| ())
}

fn served(state: &AppState, items: Vec<Card>) -> Json<CardList> {
    state.metrics.recommendations.fetch_add(items.len() as u64, Ordering::Relaxed);
    Json(CardList { items, arm: None })
}

pub(crate) async fn product_by_sku(p: &Platform, sku: &str) -> Result<Product, ApiError> {
    p.store
        .product_by_sku(sku)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no product with sku {sku:?}")))
}

/// Recommendations for a known customer: their history and their interests (liked
/// authors, categories and topics move up; disliked ones are left out).
#[utoipa::path(
    get, path = "/api/v1/users/{user}/recommendations", tag = "storefront",
    params(("user" = String, Path, description = "The shop's id of the customer"), ListParams),
    responses((status = 200, body = CardList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn user_recommendations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    Params(params): Params<ListParams>,
) -> Result<Json<CardList>, ApiError> {
    caller.require(Role::Storefront)?;
    let n = n_of(params.n)?;
    let p = state.platform()?;
    let user = p
        .store
        .user_by_external_id(&user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {user:?}")))?;
    let interests = p.store.interests(user.id).await?;
    let shop = &p.tools().shop;
    let (strategy, arm) = match &state.experiment {
        Some((e, strategies)) => {
            let i = e.arm_of(&user.external_id);
            (strategies[i], Some(e.arms[i].name.clone()))
        }
        None => (Strategy::Personal, None),
    };
    let picks = match strategy {
        Strategy::Personal => shop.recommend_known(&user.external_id, &interests, n).await?,
        Strategy::Popular => shop.recommend_popular(&interests, n).await?,
    };
    let mut list = served(&state, picks.iter().map(Card::of_pick).collect());
    list.0.arm = arm;
    Ok(list)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// What the guest did in this visit, oldest first.
    events: Vec<SessionEvent>,
    /// How many (1 to 100; 20 when not given).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    n: Option<usize>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionEvent {
    /// A sku.
    product: String,
    /// `view`, `click`, `add_to_cart`, `purchase`, ….
    #[serde(default)]
    kind: Option<String>,
}

/// Recommendations for a guest: the products of their visit, given in the request;
/// nothing is stored.
#[utoipa::path(
    post, path = "/api/v1/recommendations/session", tag = "storefront",
    request_body = SessionRequest,
    responses((status = 200, body = CardList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn session_recommendations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(request): Body<SessionRequest>,
) -> Result<Json<CardList>, ApiError> {
    caller.require(Role::Storefront)?;
    let n = n_of(request.n)?;
    if request.events.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a session may carry at most {MAX_BATCH} events"
        )));
    }
    for e in &request.events {
        if let Some(kind) = &e.kind {
            shopgraph_core::event::EventKind::parse(kind)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
    }
    let p = state.platform()?;
    let skus: Vec<&str> = request.events.iter().map(|e| e.product.as_str()).collect();
    let ids = p.store.product_ids_by_sku(&skus).await?;
    let mut session = Vec::with_capacity(skus.len());
    for sku in skus {
        session.push(
            *ids.get(sku)
                .ok_or_else(|| ApiError::not_found(format!("no product with sku {sku:?}")))?,
        );
    }
    let picks = p.tools().shop.recommend_session(&session, n).await?;
    Ok(served(&state, picks.iter().map(Card::of_pick).collect()))
}

/// Products like this one in the knowledge graph (same author, publisher, categories,
/// decade, entities), each with what it shares; sold-out and hidden ones left out.
#[utoipa::path(
    get, path = "/api/v1/products/{sku}/similar", tag = "storefront",
    params(("sku" = String, Path, description = "The product"), ListParams),
    responses((status = 200, body = CardList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn similar(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sku): Path<String>,
    Params(params): Params<ListParams>,
) -> Result<Json<CardList>, ApiError> {
    caller.require(Role::Storefront)?;
    let n = n_of(params.n)?;
    let p = state.platform()?;
    let product = product_by_sku(&p, &sku).await?;
    let similar = {
        let graph = p.graph.read().unwrap_or_else(|e| e.into_inner());
        graph.similar_products(
            product.id,
            (n * 2).min(MAX_N * 2),
            &shopgraph_graph::Limits::default(),
        )?
    };
    let mut items = Vec::new();
    for s in similar {
        if items.len() == n {
            break;
        }
        if let Some(other) = p.tools().shop.sellable(s.product).await? {
            let shared: Vec<&str> = s.shared.iter().take(3).map(String::as_str).collect();
            items.push(Card::new(
                &BookFacts::of(&other),
                &format!("shares {} with {}", shared.join(", "), product.title),
            ));
        }
    }
    Ok(served(&state, items))
}

/// Products chosen by the same customers as this one ("frequently bought together").
#[utoipa::path(
    get, path = "/api/v1/products/{sku}/bought-together", tag = "storefront",
    params(("sku" = String, Path, description = "The product"), ListParams),
    responses((status = 200, body = CardList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn bought_together(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sku): Path<String>,
    Params(params): Params<ListParams>,
) -> Result<Json<CardList>, ApiError> {
    caller.require(Role::Storefront)?;
    let n = n_of(params.n)?;
    let p = state.platform()?;
    let product = product_by_sku(&p, &sku).await?;
    let picks = p.tools().shop.together(product.id, n).await?;
    Ok(served(&state, picks.iter().map(Card::of_pick).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The words.
    q: String,
    /// The shop's id of the customer: their interests reorder the page.
    user: Option<String>,
    /// 1-based (1 when not given).
    #[param(minimum = 1, maximum = 1000)]
    page: Option<usize>,
    /// 1 to 100 (20 when not given).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<usize>,
    /// A category key; its subcategories are included.
    category: Option<String>,
    #[serde(default)]
    in_stock: bool,
    /// In cents.
    max_price_cents: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub sku: String,
    pub title: String,
    pub author: Option<String>,
    pub year: Option<i32>,
    pub price_cents: i64,
    pub stock: i64,
    pub score: f32,
    /// Set when the customer's interests moved this hit up.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchPage {
    pub total: usize,
    /// How the query was read.
    pub reading: String,
    pub hits: Vec<SearchHit>,
}

/// Search the catalog (typos forgiven, synonyms, filters). With `user`, hits by an
/// author or on a topic the customer likes move up and say so; disliked ones move down.
#[utoipa::path(
    get, path = "/api/v1/search", tag = "storefront",
    params(SearchParams),
    responses((status = 200, body = SearchPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn search(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<SearchParams>,
) -> Result<Json<SearchPage>, ApiError> {
    caller.require(Role::Storefront)?;
    let per_page = bounded("per_page", params.per_page, 20, MAX_N)?;
    let page = bounded("page", params.page, 1, 1_000)?;
    let p = state.platform()?;
    let interests = match &params.user {
        Some(external) => {
            let user = p
                .store
                .user_by_external_id(external)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no user {external:?}")))?;
            p.store.interests(user.id).await?
        }
        None => Vec::new(),
    };
    let mut request = SearchRequest::new(params.q);
    request.offset = (page - 1) * per_page;
    request.limit = per_page;
    request.filters.category = params.category;
    request.filters.in_stock = params.in_stock;
    request.filters.price_max_cents = params.max_price_cents;
    let results = p.search.search(&request).map_err(|e| {
        if e.is_client_error() {
            ApiError::bad_request(e.to_string())
        } else {
            ApiError::internal(e)
        }
    })?;
    let mut hits: Vec<SearchHit> = results
        .hits
        .into_iter()
        .map(|h| SearchHit {
            sku: h.sku,
            title: h.title,
            author: h.maker,
            year: h.year,
            price_cents: h.price_cents,
            stock: h.stock,
            score: h.score,
            reason: None,
        })
        .collect();
    personalise(&mut hits, &interests);
    Ok(Json(SearchPage { total: results.total, reading: results.reading, hits }))
}

/// Reorders a page by the customer's interests: a liked author (or a liked topic's
/// words in the title) multiplies a hit's score by 1 + weight; a disliked one halves it.
fn personalise(hits: &mut [SearchHit], interests: &[Interest]) {
    if interests.is_empty() {
        return;
    }
    use shopgraph_import::clean::{organisation_key, person_key};
    for hit in hits.iter_mut() {
        // A maker interest names the catalog's key for the maker (`jrr tolkien`).
        let author_keys: Vec<String> = hit
            .author
            .as_deref()
            .map(|a| vec![person_key(a), organisation_key(a)])
            .unwrap_or_default();
        let title = normalise(&hit.title);
        for i in interests {
            let key = interest_name(&i.subject);
            let name = normalise(key);
            let why = match i.subject.split_once(':').map(|(kind, _)| kind) {
                Some("maker") | Some("author")
                    if !key.is_empty() && author_keys.iter().any(|k| k == key) =>
                {
                    format!("by {}, whom you like", hit.author.as_deref().unwrap_or(key))
                }
                Some("topic")
                    if !name.is_empty() && format!(" {title} ").contains(&format!(" {name} ")) =>
                {
                    format!("about {name}, which you like")
                }
                _ => continue,
            };
            match i.polarity {
                Polarity::Likes => {
                    hit.score *= 1.0 + i.weight as f32;
                    hit.reason = Some(why);
                }
                Polarity::Dislikes => hit.score *= 0.5,
            }
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsAccepted {
    /// Events stored now.
    pub inserted: usize,
    /// Events stored before under the same key (retries): nothing was written for them.
    pub duplicates: usize,
    /// The store's sequence number of the last event this call wrote.
    pub last_seq: Option<i64>,
}

/// Behaviour events, one (an event object) or a batch (`{"events": [...]}`, at most
/// 1,000), in the `events.jsonl` shape: `{"key", "user", "product", "kind", "value",
/// "payload", "at_ms"}`. Each key is stored once, so a retried call is safe. A batch
/// is stored whole or not at all: one bad event refuses it, naming the event.
#[utoipa::path(
    post, path = "/api/v1/events", tag = "storefront",
    request_body(content = Object, description = "An event, or {\"events\": [event, ...]}"),
    responses((status = 200, body = EventsAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn events(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<Value>,
) -> Result<Json<EventsAccepted>, ApiError> {
    caller.require(Role::Storefront)?;
    let values = match body {
        Value::Object(mut o) if o.contains_key("events") => match o.remove("events") {
            Some(Value::Array(events)) => events,
            _ => return Err(ApiError::bad_request("events must be an array of events")),
        },
        single @ Value::Object(_) => vec![single],
        _ => return Err(ApiError::bad_request("the body must be an event or {\"events\": [...]}")),
    };
    batch("the number of events", &values)?;
    let p = state.platform()?;
    let mut records = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let record = shopgraph_import::jsonl::event_from_json(v)
            .map_err(|e| ApiError::bad_request(format!("event {i}: {e}")))?;
        shopgraph_core::check_identifier("user id", &record.user)
            .map_err(|e| ApiError::bad_request(format!("event {i}: {e}")))?;
        records.push(record);
    }
    let users: Vec<&str> =
        records.iter().map(|r| r.user.as_str()).collect::<HashSet<_>>().into_iter().collect();
    let skus: Vec<&str> = records
        .iter()
        .filter_map(|r| r.product.as_deref())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let user_ids = p.store.user_ids_by_external_id(&users).await?;
    let product_ids = p.store.product_ids_by_sku(&skus).await?;
    let mut events = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let user = *user_ids
            .get(&r.user)
            .ok_or_else(|| ApiError::not_found(format!("event {i}: no user {:?}", r.user)))?;
        let product = match &r.product {
            Some(sku) => Some(*product_ids.get(sku).ok_or_else(|| {
                ApiError::not_found(format!("event {i}: no product with sku {sku:?}"))
            })?),
            None => None,
        };
        events.push(NewEvent {
            idempotency_key: r.key,
            user,
            product,
            kind: r.kind,
            value: r.value,
            payload: r.payload,
            occurred_at: r.occurred_at,
        });
    }
    let accepted = if events.len() == 1 {
        let a = p.store.append_event(&events[0]).await?;
        EventsAccepted {
            inserted: usize::from(!a.duplicate),
            duplicates: usize::from(a.duplicate),
            last_seq: (!a.duplicate).then_some(a.seq),
        }
    } else {
        let a = p.store.append_events(&events).await?;
        EventsAccepted { inserted: a.inserted, duplicates: a.duplicates, last_seq: a.last_seq }
    };
    p.catch_up_graph().await?;
    Ok(Json(accepted))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductsUpsert {
    /// Products in the `products.jsonl` shape: `{"sku", "title", "author" | "brand",
    /// "publisher", "year", "price", "currency", "stock", "categories", ...}`.
    #[schema(value_type = Vec<Object>)]
    products: Vec<Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Upserted {
    /// How many were written (added or changed).
    pub upserted: usize,
}

/// Adds or changes products (at most 1,000 a call), all or none: search, the graph and
/// the lists see them at once.
#[utoipa::path(
    put, path = "/api/v1/products", tag = "storefront",
    request_body = ProductsUpsert,
    responses((status = 200, body = Upserted), (status = 400, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn upsert_products(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<ProductsUpsert>,
) -> Result<Json<Upserted>, ApiError> {
    caller.require(Role::Storefront)?;
    batch("the number of products", &body.products)?;
    let p = state.platform()?;
    let categories: HashSet<String> =
        p.store.categories().await?.into_iter().map(|c| c.key).collect();
    let mut products = Vec::with_capacity(body.products.len());
    let mut skus = HashSet::new();
    for (i, v) in body.products.into_iter().enumerate() {
        let product = shopgraph_import::jsonl::product_from_json(v, &categories)
            .map_err(|e| ApiError::bad_request(format!("product {i}: {e}")))?;
        shopgraph_core::check_identifier("sku", &product.sku)
            .map_err(|e| ApiError::bad_request(format!("product {i}: {e}")))?;
        if !skus.insert(product.sku.clone()) {
            return Err(ApiError::bad_request(format!(
                "product {i}: sku {:?} appears twice",
                product.sku
            )));
        }
        products.push(product);
    }
    let ids = p.store.upsert_products(&products).await?;
    let mut docs = Vec::with_capacity(ids.len());
    let search_categories = p.search.categories();
    for id in &ids {
        let Some(product) = p.store.product(*id).await? else { continue };
        p.graph.write().unwrap_or_else(|e| e.into_inner()).upsert_product(&product);
        p.tools().shop.product_changed(&product);
        docs.push(ProductDoc::new(&product, &search_categories, 0));
    }
    p.search.upsert(&docs).map_err(ApiError::internal)?;
    p.search.commit("api").map_err(ApiError::internal)?;
    Ok(Json(Upserted { upserted: ids.len() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsersUpsert {
    /// Users in the `users.jsonl` shape: `{"id", "name", "location", "age", "attributes"}`.
    #[schema(value_type = Vec<Object>)]
    users: Vec<Value>,
}

/// Adds or changes customers (at most 1,000 a call), all or none.
#[utoipa::path(
    put, path = "/api/v1/users", tag = "storefront",
    request_body = UsersUpsert,
    responses((status = 200, body = Upserted), (status = 400, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn upsert_users(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<UsersUpsert>,
) -> Result<Json<Upserted>, ApiError> {
    caller.require(Role::Storefront)?;
    batch("the number of users", &body.users)?;
    let p = state.platform()?;
    let mut users = Vec::with_capacity(body.users.len());
    let mut seen = HashSet::new();
    for (i, v) in body.users.into_iter().enumerate() {
        let user = shopgraph_import::jsonl::user_from_json(v)
            .map_err(|e| ApiError::bad_request(format!("user {i}: {e}")))?;
        if !seen.insert(user.external_id.clone()) {
            return Err(ApiError::bad_request(format!(
                "user {i}: id {:?} appears twice",
                user.external_id
            )));
        }
        users.push(user);
    }
    let ids = p.store.upsert_users(&users).await?;
    for id in &ids {
        if let Some(user) = p.store.user(*id).await? {
            p.graph.write().unwrap_or_else(|e| e.into_inner()).upsert_user(&user);
        }
    }
    Ok(Json(Upserted { upserted: ids.len() }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkCode {
    /// Eight letters and digits, shown to the customer once: they send `/link CODE`
    /// (or open the bot's `start=CODE` link) in Telegram.
    pub code: String,
    /// Milliseconds since the epoch after which the code no longer works.
    pub expires_at: i64,
}

/// How long a link code works.
pub const LINK_CODE_MS: i64 = 15 * 60 * 1000;

/// A one-time code that links a Telegram chat to this customer's account (the shop
/// shows it on the customer's account page). It works once, for 15 minutes; only its
/// SHA-256 is stored.
#[utoipa::path(
    post, path = "/api/v1/users/{user}/link-code", tag = "storefront",
    params(("user" = String, Path, description = "The shop's id of the customer")),
    responses((status = 200, body = LinkCode), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn link_code(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
) -> Result<Json<LinkCode>, ApiError> {
    caller.require(Role::Storefront)?;
    let p = state.platform()?;
    let user = p
        .store
        .user_by_external_id(&user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {user:?}")))?;
    let code = crate::auth::new_link_code();
    let expires_at = shopgraph_core::now_ms() + LINK_CODE_MS;
    p.store.add_link_code(user.id, &crate::auth::link_code_sha256(&code), expires_at).await?;
    Ok(Json(LinkCode { code, expires_at }))
}

#[cfg(test)]
mod tests {
    use shopgraph_core::interest::{Interest, InterestSource, Polarity};
    use shopgraph_core::{InterestId, UserId};

    use super::{SearchHit, personalise};

    fn hit(sku: &str, title: &str, author: &str, score: f32) -> SearchHit {
        SearchHit {
            sku: sku.into(),
            title: title.into(),
            author: Some(author.into()),
            year: None,
            price_cents: 100,
            stock: 1,
            score,
            reason: None,
        }
    }

    fn interest(subject: &str, weight: f64, polarity: Polarity) -> Interest {
        Interest {
            id: InterestId(1),
            user: UserId(1),
            subject: subject.into(),
            weight,
            polarity,
            source: InterestSource::Stated,
            at: 0,
        }
    }

    #[test]
    fn liked_authors_and_topics_move_up_and_say_so_and_disliked_ones_move_down() {
        let mut hits = vec![
            hit("a", "The Sea", "Anne Author", 3.0),
            hit("b", "The Hobbit", "J. R. R. Tolkien", 2.0),
            hit("c", "Sea Dragons", "Bea Writer", 1.9),
            hit("d", "Deep Sea", "Carl Critic", 2.5),
        ];
        personalise(
            &mut hits,
            &[
                interest("maker:jrr tolkien", 1.0, Polarity::Likes),
                interest("topic:dragons", 0.8, Polarity::Likes),
                interest("maker:anne author", 1.0, Polarity::Dislikes),
            ],
        );
        let order: Vec<&str> = hits.iter().map(|h| h.sku.as_str()).collect();
        assert_eq!(order, ["b", "c", "d", "a"]);
        assert_eq!(hits[0].reason.as_deref(), Some("by J. R. R. Tolkien, whom you like"));
        assert_eq!(hits[1].reason.as_deref(), Some("about dragons, which you like"));
        assert_eq!(hits[3].reason, None);
    }
}
