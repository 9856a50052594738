//! The HTTP surfaces of shopgraph, in one axum server:
//!
//! - [`storefront`]: recommendations (a user, a guest's session, similar items, bought
//!   together), personalised search, event ingestion, catalog and user upserts;
//! - [`agent`]: graph queries, customer profiles with the source of each interest, the
//!   handoff inbox, taking over and answering conversations;
//! - [`chat`]: the customer's chat (server-sent events), and [`openai`]'s
//!   `/v1/chat/completions` for OpenAI clients;
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, the OpenAPI document and Swagger UI;
//! - [`web`]: the chat page and the agent console, built into the binary.
//!
//! The server listens at once and loads the platform (store, graph, search index,
//! model) behind it: until [`AppState::load`] has finished every data endpoint
//! answers 503 and `/readyz` says what is missing.

pub mod agent;
pub mod auth;
pub mod chat;
pub mod config;
pub mod error;
pub mod insight;
pub mod metrics;
pub mod openai;
pub mod ops;
pub mod replica;
pub mod storefront;
pub mod web;

mod limit;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use shopgraph_assistant::shop::Shop;
use shopgraph_assistant::{Assistant, Config};
use shopgraph_graph::KnowledgeGraph;
use shopgraph_llm::{Llm, Prompts};
use shopgraph_search::SearchIndex;
use shopgraph_store::Store;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use crate::auth::{ApiKey, Role};
pub use crate::config::{JobsConfig, ServerConfig, TelegramConfig, TelegramMode};
use crate::error::ApiError;
pub use crate::metrics::Metrics;

/// Everything the endpoints read and write, once it is loaded.
pub struct Platform {
    pub store: Store,
    pub search: Arc<SearchIndex>,
    /// Kept current by the server's own writes (events, products, users, interests).
    pub graph: RwLock<KnowledgeGraph>,
    pub llm: Arc<dyn Llm>,
    /// The recommender and the assistant over it, replaced whole when it is refitted.
    tools: RwLock<Arc<Tools>>,
    /// The store read into the insight analyses' shape, kept while nothing changes.
    pub(crate) insight: insight::Cache,
    prompts: Prompts,
    assistant_config: Config,
}

/// The recommender (fitted over the store's events up to `fitted_seq`) and the
/// assistant that uses it. A request takes the current one and keeps it to its end.
pub struct Tools {
    pub shop: Arc<Shop>,
    pub assistant: Arc<Assistant>,
    pub fitted_seq: i64,
}

impl Tools {
    /// Fits the recommender over the store's events (up to `fitted_seq`, the last
    /// the caller saw) and puts the assistant over it.
    async fn fit(
        store: &Store,
        search: &Arc<SearchIndex>,
        llm: &Arc<dyn Llm>,
        prompts: &Prompts,
        config: &Config,
        fitted_seq: i64,
    ) -> Result<Tools, shopgraph_assistant::AssistantError> {
        let shop = Arc::new(Shop::load(store.clone(), Arc::clone(search)).await?);
        let assistant = Arc::new(Assistant::new(
            Arc::clone(llm),
            prompts.clone(),
            Arc::clone(&shop),
            config.clone(),
        ));
        Ok(Tools { shop, assistant, fitted_seq })
    }
}

impl Platform {
    pub fn tools(&self) -> Arc<Tools> {
        Arc::clone(&self.tools.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies the events stored since the graph last looked (a surface calls it after
    /// it appended some, so the graph's answers include them).
    pub async fn catch_up_graph(&self) -> Result<(), shopgraph_store::StoreError> {
        loop {
            let after = self.graph.read().unwrap_or_else(|e| e.into_inner()).last_seq();
            let page = self.store.events_after(after, 5_000).await?;
            if page.is_empty() {
                return Ok(());
            }
            let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
            let last = graph.last_seq();
            for e in page.iter().filter(|e| e.seq > last) {
                graph.apply_event(e);
            }
        }
    }

    /// Fits the recommender again when events arrived since the last fit, and swaps it
    /// in; requests keep being answered by the old one meanwhile. True when it refitted.
    pub async fn refit(&self) -> Result<bool, shopgraph_assistant::AssistantError> {
        let last = self.store.last_event_seq().await?;
        if last <= self.tools().fitted_seq {
            return Ok(false);
        }
        self.reload_tools().await?;
        Ok(true)
    }

    /// Fits the recommender again whatever changed (new association rules, say), and
    /// swaps it in.
    pub async fn reload_tools(&self) -> Result<(), shopgraph_assistant::AssistantError> {
        let last = self.store.last_event_seq().await?;
        let started = Instant::now();
        let tools = Tools::fit(
            &self.store,
            &self.search,
            &self.llm,
            &self.prompts,
            &self.assistant_config,
            last,
        )
        .await?;
        *self.tools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tools);
        tracing::info!(
            events_up_to = last,
            seconds = started.elapsed().as_secs_f32(),
            "recommender refitted"
        );
        Ok(())
    }
}

/// What the caller loaded; [`AppState::load`] builds the assistant's tools over it.
pub struct Parts {
    pub store: Store,
    pub search: Arc<SearchIndex>,
    pub graph: KnowledgeGraph,
    pub llm: Arc<dyn Llm>,
    pub prompts: Prompts,
    pub assistant: Config,
    /// The store's marks read before the graph and search index were: the follower
    /// takes in what other replicas wrote from there (None: from the marks at the end
    /// of loading).
    pub marks: Option<shopgraph_store::SyncMarks>,
}

pub struct AppState {
    pub(crate) config: ServerConfig,
    /// The recommendation experiment, if one runs, with each arm's strategy.
    pub(crate) experiment:
        Option<(shopgraph_insight::experiments::Experiment, Vec<config::Strategy>)>,
    pub(crate) keys: auth::Keys,
    pub(crate) sessions: auth::Sessions,
    pub(crate) limiter: limit::Limiter,
    pub metrics: Arc<Metrics>,
    platform: OnceLock<Arc<Platform>>,
    /// What the platform's loading is doing now, for `/readyz`.
    loading: RwLock<String>,
    started: Instant,
    requests: AtomicU64,
    /// Where the follower starts (see [`Parts::marks`]).
    marks: std::sync::Mutex<Option<shopgraph_store::SyncMarks>>,
}

impl AppState {
    /// Checks the configuration (keys, secret); nothing is loaded yet.
    pub fn new(config: ServerConfig) -> Result<Arc<AppState>, String> {
        let experiment = config.experiment()?;
        Ok(Arc::new(AppState {
            experiment,
            keys: auth::Keys::new(&config.api_keys)?,
            sessions: auth::Sessions::new(config.secret()?),
            limiter: limit::Limiter::default(),
            metrics: Arc::new(Metrics::default()),
            config,
            platform: OnceLock::new(),
            loading: RwLock::new("starting".into()),
            started: Instant::now(),
            requests: AtomicU64::new(0),
            marks: std::sync::Mutex::new(None),
        }))
    }

    /// Says what loading is doing (shown by `/readyz` until ready).
    pub fn loading(&self, what: &str) {
        *self.loading.write().unwrap_or_else(|e| e.into_inner()) = what.to_owned();
        tracing::info!(resident_mib = resident_mib(), "loading: {what}");
    }

    /// Builds the assistant's tools (fits the recommender over the store's events),
    /// warms the model's prompt cache, makes the platform live, and starts the
    /// recommender's refits (`refit_secs`).
    pub async fn load(
        self: &Arc<Self>,
        parts: Parts,
    ) -> Result<(), shopgraph_assistant::AssistantError> {
        self.loading("fitting the recommender over the store's events");
        let fitted_seq = parts.store.last_event_seq().await?;
        let llm: Arc<dyn Llm> =
            Arc::new(metrics::Metered::new(parts.llm, Arc::clone(&self.metrics)));
        let tools = Tools::fit(
            &parts.store,
            &parts.search,
            &llm,
            &parts.prompts,
            &parts.assistant,
            fitted_seq,
        )
        .await?;
        self.loading("reading the prompts' fixed parts into the model's cache");
        // A model that is slow or down (a remote one, say) must not keep the shop shut:
        // the assistant answers from its tools until it is back.
        match tools.assistant.warm_up().await {
            Ok(took) => tracing::info!(seconds = took.as_secs_f32(), "the model is warm"),
            Err(e) => tracing::warn!("warming the model up failed ({e}); serving without it"),
        }
        let platform = Platform {
            store: parts.store,
            search: parts.search,
            graph: RwLock::new(parts.graph),
            llm,
            tools: RwLock::new(Arc::new(tools)),
            insight: insight::Cache::default(),
            prompts: parts.prompts,
            assistant_config: parts.assistant,
        };
        if self.platform.set(Arc::new(platform)).is_err() {
            tracing::warn!("the platform was already loaded");
        }
        *self.marks.lock().unwrap_or_else(|e| e.into_inner()) = parts.marks;
        self.loading("ready");
        self.spawn_refits();
        replica::spawn(self);
        Ok(())
    }

    /// Every `refit_secs`, refits the recommender if events arrived (0: never).
    fn spawn_refits(self: &Arc<Self>) {
        let every = self.config.refit_secs;
        if every == 0 {
            return;
        }
        let state = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(platform) = state.platform.get() else { continue };
                if let Err(e) = platform.refit().await {
                    tracing::warn!("refitting the recommender: {e}");
                }
            }
        });
    }

    /// The loaded platform, or 503 while it loads.
    pub(crate) fn platform(&self) -> Result<Arc<Platform>, ApiError> {
        self.platform.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the server is still loading ({})", self.loading_now()),
            )
        })
    }

    /// The platform, once loaded (for surfaces that start after it, such as the
    /// Telegram bot).
    pub fn loaded(&self) -> Option<Arc<Platform>> {
        self.platform.get().cloned()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// This replica's name in the job runs: the configured one, or its address and
    /// process id.
    pub fn replica_name(&self) -> String {
        self.config
            .replica
            .clone()
            .unwrap_or_else(|| format!("{}#{}", self.config.addr, std::process::id()))
    }

    /// The marks the follower starts from, once (taken by [`replica::spawn`]).
    pub(crate) fn take_marks(&self) -> Option<shopgraph_store::SyncMarks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn loading_now(&self) -> String {
        self.loading.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopgraph",
        description = "Storefront recommendations and search, event ingestion, the agent API and the customer chat. \
            Send API keys as `Authorization: Bearer KEY`; customers' chat calls carry their session token the same way."
    ),
    tags(
        (name = "storefront", description = "Recommendations, search, events and catalog (storefront keys)"),
        (name = "agent", description = "Support agents: graph, profiles, conversations (agent keys)"),
        (name = "insight", description = "Marketing and operations: segments, rules, next steps, audiences, forecasts, experiments (agent keys; recomputing needs admin)"),
        (name = "chat", description = "The customer's chat (session tokens)"),
        (name = "operations", description = "Health, readiness, metrics")
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The refusals any operation can give, from the guard, the extractors and
        // loading, documented once for all of them.
        let common = [
            ("400", "Malformed: a parameter or the body is wrong, in words"),
            ("401", "No key or token, or one that is not valid"),
            ("403", "A key of another role, or a customer session"),
            ("413", "The body is larger than the server accepts"),
            ("415", "The body is not sent as application/json"),
            ("422", "The body is JSON of the wrong shape"),
            ("429", "Rate-limited: Retry-After says when to come back"),
            ("503", "Still loading (see /readyz)"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, description) in common {
                    if !operation.responses.responses.contains_key(status) {
                        let body = ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build();
                        let response = ResponseBuilder::new()
                            .description(description)
                            .content("application/json", body)
                            .build();
                        operation.responses.responses.insert(status.to_owned(), response.into());
                    }
                }
            }
        }
    }
}

/// The whole server: every route, the guards around the APIs, and request logging.
pub fn router(state: Arc<AppState>) -> Router {
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(storefront::routes())
        .merge(agent::routes())
        .merge(insight::routes())
        .merge(chat::routes())
        .split_for_parts();
    // After the routes are in: it documents what every operation may answer.
    utoipa::Modify::modify(&SecurityAddon, &mut openapi);
    let openai = Router::new()
        .route("/v1/chat/completions", axum::routing::post(openai::completions))
        .route("/v1/models", axum::routing::get(openai::models));
    let guarded =
        api.merge(openai).layer(middleware::from_fn_with_state(Arc::clone(&state), auth::guard));
    Router::new()
        .merge(guarded)
        .merge(ops::routes(openapi))
        .merge(web::routes())
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .with_state(state)
}

/// Gives each request an id (the caller's `x-request-id`, or a new one), logs it with
/// its route, status and time, and counts it in the metrics.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| format!("{:x}-{n:x}", state.started.elapsed().as_micros()), str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        if status >= 500 && status != 503 {
            tracing::warn!(status, ms = took.as_secs_f64() * 1e3, "answered");
        } else {
            tracing::debug!(status, ms = took.as_secs_f64() * 1e3, "answered");
        }
    });
    state.metrics.request(&method, &route, status, took);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Serves `router` on `listener` with callers' addresses (for the per-address rate
/// limit) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The process's resident memory in MiB (Linux; 0 elsewhere), for the loading log.
fn resident_mib() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096 / (1024 * 1024)
}
