//! `shopgraph`: the command line, and the one place that wires concrete adapters
//! (which store, which data directory) to the libraries.
//!
//! Configuration comes from flags, then environment variables (`SHOPGRAPH_*`), then
//! the compiled-in defaults below; nothing else reads the environment.

mod bench;
mod bench_llm;
mod bench_recommend;
mod bench_search;
mod chat;
mod eval;
mod events;
mod graph;
mod insight;
mod load;
mod recommend;
mod search;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use shopgraph_store::{Store, StoreOptions};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The embedded default: one SQLite file beside the fetched data.
const DEFAULT_DATABASE_URL: &str = "sqlite:.cache/shopgraph.db";
const DEFAULT_DATA_DIR: &str = ".cache/data";

#[derive(Parser)]
#[command(
    name = "shopgraph",
    version,
    about = "E-commerce intelligence: knowledge graph, search, recommendations, assistant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DbArgs {
    /// `sqlite:PATH` (the embedded default) or `postgres://USER@HOST/DB`.
    #[arg(long = "db", env = "SHOPGRAPH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    url: String,
    /// PostgreSQL only: keep the tables in this schema.
    #[arg(long, env = "SHOPGRAPH_PG_SCHEMA")]
    pg_schema: Option<String>,
}

impl DbArgs {
    fn options(&self) -> StoreOptions {
        let mut options = StoreOptions::new(&self.url);
        options.pg_schema = self.pg_schema.clone();
        // While the database is down (PostgreSQL restarting, say), a request waits this
        // long for a connection and then hears 503, rather than hanging.
        options.acquire_timeout = std::time::Duration::from_secs(5);
        options
    }

    async fn open(&self) -> anyhow::Result<Store> {
        if let Some(path) = self.url.strip_prefix("sqlite:")
            && let Some(parent) = Path::new(path.trim_start_matches("//")).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        Store::open(&self.options())
            .await
            .with_context(|| format!("opening the store at {}", self.url))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Bring the database schema up to date (also done on every start).
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Read a source, clean and check every row, and write it into the store.
    Import(load::ImportArgs),
    /// The knowledge graph: build, query, explain.
    #[command(subcommand)]
    Graph(graph::GraphCommand),
    /// Event ingestion from a pipe.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Erase a user and everything derived from them.
    DeleteUser {
        #[command(flatten)]
        db: DbArgs,
        /// The user's external id (e.g. `bx:276725`).
        external_id: String,
    },
    /// How much the store holds.
    Stats {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Search the catalog: words and meaning, with filters, facets and sorting.
    Search(search::SearchArgs),
    /// Interest exploration: segments, association rules, sequences, demand forecasts,
    /// campaign audiences and experiments, over the store's data.
    #[command(subcommand)]
    Insight(insight::InsightCommand),
    /// Benchmarks that produce the figures in the README.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Offline evaluation of the recommenders on MovieLens and Book-Crossing: one table.
    Eval(eval::EvalArgs),
    /// Recommendations with their explanations for a user, a guest's session or stated
    /// interests, on a public data set.
    Recommend(recommend::RecommendArgs),
    /// A conversation with the shop assistant in the terminal.
    Chat(chat::ChatArgs),
    /// The platform over HTTP: the storefront and agent APIs, the customer chat (and
    /// OpenAI chat completions), the chat page and the agent console.
    Serve(Box<serve::ServeArgs>),
    /// API keys for `serve`.
    #[command(subcommand)]
    Keys(serve::KeysCommand),
}

/// OpenBLAS (the encoder's matrix products) picks its kernels by CPU model, and the
/// 0.3.21 of Debian 12 does not know this machine's (family 6, model 207): it falls
/// back to its SSE3 kernels, three times slower. The CPU's features tell which kernels
/// it can run; when the environment does not already name them, the process replaces
/// itself (same pid, same arguments) with `OPENBLAS_CORETYPE` set, which OpenBLAS reads
/// when it loads, before `main` could set anything.
fn choose_blas_kernels() {
    #[cfg(target_arch = "x86_64")]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
            return;
        }
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq");
        let coretype = if avx512 && has!("avx512bf16") {
            "Cooperlake"
        } else if avx512 {
            "SkylakeX"
        } else if has!("avx2") && has!("fma") {
            "Haswell"
        } else {
            return;
        };
        let Ok(exe) = std::env::current_exe() else { return };
        let error = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("OPENBLAS_CORETYPE", coretype)
            .exec();
        // Only reached when the exec failed: carry on with OpenBLAS's own choice.
        tracing::warn!("could not restart with OPENBLAS_CORETYPE={coretype}: {error}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    choose_blas_kernels();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "shopgraph=info,warn".into());
    // `SHOPGRAPH_LOG_FORMAT=json`: one JSON object a line, with the span's fields (the
    // server's request id, method and route), for a log collector.
    if std::env::var("SHOPGRAPH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate { db } => {
            let store = db.open().await?;
            report(&format!("schema at version {}", store.schema_version().await?));
        }
        Command::Import(args) => load::run(args).await?,
        Command::Events(command) => events::run(command).await?,
        Command::Graph(command) => graph::run(command).await?,
        Command::DeleteUser { db, external_id } => {
            let store = db.open().await?;
            let Some(user) = store.user_by_external_id(&external_id).await? else {
                bail!("no user with external id {external_id:?}");
            };
            let deleted = store.delete_user(user.id).await?;
            report(&format!(
                "deleted user {external_id}: {} events, {} interests, {} conversations ({} messages), {} segment memberships",
                deleted.events,
                deleted.interests,
                deleted.conversations,
                deleted.messages,
                deleted.segment_memberships
            ));
        }
        Command::Stats { db } => {
            let store = db.open().await?;
            let c = store.counts().await?;
            report(&format!(
                "products {}\ncategories {}\nauthors {}\nbrands {}\npublishers {}\nusers {}\nevents {}\nkg_triples {}",
                c.products,
                c.categories,
                c.authors,
                c.brands,
                c.publishers,
                c.users,
                c.events,
                c.kg_triples
            ));
        }
        Command::Search(args) => search::run(args).await?,
        Command::Bench(command) => bench::run(command).await?,
        Command::Insight(command) => insight::run(command).await?,
        Command::Eval(args) => match args.what {
            Some(eval::EvalWhat::Chat(chat_args)) => chat::eval(chat_args).await?,
            None => eval::run(&args)?,
        },
        Command::Chat(args) => chat::run(args).await?,
        Command::Serve(args) => serve::run(*args).await?,
        Command::Keys(command) => serve::keys(command)?,
        Command::Recommend(args) => recommend::run(&args)?,
    }
    Ok(())
}

/// Prints a result for the person at the terminal (stdout is the command's output).
#[allow(clippy::print_stdout, reason = "the CLI's results go to stdout")]
fn report(text: &str) {
    println!("{text}");
}

/// A source given by name (`bookcrossing`, `ml-100k`, `ml-1m`) lives in the data
/// directory; anything else is a path.
fn source_dir(source: &str, data_dir: &Path) -> PathBuf {
    let named = data_dir.join(source);
    if !source.contains('/') && named.is_dir() { named } else { PathBuf::from(source) }
}
