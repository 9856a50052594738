//! `shopgraph bench`: the benchmarks behind the figures in the README.
//!
//! They measure, they do not assert: these machines are shared and noisy, so figures
//! are read from a run and compared within it (SQLite against PostgreSQL on the same
//! workload), never checked against a fixed threshold in a test.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use shopgraph_core::event::{EventKind, NewEvent};
use shopgraph_core::product::NewProduct;
use shopgraph_core::user::NewUser;
use shopgraph_core::{ProductId, UserId};
use shopgraph_store::{EventFilter, Store, StoreOptions};

use crate::{DEFAULT_DATA_DIR, report, source_dir};

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Event append throughput (single and batched) and read latency, per backend.
    Store {
        #[arg(long, value_enum, default_value = "both")]
        backend: BenchBackend,
        /// Events appended in batches.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events a batch: 10,000 is what `shopgraph import` writes at a time.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Events appended one call each.
        #[arg(long, default_value_t = 2_000)]
        single: usize,
        /// Read queries of each kind.
        #[arg(long, default_value_t = 2_000)]
        reads: usize,
        #[arg(
            long,
            env = "SHOPGRAPH_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        postgres_url: String,
    },
    /// Knowledge graph: build time from the store, snapshot size and load time, memory,
    /// and latency of neighbour, similar-product and explanation queries.
    Graph {
        #[command(flatten)]
        db: crate::DbArgs,
        /// Queries of each kind.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
        samples: u32,
    },
    /// Search: index build, encoder throughput against sentence-transformers, HNSW
    /// recall, and BM25 and hybrid query latency, on the whole catalog.
    Search {
        #[command(flatten)]
        index: crate::search::IndexArgs,
        /// Queries timed (the judged ones, then queries cut from titles).
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Catalog texts for the encoder throughput (a quarter of them at batch 1).
        #[arg(long, default_value_t = 2_000)]
        encoder_texts: usize,
        /// A Python with sentence-transformers, to run the peer encoder on the same
        /// texts (`scripts/bench-search.sh` makes one in a throwaway venv).
        #[arg(long)]
        peer_python: Option<PathBuf>,
        /// Also time linking every vector into a new HNSW graph (minutes on the bookstore).
        #[arg(long)]
        relink: bool,
        /// Only the text index: build time and BM25 latency (seconds, not minutes; no
        /// encoder, no vectors).
        #[arg(long, conflicts_with_all = ["peer_python", "relink"])]
        text_only: bool,
    },
    /// Recommendations: top-20 latency with filters and explanations, for known users
    /// and guest sessions, and the fusion model's training time beside ALS's.
    Recommend {
        #[arg(long, default_value = "ml-1m", value_parser = ["ml-100k", "ml-1m", "bookcrossing"])]
        dataset: String,
        #[arg(long, env = "SHOPGRAPH_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long, env = "SHOPGRAPH_MODEL_DIR", default_value = ".cache/models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
        /// Where the item vectors are cached.
        #[arg(long, default_value = ".cache/splits")]
        cache_dir: PathBuf,
        /// Fusion training epochs (the cost of a call does not depend on them).
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Calls timed of each kind.
        #[arg(long, default_value_t = 2_000)]
        samples: usize,
    },
    /// The language models: load time, prompt and decode speed, time to the first
    /// token, through mistral.rs and (with --peer-python) llama.cpp on the same files.
    Llm {
        /// GGUF files (both fetched models by default).
        #[arg(long, value_delimiter = ',', default_values = [
            ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf",
            ".cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ])]
        models: Vec<PathBuf>,
        /// A Python with llama-cpp-python (`scripts/bench-llm.sh` makes one).
        #[arg(long)]
        peer_python: Option<PathBuf>,
        /// Tokens generated a probe.
        #[arg(long, default_value_t = 48)]
        max_tokens: usize,
    },
    /// Interest exploration over a whole data set: segments (k by silhouette), association
    /// rules over sessions, next-step sequences and backtested weekly demand forecasts,
    /// each timed, with peak memory.
    Insight {
        #[arg(default_value = "ml-1m")]
        source: String,
        #[arg(long, env = "SHOPGRAPH_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        k_min: usize,
        #[arg(long, default_value_t = 12)]
        k_max: usize,
        /// Concepts kept as profile dimensions.
        #[arg(long, default_value_t = 200)]
        dims: usize,
        #[command(flatten)]
        rules: crate::insight::RuleArgs,
        #[command(flatten)]
        forecast: crate::insight::ForecastArgs,
    },
    /// Import throughput (rows/s) and peak memory for a whole source, into a new
    /// SQLite file.
    Import {
        #[arg(default_value = "bookcrossing")]
        source: String,
        #[arg(long, env = "SHOPGRAPH_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchBackend {
    Sqlite,
    Postgres,
    Both,
}

pub(crate) async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store { backend, events, batch, single, reads, postgres_url } => {
            let shape = Shape { events, batch, single, reads };
            let mut rows = Vec::new();
            if backend != BenchBackend::Postgres {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite:{}", dir.path().join("bench.db").display());
                let store = Store::open(&StoreOptions::new(&url)).await?;
                rows.push(("sqlite (WAL file)", bench_store(&store, &shape).await?));
                store.close().await;
            }
            if backend != BenchBackend::Sqlite {
                let schema = format!("sgbench_{}", std::process::id());
                let mut options = StoreOptions::new(&postgres_url);
                options.pg_schema = Some(schema.clone());
                let store = Store::open(&options).await?;
                let figures = bench_store(&store, &shape).await;
                store.close().await;
                Store::drop_pg_schema(&postgres_url, &schema).await?;
                rows.push(("postgresql", figures?));
            }
            let mut text = format!(
                "store benchmark: {} batched events ({} a batch), {} single appends, {} reads of each kind\n\
                 {:<18} {:>14} {:>14} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
                shape.events,
                shape.batch,
                shape.single,
                shape.reads,
                "backend",
                "batched ev/s",
                "single ev/s",
                "single p50",
                "single p99",
                "user p50",
                "user p99",
                "cursor p50",
                "cursor p99"
            );
            for (name, f) in &rows {
                text.push_str(&format!(
                    "{name:<18} {:>14.0} {:>14.0} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
                    f.batched_per_sec,
                    f.single_per_sec,
                    ms(f.single_latency.0),
                    ms(f.single_latency.1),
                    ms(f.user_reads.0),
                    ms(f.user_reads.1),
                    ms(f.cursor_reads.0),
                    ms(f.cursor_reads.1),
                ));
            }
            if let [(_, sqlite), (_, postgres)] = rows.as_slice() {
                text.push_str(&format!(
                    "sqlite / postgresql: batched appends {:.2}x, single appends {:.2}x\n",
                    sqlite.batched_per_sec / postgres.batched_per_sec,
                    sqlite.single_per_sec / postgres.single_per_sec
                ));
            }
            report(&text);
        }
        BenchCommand::Graph { db, samples } => bench_graph(&db, samples as usize).await?,
        BenchCommand::Search { index, queries, encoder_texts, peer_python, relink, text_only } => {
            let options = crate::bench_search::Options {
                queries,
                encoder_texts,
                peer_python,
                relink,
                text_only,
            };
            crate::bench_search::run(&index, &options).await?;
        }
        BenchCommand::Recommend { dataset, data_dir, model_dir, cache_dir, epochs, samples } => {
            let options = crate::bench_recommend::Options {
                dataset,
                data_dir,
                model_dir,
                cache_dir,
                epochs,
                samples,
            };
            crate::bench_recommend::run(&options)?;
        }
        BenchCommand::Llm { models, peer_python, max_tokens } => {
            let options = crate::bench_llm::Options { models, peer_python, max_tokens };
            crate::bench_llm::run(&options).await?;
        }
        BenchCommand::Insight { source, data_dir, k_min, k_max, dims, rules, forecast } => {
            let params = shopgraph_insight::SegmentParams {
                k_min,
                k_max,
                ..shopgraph_insight::SegmentParams::default()
            };
            crate::insight::bench(
                &source_dir(&source, &data_dir),
                &params,
                dims,
                &rules,
                &forecast,
            )?;
        }
        BenchCommand::Import { source, data_dir } => {
            let dir = source_dir(&source, &data_dir);
            let started = Instant::now();
            let (mut data, mut import_report) = crate::load::read(&dir)?;
            data.vet(&mut import_report);
            let read_secs = started.elapsed().as_secs_f64();
            let tmp = tempfile::tempdir()?;
            let url = format!("sqlite:{}", tmp.path().join("import.db").display());
            let store = Store::open(&StoreOptions::new(&url)).await?;
            let loaded = crate::load::load(&store, data, &mut import_report).await?;
            let secs = started.elapsed().as_secs_f64();
            let rows = import_report.total_read();
            report(&format!(
                "{import_report}import benchmark ({}): {rows} rows read in {secs:.1} s = {:.0} rows/s \
                 (reading and cleaning {read_secs:.1} s, writing {:.1} s); {} events written; peak memory {}",
                dir.display(),
                rows as f64 / secs,
                secs - read_secs,
                loaded.events_inserted,
                peak_memory().unwrap_or_else(|| "unknown".into()),
            ));
        }
    }
    Ok(())
}

struct Shape {
    events: usize,
    batch: usize,
    single: usize,
    reads: usize,
}

struct Figures {
    batched_per_sec: f64,
    single_per_sec: f64,
    single_latency: (Duration, Duration),
    user_reads: (Duration, Duration),
    cursor_reads: (Duration, Duration),
}

async fn bench_store(store: &Store, shape: &Shape) -> anyhow::Result<Figures> {
    const N_USERS: usize = 5_000;
    const N_PRODUCTS: usize = 5_000;
    let users: Vec<NewUser> = (0..N_USERS)
        .map(|i| NewUser {
            external_id: format!("u{i}"),
            display_name: None,
            location: None,
            age: None,
            attributes: None,
        })
        .collect();
    let users: Vec<UserId> = store.upsert_users(&users).await?;
    let products: Vec<NewProduct> = (0..N_PRODUCTS)
        .map(|i| NewProduct {
            sku: format!("p{i}"),
            title: format!("Product {i}"),
            description: None,
            maker: None,
            publisher: None,
            year: None,
            image_url: None,
            price_cents: 999,
            currency: "EUR".into(),
            stock: 5,
            category_keys: vec![],
            attributes: None,
            synthetic_fields: vec![],
            source: "bench".into(),
        })
        .collect();
    let products: Vec<ProductId> = store.upsert_products(&products).await?;
    let mut rng = Lcg(42);
    let mut event = |key: String| {
        let kind = [EventKind::View, EventKind::Click, EventKind::AddToCart, EventKind::Purchase]
            [rng.below(4)];
        NewEvent {
            idempotency_key: key,
            user: users[rng.below(users.len())],
            product: Some(products[rng.below(products.len())]),
            kind,
            value: None,
            payload: None,
            occurred_at: 1_700_000_000_000 + rng.below(30 * 24 * 3600 * 1000) as i64,
        }
    };

    let batches: Vec<Vec<NewEvent>> = (0..shape.events.div_ceil(shape.batch))
        .map(|b| (0..shape.batch).map(|i| event(format!("b{b}-{i}"))).collect())
        .collect();
    let started = Instant::now();
    for batch in &batches {
        store.append_events(batch).await?;
    }
    let batched_per_sec = (batches.len() * shape.batch) as f64 / started.elapsed().as_secs_f64();

    let singles: Vec<NewEvent> = (0..shape.single).map(|i| event(format!("s{i}"))).collect();
    let mut latencies = Vec::with_capacity(singles.len());
    let started = Instant::now();
    for e in &singles {
        let t = Instant::now();
        store.append_event(e).await?;
        latencies.push(t.elapsed());
    }
    let single_per_sec = singles.len() as f64 / started.elapsed().as_secs_f64();

    let mut rng = Lcg(7);
    let mut user_reads = Vec::with_capacity(shape.reads);
    for _ in 0..shape.reads {
        let filter = EventFilter {
            user: Some(users[rng.below(users.len())]),
            limit: Some(100),
            ..Default::default()
        };
        let t = Instant::now();
        store.events(&filter).await?;
        user_reads.push(t.elapsed());
    }
    let total = store.count_events().await? as usize;
    let mut cursor_reads = Vec::with_capacity(shape.reads);
    for _ in 0..shape.reads {
        let t = Instant::now();
        store.events_after(rng.below(total) as i64, 1_000).await?;
        cursor_reads.push(t.elapsed());
    }
    Ok(Figures {
        batched_per_sec,
        single_per_sec,
        single_latency: p50_p99(latencies),
        user_reads: p50_p99(user_reads),
        cursor_reads: p50_p99(cursor_reads),
    })
}

async fn bench_graph(db: &crate::DbArgs, samples: usize) -> anyhow::Result<()> {
    use shopgraph_graph::{Limits, NodeKey, QueryError, snapshot};

    let store = db.open().await?;
    let rss_before = memory("VmRSS").unwrap_or(0);
    let started = Instant::now();
    let graph = crate::graph::build(&store).await?;
    let build = started.elapsed();
    let rss_graph = memory("VmRSS").unwrap_or(0).saturating_sub(rss_before);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.snapshot");
    let started = Instant::now();
    crate::graph::save(&graph, &path, "bench")?;
    let write = started.elapsed();
    let size = std::fs::metadata(&path)?.len();
    // Loading is timed three times and the median reported: one reading on a shared
    // machine can be off by a factor of two.
    let mut loads = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (loaded, _) = snapshot::decode(&std::fs::read(&path)?)?;
        loads.push(started.elapsed());
        drop(loaded);
    }
    loads.sort();
    let load = loads[1];

    // Real (user, product) pairs: the explanation target is the product most like one
    // the user chose, as when explaining a recommendation.
    let total = store.count_events().await? as usize;
    if total == 0 {
        anyhow::bail!("the store has no events to sample queries from: import a data set first");
    }
    let mut rng = Lcg(11);
    let mut pairs = Vec::with_capacity(samples);
    let mut attempts = 0;
    while pairs.len() < samples {
        attempts += 1;
        if attempts > samples * 100 {
            anyhow::bail!("too few events name a product to sample {samples} queries");
        }
        if let Some(e) = store.events_after(rng.below(total) as i64, 1).await?.pop()
            && let Some(product) = e.product
        {
            pairs.push((e.user, product));
        }
    }
    let limits = Limits::default();
    let (mut neighbours, mut similar, mut explain) = (Vec::new(), Vec::new(), Vec::new());
    let (mut explained, mut timeouts) = (0, 0);
    // A query past its time limit is counted, not fatal: it is a result too.
    let mut timed =
        |samples: &mut Vec<Duration>, started: Instant, result: Result<(), QueryError>| {
            samples.push(started.elapsed());
            match result {
                Err(QueryError::Timeout(_)) => {
                    timeouts += 1;
                    Ok(())
                }
                other => other,
            }
        };
    for (user, product) in &pairs {
        let t = Instant::now();
        let r = graph.neighbours(&NodeKey::Product(*product), None, 20, &limits).map(drop);
        timed(&mut neighbours, t, r)?;
        let t = Instant::now();
        let like = graph.similar_products(*product, 10, &limits);
        let target = like.as_ref().ok().and_then(|l| l.first()).map_or(*product, |s| s.product);
        timed(&mut similar, t, like.map(drop))?;
        let t = Instant::now();
        let found = graph.explain(*user, target, 3, &limits);
        explained += usize::from(found.as_ref().is_ok_and(|f| !f.is_empty()));
        timed(&mut explain, t, found.map(drop))?;
    }
    let row = |name: &str, d: Vec<Duration>| {
        let (p50, p99) = p50_p99(d);
        format!("  {name:<22} p50 {:>10}  p99 {:>10}\n", ms(p50), ms(p99))
    };
    report(&format!(
        "graph benchmark: {} nodes, {} edges\n  build from the store   {:.1} s\n  snapshot               {:.0} MiB, written in {:.2} s, loaded in {:.2} s\n  \
         graph memory           {:.0} MiB (resident growth while building); peak {}\n{}{}{}  explanations found for {explained} of {samples} pairs; {timeouts} queries timed out",
        graph.node_count(),
        graph.edge_count(),
        build.as_secs_f64(),
        size as f64 / (1 << 20) as f64,
        write.as_secs_f64(),
        load.as_secs_f64(),
        rss_graph as f64 / 1024.0,
        peak_memory().unwrap_or_else(|| "unknown".into()),
        row("neighbours (20)", neighbours),
        row("similar products (10)", similar),
        row("explanation paths (3)", explain),
    ));
    Ok(())
}

/// A field of /proc/self/status, in KiB.
fn memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

pub(crate) fn p50_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The process's peak resident memory, from the kernel's own accounting.
pub(crate) fn peak_memory() -> Option<String> {
    Some(format!("{:.0} MiB", memory("VmHWM")? as f64 / 1024.0))
}

/// A small deterministic generator: the same run every time, no dependency.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}
