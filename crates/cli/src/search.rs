//! `shopgraph search`: product search from the command line, over an index kept beside
//! the store and brought up to date before every query.
//!
//! The text index (tantivy) and the vectors (one per product, from the MiniLM encoder)
//! live in one directory per database. Each remembers what it has seen of the store —
//! the newest product change, the last event (popularity), the category count — and
//! applies only what changed since; the vectors re-encode only products whose text
//! changed. The first run builds both (encoding the bookstore takes minutes, with a
//! progress bar); later runs start in a second.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use shopgraph_core::ProductId;
use shopgraph_core::product::Product;
use shopgraph_embed::{EmbedError, Encoder, VectorIndex, text_hash};
use shopgraph_search::{
    Categories, Filters, Fusion, HybridOptions, ProductDoc, SearchIndex, SearchRequest,
    SearchResults, Sort, Synonyms, hybrid,
};
use shopgraph_store::Store;

use crate::load::progress;
use crate::{DbArgs, report};

/// Products read from the store at a time.
const PAGE: u32 = 10_000;
/// Texts encoded a batch when embedding the catalog.
const ENCODE_BATCH: usize = 32;
/// Products encoded between progress reports (and, at most every minute, saves).
const ENCODE_CHUNK: usize = 8_192;
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Past this many products touched by new events, rebuilding beats fetching each.
const MAX_TOUCHED: usize = 5_000;

#[derive(Args, Clone)]
pub(crate) struct IndexArgs {
    #[command(flatten)]
    pub(crate) db: DbArgs,
    /// Where the search index and vectors live; by default `.cache/search-…`, one per
    /// database.
    #[arg(long, env = "SHOPGRAPH_SEARCH_DIR")]
    pub(crate) index_dir: Option<PathBuf>,
    /// The all-MiniLM-L6-v2 directory fetched by `scripts/setup.sh`.
    #[arg(long, env = "SHOPGRAPH_MODEL_DIR", default_value = ".cache/models/all-MiniLM-L6-v2")]
    pub(crate) model_dir: PathBuf,
    /// Synonym groups (see the file for its format).
    #[arg(long, env = "SHOPGRAPH_SYNONYMS", default_value = "graph_data/synonyms.txt")]
    pub(crate) synonyms: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Words and vectors, fused by reciprocal rank.
    Hybrid,
    /// Words only (BM25).
    Bm25,
    /// Vectors only.
    Vectors,
}

#[derive(Args)]
pub(crate) struct SearchArgs {
    #[command(flatten)]
    index: IndexArgs,
    /// What to look for: words, "a phrase", -excluded.
    query: String,
    /// A category key; its subcategories are included.
    #[arg(long)]
    category: Option<String>,
    /// Lowest price, in currency units.
    #[arg(long)]
    min_price: Option<f64>,
    /// Highest price, in currency units.
    #[arg(long)]
    max_price: Option<f64>,
    /// Only products in stock.
    #[arg(long)]
    in_stock: bool,
    #[arg(long)]
    year_from: Option<i32>,
    #[arg(long)]
    year_to: Option<i32>,
    /// relevance, price, price-desc, popularity, newest.
    #[arg(long, default_value = "relevance", value_parser = parse_sort)]
    sort: Sort,
    /// Page number, from 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    page: u32,
    #[arg(long, default_value_t = 10)]
    per_page: usize,
    /// Also count matches by category, price band and stock.
    #[arg(long)]
    facets: bool,
    #[arg(long, value_enum, default_value = "hybrid")]
    mode: Mode,
}

fn parse_sort(s: &str) -> Result<Sort, String> {
    Sort::parse(s).ok_or_else(|| {
        format!("unknown sort {s:?}: relevance, price, price-desc, popularity, newest")
    })
}

fn cents(units: Option<f64>, flag: &str) -> anyhow::Result<Option<i64>> {
    match units {
        None => Ok(None),
        Some(v) if v.is_finite() && (0.0..1e12).contains(&v) => {
            Ok(Some((v * 100.0).round() as i64))
        }
        Some(v) => bail!("--{flag} {v} is not a price"),
    }
}

pub(crate) async fn run(args: SearchArgs) -> anyhow::Result<()> {
    let request = SearchRequest {
        text: args.query.clone(),
        filters: Filters {
            category: args.category.clone(),
            price_min_cents: cents(args.min_price, "min-price")?,
            price_max_cents: cents(args.max_price, "max-price")?,
            in_stock: args.in_stock,
            year_min: args.year_from,
            year_max: args.year_to,
        },
        sort: args.sort,
        offset: (args.page as usize - 1).saturating_mul(args.per_page),
        limit: args.per_page,
        facets: args.facets,
    };
    let search = Search::open(&args.index, args.mode != Mode::Bm25).await?;
    let started = Instant::now();
    let results = match (&search.vectors, args.mode) {
        (Some((encoder, vectors)), Mode::Hybrid | Mode::Vectors) => {
            let fusion =
                if args.mode == Mode::Vectors { Fusion::SemanticOnly } else { Fusion::default() };
            let options = HybridOptions { fusion, ..HybridOptions::default() };
            hybrid::search(&search.index, encoder, vectors, &request, options)
        }
        _ => search.index.search(&request),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = started.elapsed();
    print_results(&args.query, &results, took, args.mode);
    Ok(())
}

/// An index and, when asked for, the encoder and vectors, all current with the store.
pub(crate) struct Search {
    pub(crate) index: SearchIndex,
    pub(crate) vectors: Option<(Encoder, VectorIndex)>,
}

/// What the text index has seen of the store (its commit payload).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    identity: String,
    products: i64,
    products_updated_at: i64,
    categories: i64,
    events_seq: i64,
}

impl Search {
    /// Opens the index (and the vectors, with `vectors`), applying what changed in the
    /// store since they were last written, or building them when they are missing,
    /// from another database or version, or something was deleted.
    pub(crate) async fn open(args: &IndexArgs, vectors: bool) -> anyhow::Result<Search> {
        let store = args.db.open().await?;
        let dir = args.index_dir();
        let synonyms = if args.synonyms.exists() {
            Synonyms::load(&args.synonyms)
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.synonyms.display()))?
        } else {
            tracing::warn!("no synonyms at {}: searching without", args.synonyms.display());
            Synonyms::default()
        };
        let index = SearchIndex::open(&dir.join("text"), synonyms)
            .map_err(|e| anyhow::anyhow!("opening the search index in {}: {e}", dir.display()))?;
        let categories = store.categories().await?;
        index.set_categories(Categories::new(&categories));
        sync_text(&store, &index, &args.identity()).await?;
        let vectors = if vectors {
            let encoder = Encoder::load(&args.model_dir).with_context(|| {
                format!(
                    "loading the sentence encoder from {} (run scripts/setup.sh)",
                    args.model_dir.display()
                )
            })?;
            let vectors =
                sync_vectors(&store, &index.categories(), &encoder, &dir.join("vectors.bin"))
                    .await?;
            Some((encoder, vectors))
        } else {
            None
        };
        store.close().await;
        Ok(Search { index, vectors })
    }
}

impl IndexArgs {
    fn identity(&self) -> String {
        format!("{}|{}", self.db.url, self.db.pg_schema.as_deref().unwrap_or(""))
    }

    pub(crate) fn index_dir(&self) -> PathBuf {
        self.index_dir.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                ".cache/search-{:016x}",
                crate::graph::fnv(self.identity().as_bytes())
            ))
        })
    }
}

pub(crate) fn search_err(e: shopgraph_search::SearchError) -> anyhow::Error {
    anyhow::anyhow!("search index: {e}")
}

/// Brings the text index up to date with the store; returns the products written.
async fn sync_text(store: &Store, index: &SearchIndex, identity: &str) -> anyhow::Result<usize> {
    let marks = store.sync_marks().await?;
    let now = Seen {
        identity: identity.to_owned(),
        products: marks.products,
        products_updated_at: marks.products_updated_at,
        categories: marks.categories,
        events_seq: store.last_event_seq().await?,
    };
    let seen: Option<Seen> = index.mark().and_then(|m| serde_json::from_str(&m).ok());
    let mut touched = Vec::new();
    let rebuild = match &seen {
        None => Some("no search index yet".to_string()),
        Some(s) if s.identity != identity => {
            Some(format!("the index was built for {:?}", s.identity))
        }
        Some(s) if s.categories != now.categories => Some("the categories changed".into()),
        Some(s) if s.products > now.products => Some("products were deleted".into()),
        Some(s) if *s == now => return Ok(0),
        Some(s) => {
            // Products whose popularity moved; past a few thousand, one pass is faster.
            touched = store.products_with_events_after(s.events_seq).await?;
            (touched.len() > MAX_TOUCHED)
                .then(|| format!("{} products have new events", touched.len()))
        }
    };
    let categories = index.categories();
    let written = match seen {
        Some(seen) if rebuild.is_none() => {
            // Products changed since the mark (its own millisecond again: rows written in
            // it after the mark was read would otherwise be missed), and those touched.
            let mut changed: Vec<Product> = Vec::new();
            let mut after = ProductId(0);
            loop {
                let page =
                    store.products_changed_since(seen.products_updated_at, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                changed.extend(page);
            }
            let already: HashSet<ProductId> = changed.iter().map(|p| p.id).collect();
            for id in touched.into_iter().filter(|id| !already.contains(id)) {
                changed.extend(store.product(id).await?);
            }
            let ids: Vec<ProductId> = changed.iter().map(|p| p.id).collect();
            let popularity = store.product_popularity(Some(&ids)).await?;
            let (hidden, visible): (Vec<&Product>, Vec<&Product>) =
                changed.iter().partition(|p| p.hidden);
            let docs: Vec<ProductDoc> = visible
                .iter()
                .map(|p| {
                    ProductDoc::new(p, &categories, popularity.get(&p.id).map_or(0, |&n| n as u64))
                })
                .collect();
            index.upsert(&docs).map_err(search_err)?;
            index.remove(&hidden.iter().map(|p| p.id).collect::<Vec<_>>()).map_err(search_err)?;
            tracing::info!(written = changed.len(), "brought the search index up to date in place");
            changed.len()
        }
        _ => {
            tracing::info!("building the search index: {}", rebuild.unwrap_or_default());
            rebuild_text(store, index, &categories, marks.products as u64).await?
        }
    };
    index.commit(&serde_json::to_string(&now)?).map_err(search_err)?;
    Ok(written)
}

/// Rewrites the whole index from the store's visible products.
pub(crate) async fn rebuild_text(
    store: &Store,
    index: &SearchIndex,
    categories: &Categories,
    products: u64,
) -> anyhow::Result<usize> {
    index.clear().map_err(search_err)?;
    let popularity = store.product_popularity(None).await?;
    let bar = progress(products as usize, "indexing products");
    let mut written = 0;
    let mut after = ProductId(0);
    loop {
        let page = store.products_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let docs: Vec<ProductDoc> = page
            .iter()
            .filter(|p| !p.hidden)
            .map(|p| ProductDoc::new(p, categories, popularity.get(&p.id).map_or(0, |&n| n as u64)))
            .collect();
        index.upsert(&docs).map_err(search_err)?;
        written += docs.len();
        bar.inc(page.len() as u64);
    }
    bar.finish_and_clear();
    Ok(written)
}

/// Loads the vectors beside the index and encodes every visible product whose text has
/// no vector yet (or changed); drops vectors of products gone or hidden.
async fn sync_vectors(
    store: &Store,
    categories: &Categories,
    encoder: &Encoder,
    path: &std::path::Path,
) -> anyhow::Result<VectorIndex> {
    let mut vectors = match VectorIndex::load(path, encoder.fingerprint()) {
        Ok(v) => v,
        Err(EmbedError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            VectorIndex::new(encoder.fingerprint(), encoder.dim())
        }
        Err(e) => {
            tracing::warn!("re-encoding the catalog: {e}");
            VectorIndex::new(encoder.fingerprint(), encoder.dim())
        }
    };
    // Every product's text is hashed (cheap); only stale ones are encoded.
    let mut visible: HashSet<ProductId> = HashSet::new();
    let mut stale: Vec<(ProductId, String)> = Vec::new();
    let mut after = ProductId(0);
    loop {
        let page = store.products_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for p in page.iter().filter(|p| !p.hidden) {
            visible.insert(p.id);
            let text = ProductDoc::new(p, categories, 0).semantic_text();
            if vectors.is_stale(p.id, text_hash(&text)) {
                stale.push((p.id, text));
            }
        }
    }
    let gone: Vec<ProductId> = vectors.ids().filter(|id| !visible.contains(id)).collect();
    for id in &gone {
        vectors.remove(*id);
    }
    if stale.is_empty() && gone.is_empty() {
        return Ok(vectors);
    }
    // In chunks, saved as they go: an interrupted first run resumes where it stopped
    // (the hashes tell what is done), and logs show progress where no bar is drawn.
    let bar = progress(stale.len(), "embedding products");
    let mut last_save = std::time::Instant::now();
    for (n, chunk) in stale.chunks(ENCODE_CHUNK).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let data = encoder.encode_all(&texts, ENCODE_BATCH, |k| bar.inc(k as u64))?;
        let items: Vec<(ProductId, u64)> =
            chunk.iter().map(|(id, t)| (*id, text_hash(t))).collect();
        vectors.extend(&items, &data, |_| {})?;
        if last_save.elapsed() > SAVE_EVERY {
            vectors.save(path)?;
            last_save = std::time::Instant::now();
        }
        let done = (n * ENCODE_CHUNK + chunk.len()).min(stale.len());
        if stale.len() > ENCODE_CHUNK {
            tracing::info!("embedded {done} of {} products", stale.len());
        }
    }
    bar.finish_and_clear();
    vectors.save(path)?;
    tracing::info!(encoded = stale.len(), removed = gone.len(), "vectors up to date");
    Ok(vectors)
}

fn print_results(query: &str, results: &SearchResults, took: std::time::Duration, mode: Mode) {
    let mode = match mode {
        Mode::Hybrid => "hybrid",
        Mode::Bm25 => "bm25",
        Mode::Vectors => "vectors",
    };
    let mut out = format!(
        "{} results for {query:?} ({}) — {mode}, {:.1} ms\n",
        results.total,
        results.reading,
        took.as_secs_f64() * 1e3
    );
    for (i, hit) in results.hits.iter().enumerate() {
        let maker = hit.maker.as_deref().map(|m| format!(" — {m}")).unwrap_or_default();
        let year = hit.year.map(|y| format!(" ({y})")).unwrap_or_default();
        let stock = if hit.stock > 0 { "in stock" } else { "sold out" };
        let mut why = Vec::new();
        if let Some(r) = hit.lexical_rank {
            why.push(format!("words #{r}"));
        }
        if let Some(r) = hit.semantic_rank {
            why.push(format!("meaning #{r}"));
        }
        let why = if why.is_empty() { String::new() } else { format!("  [{}]", why.join(", ")) };
        out.push_str(&format!(
            "{:>3}. {}{maker}{year}  {}.{:02}  {stock}  sku {}{why}\n",
            i + 1,
            hit.title,
            hit.price_cents / 100,
            hit.price_cents % 100,
            hit.sku
        ));
    }
    if let Some(f) = &results.facets {
        let cats: Vec<String> =
            f.categories.iter().map(|c| format!("{} {}", c.name, c.count)).collect();
        out.push_str(&format!("categories: {}\n", cats.join(" · ")));
        let bands: Vec<String> = f
            .price_bands
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(b, n)| match b.max_cents {
                Some(max) => format!("{}–{} {n}", b.min_cents / 100, max / 100),
                None => format!("{}+ {n}", b.min_cents / 100),
            })
            .collect();
        out.push_str(&format!("prices: {}\nin stock: {}\n", bands.join(" · "), f.in_stock));
    }
    report(out.trim_end());
}
