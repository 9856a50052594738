//! `shopgraph bench recommend`: serving latency of the storefront's call, top-20 for a
//! shopper with the shop's filters and an explanation in words for every result, and
//! the fusion model's training time per epoch beside ALS's fit.
//!
//! The model's quality does not change the cost of a call (profiles and item vectors
//! are computed at fit time; a guest's session runs the network once), so the fusion
//! model is trained for a few epochs only. Quality is `shopgraph eval`'s business.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shopgraph_recommend::model::{
    Als, AlsParams, Content, ContentParams, Fusion, FusionParams, Graph, GraphParams, ItemFeatures,
    ItemKnn, ItemKnnParams, Popularity, PopularityParams,
};
use shopgraph_recommend::serve::{Explanation, Filters, Server, Shopper};

use crate::bench::{ms, p50_p99};
use crate::report;

pub(crate) struct Options {
    pub(crate) dataset: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) model_dir: PathBuf,
    pub(crate) cache_dir: PathBuf,
    pub(crate) epochs: usize,
    pub(crate) samples: usize,
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    let (data, side) = crate::eval::load(&options.dataset, &options.data_dir)?;
    let dir = options.cache_dir.join(format!("{}-serve", options.dataset));
    std::fs::create_dir_all(&dir)?;
    let vectors = Arc::new(crate::eval::item_vectors(&side, &options.model_dir, &dir)?);
    let features = ItemFeatures { text: Some((vectors.clone(), 384)), side: Some(side.clone()) };

    let started = Instant::now();
    let params = FusionParams {
        epochs: options.epochs,
        max_len: 50,
        negatives: 256,
        ..FusionParams::default()
    };
    let fusion = Fusion::fit(&data, None, &features, params)?;
    let per_epoch = started.elapsed() / options.epochs.max(1) as u32;
    let started = Instant::now();
    let als = Als::fit(&data, AlsParams::default());
    let als_fit = started.elapsed();
    drop(als);

    let popular = Popularity::fit(&data, PopularityParams { half_life_days: None });
    let knn = ItemKnn::fit(&data, ItemKnnParams { neighbours: 100, shrink: 10.0 });
    let graph = Graph::fit(&data, side.clone(), GraphParams { half_life: Some(20.0) });
    let content = Content::fit(&data, vectors, 384, ContentParams { half_life: Some(20.0) });
    let server = Server::new(&fusion, &popular, &data)
        .with_graph(&graph)
        .with_neighbours(&knn)
        .with_content(&content);

    // The shop's filters: one product in ten out of stock (the importer's synthetic
    // stock), and every other call kept to the largest category.
    let in_stock: Vec<bool> =
        data.ids().items.iter().map(|sku| shopgraph_import::synthetic::stock(sku) > 0).collect();
    let category = largest_category(&side);
    let in_category: Vec<bool> =
        side.links.iter().map(|l| l.iter().any(|&(r, e)| (r, e) == category)).collect();
    let anywhere = |i: u32| in_stock[i as usize];
    let in_it = |i: u32| in_stock[i as usize] && in_category[i as usize];
    let filters = [
        Filters { exclude_seen: true, allowed: &anywhere },
        Filters { exclude_seen: true, allowed: &in_it },
    ];

    let n_users = data.n_users() as u64;
    let mut state = 2026u64;
    let mut next = move |n: u64| {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut users = Vec::new();
    let mut sessions = Vec::new();
    // Results explained by a shared graph entity, by shoppers who chose both, by nothing.
    let mut kinds = [0usize; 3];
    for k in 0..options.samples {
        let u = next(n_users) as u32;
        let filters = &filters[k % 2];
        let t = Instant::now();
        let (list, _) = server.top_n(Shopper::User(u), 20, filters)?;
        let _words: Vec<String> = list.iter().map(|r| server.words(&r.because, &[])).collect();
        users.push(t.elapsed());
        for r in &list {
            kinds[match r.because {
                Explanation::Shared { .. } => 0,
                Explanation::AlsoChosen { .. } => 1,
                _ => 2,
            }] += 1;
        }

        // A guest who looked at five of this user's items.
        let history = data.user(u);
        let session: Vec<u32> = history.iter().rev().take(5).rev().map(|r| r.item).collect();
        let t = Instant::now();
        let (list, _) = server.top_n(Shopper::Session(&session), 20, filters)?;
        let _words: Vec<String> = list.iter().map(|r| server.words(&r.because, &[])).collect();
        sessions.push(t.elapsed());
    }
    let line = |name: &str, samples: Vec<Duration>| {
        let (p50, p99) = p50_p99(samples);
        format!("  {name:<44} p50 {:>10}  p99 {:>10}\n", ms(p50), ms(p99))
    };
    let mut out = format!(
        "\n{}: {} users, {} items; top-20 with filters (stock; every other call one category) and explanations, {} calls each\n",
        options.dataset,
        data.n_users(),
        data.n_items(),
        options.samples
    );
    out.push_str(&line("known user (fusion profile)", users));
    out.push_str(&line("guest session of 5 items (network run)", sessions));
    let results = kinds.iter().sum::<usize>().max(1) as f64;
    out.push_str(&format!(
        "  known users' results explained by a shared graph entity {:.1}%, by shoppers who chose both {:.1}%, by nothing {:.1}%\n",
        100.0 * kinds[0] as f64 / results,
        100.0 * kinds[1] as f64 / results,
        100.0 * kinds[2] as f64 / results
    ));
    out.push_str(&format!(
        "  training: fusion {:.1} s an epoch ({} epochs), ALS (64 factors, 15 iterations) {:.1} s\n",
        per_epoch.as_secs_f64(),
        options.epochs,
        als_fit.as_secs_f64()
    ));
    report(out.trim_end());
    Ok(())
}

/// The (relation, entity) of the category with the most items, the root aside.
fn largest_category(side: &shopgraph_recommend::side::ItemSide) -> (u32, u32) {
    let mut counts = std::collections::HashMap::new();
    for links in &side.links {
        for &(r, e) in links {
            if side.relations[r as usize] == "category" {
                *counts.entry((r, e)).or_insert(0usize) += 1;
            }
        }
    }
    let n = side.n_items();
    counts
        .into_iter()
        .filter(|&(_, c)| c < n)
        .max_by_key(|&((r, e), c)| (c, std::cmp::Reverse((r, e))))
        .map_or((u32::MAX, u32::MAX), |(k, _)| k)
}
