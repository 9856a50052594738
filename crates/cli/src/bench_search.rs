//! `shopgraph bench search`: the search figures on a whole catalog (the bookstore's
//! 271,000 books once imported).
//!
//! - text index build time and size;
//! - encoder throughput at batch 1 and 32 on catalog texts, and the same texts through
//!   the peer (sentence-transformers on PyTorch, CPU) in the same run, with the ratio
//!   and a check that both give the same vectors;
//! - the catalog's vectors (encoded once, then loaded from their file), HNSW link time,
//!   and HNSW recall@10 against exact search;
//! - query latency p50/p99 for BM25 and for hybrid search including the query's
//!   embedding, over judged queries and queries cut from catalog titles (with typos).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shopgraph_core::ProductId;
use shopgraph_embed::{Encoder, Method, VectorIndex};
use shopgraph_search::eval::parse_judgements;
use shopgraph_search::{
    Categories, HybridOptions, ProductDoc, SearchIndex, SearchRequest, Synonyms, hybrid,
};

use crate::bench::{Lcg, ms, p50_p99, peak_memory};
use crate::report;
use crate::search::{IndexArgs, Search, rebuild_text, search_err};

pub(crate) struct Options {
    pub(crate) queries: usize,
    pub(crate) encoder_texts: usize,
    pub(crate) peer_python: Option<PathBuf>,
    /// Also time linking every vector into a fresh HNSW graph (minutes on the bookstore).
    pub(crate) relink: bool,
    /// Only the text index and BM25.
    pub(crate) text_only: bool,
}

pub(crate) async fn run(args: &IndexArgs, options: &Options) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let categories = Categories::new(&store.categories().await?);
    let products = store.counts().await?.products;
    if products == 0 {
        bail!("the store has no products: import a catalog first");
    }
    let synonyms = Synonyms::load(&args.synonyms).map_err(search_err)?;

    // 1. The text index, built from scratch in a temporary directory.
    let tmp = tempfile::tempdir()?;
    let fresh = SearchIndex::open(tmp.path(), synonyms).map_err(search_err)?;
    fresh.set_categories(categories.clone());
    let started = Instant::now();
    let indexed = rebuild_text(&store, &fresh, &categories, products as u64).await?;
    fresh.commit("bench").map_err(search_err)?;
    let build = started.elapsed();
    let index_bytes = dir_size(tmp.path());

    // Catalog texts: every product's, and an evenly spread sample for the encoders.
    let mut texts: Vec<(ProductId, String)> = Vec::with_capacity(products as usize);
    let mut after = ProductId(0);
    loop {
        let page = store.products_page(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        texts.extend(
            page.iter().map(|p| (p.id, ProductDoc::new(p, &categories, 0).semantic_text())),
        );
    }
    let step = (texts.len() / options.encoder_texts.max(1)).max(1);
    let sample: Vec<&str> =
        texts.iter().step_by(step).take(options.encoder_texts).map(|(_, t)| t.as_str()).collect();
    store.close().await;

    // Queries: the judged ones, then words cut from titles, every third with a typo.
    let judged = parse_judgements(include_str!("../../../graph_data/search/queries.jsonl"))
        .map_err(anyhow::Error::msg)?;
    let mut queries: Vec<String> = judged.iter().map(|q| q.query.clone()).collect();
    let mut rng = Lcg(7);
    while queries.len() < options.queries {
        let (_, text) = &texts[rng.below(texts.len())];
        let words: Vec<&str> = text.split_whitespace().take(1 + rng.below(3)).collect();
        let mut query = words.join(" ");
        if queries.len().is_multiple_of(3) {
            query = typo(&query, &mut rng);
        }
        if !query.trim().is_empty() {
            queries.push(query);
        }
    }

    let mut out = format!(
        "search benchmark: {indexed} products\n  text index build                   {:.1} s ({:.0} products/s), {:.0} MiB on disk\n",
        build.as_secs_f64(),
        indexed as f64 / build.as_secs_f64(),
        index_bytes as f64 / (1 << 20) as f64,
    );
    let queries_line = |refused: usize| {
        format!(
            "  queries: {} ({} judged, the rest cut from titles, a third with a typo; {refused} refused)\n",
            queries.len(),
            judged.len()
        )
    };
    if options.text_only {
        let mut bm25 = Vec::new();
        let mut refused = 0;
        for text in &queries {
            let t = Instant::now();
            refused += usize::from(fresh.search(&SearchRequest::new(text.as_str())).is_err());
            bm25.push(t.elapsed());
        }
        out.push_str(&queries_line(refused));
        out.push_str(&latency_row("BM25 (top 10)", &bm25));
        out.push_str(&slowest(&queries, &bm25));
        out.push_str(&format!(
            "  peak memory {}",
            peak_memory().unwrap_or_else(|| "unknown".into())
        ));
        report(&out);
        return Ok(());
    }
    drop(fresh);

    // 2. Encoder throughput, ours then the peer's on the same texts.
    let encoder = Encoder::load(&args.model_dir).context("loading the encoder")?;
    encoder.encode(&sample[..sample.len().min(64)])?; // warm-up, as the peer's
    let one_by_one = &sample[..sample.len().div_ceil(4)];
    let started = Instant::now();
    encoder.encode_all(one_by_one, 1, |_| {})?;
    let ours_1 = one_by_one.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    encoder.encode_all(&sample, 32, |_| {})?;
    let ours_32 = sample.len() as f64 / started.elapsed().as_secs_f64();
    let peer = match &options.peer_python {
        Some(python) => Some(run_peer(python, &args.model_dir, &sample, &encoder)?),
        None => None,
    };

    // 3. The catalog's vectors (encoded on first use, then loaded), HNSW relinked.
    let started = Instant::now();
    let search = Search::open(args, true).await?;
    let open = started.elapsed();
    let Some((encoder, vectors)) = &search.vectors else { bail!("vectors were asked for") };
    let path = args.index_dir().join("vectors.bin");
    let started = Instant::now();
    let mut relinked = VectorIndex::load(&path, encoder.fingerprint())?;
    let load = started.elapsed();
    let hnsw_build = if options.relink {
        let started = Instant::now();
        relinked.rebuild();
        Some(started.elapsed())
    } else {
        None
    };
    // With --relink, what follows runs on the new graph (the file's may be older).
    let vectors: &VectorIndex = if options.relink { &relinked } else { vectors };

    // 5. HNSW recall@10 against exact, on the queries' vectors.
    let mut recall = Vec::new();
    let query_vectors: Vec<Vec<f32>> = queries
        .iter()
        .take(200)
        .map(|q| encoder.encode(&[q.as_str()]))
        .collect::<Result<_, _>>()?;
    for ef in [32, 64, 96, 200] {
        let (mut hit, mut total, mut times, mut exact_times) = (0, 0, Vec::new(), Vec::new());
        for qv in &query_vectors {
            let t = Instant::now();
            let exact = vectors.search(qv, 10, Method::Exact, &|_| true)?;
            exact_times.push(t.elapsed());
            let t = Instant::now();
            let approx = vectors.search(qv, 10, Method::Approximate { ef }, &|_| true)?;
            times.push(t.elapsed());
            // Ties count as found: the bookstore holds many editions with the same
            // text (the same vector), and any of them is as near as another.
            let tenth = exact.last().map_or(f32::NEG_INFINITY, |e| e.1);
            total += exact.len();
            hit += approx.iter().filter(|a| a.1 >= tenth - 1e-6).count().min(exact.len());
        }
        recall.push((ef, hit as f64 / total.max(1) as f64, p50_p99(times), p50_p99(exact_times)));
    }

    // 6. Latency: BM25, hybrid (query embedding included), and the embedding alone.
    let (mut bm25, mut hybrid_times, mut embed) = (Vec::new(), Vec::new(), Vec::new());
    let mut refused = 0;
    for text in &queries {
        let request = SearchRequest::new(text.as_str());
        let t = Instant::now();
        let r = search.index.search(&request);
        bm25.push(t.elapsed());
        refused += usize::from(r.is_err());
        let t = Instant::now();
        encoder.encode(&[text.as_str()])?;
        embed.push(t.elapsed());
        let t = Instant::now();
        let _ = hybrid::search(&search.index, encoder, vectors, &request, HybridOptions::default());
        hybrid_times.push(t.elapsed());
    }

    out.push_str(&format!(
        "  encoder (candle), {} catalog texts   batch 1: {ours_1:.0} texts/s   batch 32: {ours_32:.0} texts/s\n",
        sample.len()
    ));
    if let Some(p) = &peer {
        out.push_str(&format!(
            "  peer (sentence-transformers {} threads) batch 1: {:.0} texts/s   batch 32: {:.0} texts/s\n  \
             ratio shopgraph / peer               batch 1: {:.2}x   batch 32: {:.2}x   (max difference in the first 16 vectors {:.1e})\n",
            p.threads,
            p.batch1,
            p.batch32,
            ours_1 / p.batch1,
            ours_32 / p.batch32,
            p.max_diff
        ));
    }
    out.push_str(&format!(
        "  vectors                            {} products; opening index and vectors {:.1} s (first run encodes the catalog); file load {:.2} s; HNSW link {}\n",
        vectors.len(),
        open.as_secs_f64(),
        load.as_secs_f64(),
        hnsw_build.map_or("not timed (--relink)".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
    ));
    for (ef, r, (p50, p99), (e50, e99)) in &recall {
        out.push_str(&format!(
            "  HNSW ef={ef:<4} recall@10 {r:.3}        p50 {:>10}  p99 {:>10}   (exact p50 {}, p99 {})\n",
            ms(*p50),
            ms(*p99),
            ms(*e50),
            ms(*e99)
        ));
    }
    out.push_str(&queries_line(refused));
    out.push_str(&latency_row("BM25 (top 10)", &bm25));
    out.push_str(&slowest(&queries, &bm25));
    out.push_str(&latency_row("query embedding (batch 1)", &embed));
    out.push_str(&latency_row("hybrid (embedding + both + fusion)", &hybrid_times));
    out.push_str(&slowest(&queries, &hybrid_times));
    out.push_str(&format!("  peak memory {}", peak_memory().unwrap_or_else(|| "unknown".into())));
    report(&out);
    Ok(())
}

fn latency_row(name: &str, times: &[Duration]) -> String {
    let (p50, p99) = p50_p99(times.to_vec());
    format!("  {name:<34} p50 {:>10}  p99 {:>10}\n", ms(p50), ms(p99))
}

/// The five slowest queries with their times: what the tail is made of.
fn slowest(queries: &[String], times: &[Duration]) -> String {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(times[i]));
    let worst: Vec<String> =
        order.iter().take(5).map(|&i| format!("{:?} {}", queries[i], ms(times[i]))).collect();
    format!("    slowest: {}\n", worst.join(", "))
}

struct Peer {
    threads: u64,
    batch1: f64,
    batch32: f64,
    max_diff: f32,
}

/// Runs `scripts/peer_encoder.py` with `python` on the same texts.
fn run_peer(
    python: &std::path::Path,
    model: &std::path::Path,
    texts: &[&str],
    encoder: &Encoder,
) -> anyhow::Result<Peer> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("texts.txt");
    let output = dir.path().join("peer.json");
    // One text a line: newlines inside a text would split it.
    let lines: Vec<String> = texts.iter().map(|t| t.replace(['\n', '\r'], " ")).collect();
    std::fs::write(&input, lines.join("\n"))?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peer_encoder.py");
    let status = Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(&input)
        .arg(&output)
        .args(["1", "32"])
        .status()
        .with_context(|| format!("running the peer with {}", python.display()))?;
    if !status.success() {
        bail!("the peer encoder failed ({status})");
    }
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&output)?)?;
    let rate = |batch: &str| -> f64 {
        let t = &result["throughput"][batch];
        t["texts"].as_f64().unwrap_or(0.0) / t["seconds"].as_f64().unwrap_or(f64::INFINITY)
    };
    let first: Vec<&str> = lines.iter().take(16).map(String::as_str).collect();
    let ours = encoder.encode(&first)?;
    let mut max_diff = 0f32;
    for (row, theirs) in
        ours.chunks_exact(encoder.dim()).zip(result["first"].as_array().into_iter().flatten())
    {
        for (a, b) in row.iter().zip(theirs.as_array().into_iter().flatten()) {
            max_diff = max_diff.max((a - b.as_f64().unwrap_or(f64::NAN) as f32).abs());
        }
    }
    Ok(Peer {
        threads: result["threads"].as_u64().unwrap_or(0),
        batch1: rate("1"),
        batch32: rate("32"),
        max_diff,
    })
}

/// Swaps two neighbouring letters in the query's longest word, as a hurried typist does.
fn typo(query: &str, rng: &mut Lcg) -> String {
    let mut words: Vec<String> = query.split_whitespace().map(str::to_owned).collect();
    let Some(longest) = (0..words.len()).max_by_key(|&i| words[i].chars().count()) else {
        return query.to_owned();
    };
    let mut chars: Vec<char> = words[longest].chars().collect();
    if chars.len() >= 5 {
        let at = 1 + rng.below(chars.len() - 2);
        chars.swap(at, at + 1);
        words[longest] = chars.into_iter().collect();
    }
    words.join(" ")
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
