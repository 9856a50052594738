//! `shopgraph serve`: the storefront and agent APIs, the chat, the web pages, all in
//! one process over the store; and `shopgraph keys new`, which makes an API key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use shopgraph_server::{ApiKey, AppState, Parts, Role, ServerConfig, TelegramMode};

use crate::chat::LlmArgs;
use crate::graph::GraphArgs;
use crate::report;
use crate::search::{IndexArgs, Search};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// A TOML file of settings (see crates/server/config.example.toml).
    #[arg(long, env = "SHOPGRAPH_CONFIG")]
    config: Option<PathBuf>,
    /// Where to listen; overrides the file's `addr` (default 127.0.0.1:8080).
    #[arg(long, env = "SHOPGRAPH_ADDR")]
    addr: Option<std::net::SocketAddr>,
    /// API keys in the clear, `ROLE:NAME:KEY,…` (roles: storefront, agent, admin);
    /// hashed at start and added to the file's. With none at all, a key of each role
    /// is made for this run and printed.
    #[arg(long, env = "SHOPGRAPH_API_KEYS", hide_env_values = true, value_delimiter = ',')]
    api_keys: Vec<String>,
    /// Seconds between refits of the recommender over new events (0: only at start);
    /// overrides the file's `refit_secs` (default 600).
    #[arg(long, env = "SHOPGRAPH_REFIT_SECS")]
    refit_secs: Option<u64>,
    /// Serve only the language model (`/v1/chat/completions`, `/v1/models`): a model
    /// host for other shopgraph servers (their `--llm-url`).
    #[arg(long)]
    llm_only: bool,
    /// Where the knowledge graph's snapshot lives (default: beside the store's data).
    #[arg(long, env = "SHOPGRAPH_GRAPH_SNAPSHOT")]
    snapshot: Option<PathBuf>,
    /// The Telegram bot's token: with one, the bot runs beside the APIs (settings in
    /// the config's [telegram] section).
    #[arg(long, env = "TELOXIDE_TOKEN", hide_env_values = true)]
    telegram_token: Option<String>,
    /// The Bot API server (a local one); overrides the config's telegram.api_url.
    #[arg(long, env = "TELOXIDE_API_URL")]
    telegram_api_url: Option<String>,
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a random API key: prints it once, and the lines for the config file.
    New {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
    },
}

pub(crate) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::New { role, name } = command;
    let role =
        Role::parse(&role).ok_or_else(|| anyhow!("role must be storefront, agent or admin"))?;
    let secret = shopgraph_server::auth::new_secret();
    let entry = ApiKey::from_secret(&name, role, &secret);
    report(&format!(
        "key (shown once; give it to the caller): {secret}\n\n[[api_keys]]\nname = \"{name}\"\nrole = \"{}\"\nsha256 = \"{}\"",
        role.as_str(),
        entry.sha256
    ));
    Ok(())
}

fn config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path).map_err(|e| anyhow!(e))?,
        None => ServerConfig::default(),
    };
    if let Some(addr) = args.addr {
        config.addr = addr;
    }
    config.llm_timeout_secs = args.llm.llm_timeout;
    if let Some(secs) = args.refit_secs {
        config.refit_secs = secs;
    }
    if let Some(api) = &args.telegram_api_url {
        config.telegram.api_url = Some(api.clone());
    }
    for given in &args.api_keys {
        let mut parts = given.splitn(3, ':');
        let (Some(role), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!(
                "SHOPGRAPH_API_KEYS: write ROLE:NAME:KEY, got one with {} parts",
                given.split(':').count()
            );
        };
        let role =
            Role::parse(role).ok_or_else(|| anyhow!("SHOPGRAPH_API_KEYS: no role {role:?}"))?;
        config.api_keys.push(ApiKey::from_secret(name, role, secret));
    }
    if config.api_keys.is_empty() {
        let mut lines = vec!["no API keys are configured; for this run only:".to_owned()];
        for role in [Role::Storefront, Role::Agent, Role::Admin] {
            let secret = shopgraph_server::auth::new_secret();
            lines.push(format!("  {:<10} {secret}", role.as_str()));
            config.api_keys.push(ApiKey::from_secret(
                &format!("{}-dev", role.as_str()),
                role,
                &secret,
            ));
        }
        report(&lines.join("\n"));
    }
    Ok(config)
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.llm.llm_timeout);
    if args.llm_only {
        let addr = args.addr.unwrap_or_else(|| ServerConfig::default().addr);
        let model = args.llm.open().await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, "serving the language model at /v1/chat/completions");
        axum::serve(listener, shopgraph_server::openai::router(model, timeout)).await?;
        return Ok(());
    }
    let config = config(&args)?;
    let addr = config.addr;
    let state = AppState::new(config).map_err(|e| anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    // The port the system chose, when asked for port 0.
    let addr = listener.local_addr()?;
    let mut router = shopgraph_server::router(Arc::clone(&state));
    if let Some(token) = &args.telegram_token {
        let settings = state.config().telegram.clone();
        let bot = shopgraph_telegram::bot(token, &settings)?;
        match settings.mode {
            TelegramMode::Polling => {
                tokio::spawn(shopgraph_telegram::run_polling(Arc::clone(&state), bot, settings));
            }
            TelegramMode::Webhook => {
                let (updates, route) = shopgraph_telegram::webhook(&settings)?;
                router = router.merge(route);
                tokio::spawn(shopgraph_telegram::run_webhook(
                    Arc::clone(&state),
                    bot,
                    settings,
                    updates,
                ));
            }
        }
        tracing::info!("telegram: the bot starts once the platform is loaded");
    }
    let server = tokio::spawn(shopgraph_server::serve(listener, router, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    report(&format!(
        "shopgraph is listening on http://{addr}: the chat at /, the agent console at /console, the API at /docs (ready when /readyz says so)"
    ));

    // What the store holds before the graph and search index are read: other replicas'
    // writes during loading are taken in after it.
    let marks = {
        let store = args.index.db.open().await?;
        let marks = store.sync_marks().await?;
        store.close().await;
        marks
    };
    state.loading("opening the store and the knowledge graph");
    let graph_args = GraphArgs { db: args.index.db.clone(), snapshot: args.snapshot.clone() };
    let (graph, store) = crate::graph::open(&graph_args).await?;
    state.loading("opening the search index");
    let search = Search::open(&args.index, false).await?;
    state.loading("loading the language model");
    let llm = args.llm.open().await?;
    let parts = Parts {
        store,
        search: Arc::new(search.index),
        graph,
        llm,
        prompts: args.llm.prompts()?,
        assistant: args.llm.config(),
        marks: Some(marks),
    };
    state.load(parts).await.context("loading the platform")?;
    report(&format!("shopgraph is ready on http://{addr}"));
    server.await??;
    Ok(())
}
