//! `shopgraph recommend`: the storefront's call on a public data set, from the terminal.
//!
//! EASE (the strongest of the generators that fit in seconds) ranks; the knowledge
//! graph and item-kNN explain; the content generator serves stated interests. A shopper
//! is a user of the data set (`--user`), a guest's session (`--session`), or interests
//! alone (`--interests`); anyone else gets the popular items, and is told so.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use shopgraph_embed::Encoder;
use shopgraph_recommend::model::{
    Content, ContentParams, Ease, EaseParams, Graph, GraphParams, ItemKnn, ItemKnnParams,
    Popularity, PopularityParams,
};
use shopgraph_recommend::serve::{Filters, Server, Shopper, Source};

use crate::report;

#[derive(Args)]
pub(crate) struct RecommendArgs {
    /// The data set: ml-100k, ml-1m, bookcrossing.
    #[arg(long, default_value = "ml-100k", value_parser = ["ml-100k", "ml-1m", "bookcrossing"])]
    dataset: String,
    #[arg(long, env = "SHOPGRAPH_DATA_DIR", default_value = crate::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[arg(long, env = "SHOPGRAPH_MODEL_DIR", default_value = ".cache/models/all-MiniLM-L6-v2")]
    model_dir: PathBuf,
    /// Where the item vectors are cached.
    #[arg(long, default_value = ".cache/splits")]
    cache_dir: PathBuf,
    /// A user of the data set (its id as imported, such as `ml-100k:1`).
    #[arg(long, group = "who")]
    user: Option<String>,
    /// A guest's items, oldest first, comma-separated.
    #[arg(long, group = "who", value_delimiter = ',')]
    session: Vec<String>,
    /// Stated interests, comma-separated, each optionally `subject=weight`.
    #[arg(long, group = "who", value_delimiter = ',')]
    interests: Vec<String>,
    /// How many results (1 to 100).
    #[arg(short, default_value_t = 10)]
    n: usize,
    /// Only items in this category (its key, such as `movies/comedy`).
    #[arg(long)]
    category: Option<String>,
    /// Show items the shopper already interacted with, too.
    #[arg(long)]
    keep_seen: bool,
}

pub(crate) fn run(args: &RecommendArgs) -> anyhow::Result<()> {
    // Input first: a typo in an interest should not wait for the data to load.
    let mut parsed = Vec::new();
    for interest in &args.interests {
        let (subject, weight) = match interest.rsplit_once('=') {
            Some((s, w)) => {
                let w: f32 = w.trim().parse().with_context(|| {
                    format!("interest {interest:?}: the weight after = is not a number")
                })?;
                anyhow::ensure!(
                    w.is_finite() && w > 0.0,
                    "interest {interest:?}: the weight must be positive"
                );
                (s.trim(), w)
            }
            None => (interest.trim(), 1.0),
        };
        anyhow::ensure!(!subject.is_empty(), "an interest is empty");
        parsed.push((subject.to_owned(), weight));
    }
    let (data, side) = crate::eval::load(&args.dataset, &args.data_dir)?;
    let popular = Popularity::fit(&data, PopularityParams { half_life_days: None });
    let knn = ItemKnn::fit(&data, ItemKnnParams { neighbours: 100, shrink: 10.0 });
    let graph = Graph::fit(&data, side.clone(), GraphParams { half_life: Some(20.0) });
    anyhow::ensure!(
        data.n_items() <= 20_000,
        "{} has {} items; EASE here holds items × items",
        args.dataset,
        data.n_items()
    );
    let ease = Ease::fit(&data, EaseParams { lambda: 300.0 });

    let mut interest_vectors = Vec::new();
    let mut interest_names = Vec::new();
    let content = if args.interests.is_empty() {
        None
    } else {
        let dir = args.cache_dir.join(format!("{}-serve", args.dataset));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let vectors = Arc::new(crate::eval::item_vectors(&side, &args.model_dir, &dir)?);
        let encoder = Encoder::load(&args.model_dir)
            .with_context(|| format!("loading the encoder from {}", args.model_dir.display()))?;
        for (subject, weight) in parsed {
            interest_vectors.push((encoder.encode(&[subject.as_str()])?, weight));
            interest_names.push(subject);
        }
        Some(Content::fit(&data, vectors, 384, ContentParams { half_life: None }))
    };
    let mut server = Server::new(&ease, &popular, &data).with_graph(&graph).with_neighbours(&knn);
    if let Some(content) = &content {
        server = server.with_content(content);
    }

    let session: Vec<u32> =
        args.session.iter().map(|s| server.item(s.trim())).collect::<Result<_, _>>()?;
    let interests: Vec<(&[f32], f32)> =
        interest_vectors.iter().map(|(v, w)| (v.as_slice(), *w)).collect();
    let shopper = if let Some(user) = &args.user {
        match server.user(user) {
            Some(u) => Shopper::User(u),
            None => {
                tracing::warn!(
                    "{user:?} is not a user of {}: showing what is popular",
                    args.dataset
                );
                Shopper::Stranger
            }
        }
    } else if !session.is_empty() {
        Shopper::Session(&session)
    } else if !interests.is_empty() {
        Shopper::Interests(&interests)
    } else {
        Shopper::Stranger
    };

    let category = match &args.category {
        Some(key) => {
            let found = side.entities.iter().enumerate().find(|(e, entity)| {
                entity.key == *key
                    && side.links.iter().any(|l| {
                        l.iter().any(|&(r, x)| {
                            x as usize == *e && side.relations[r as usize] == "category"
                        })
                    })
            });
            let (e, _) =
                found.with_context(|| format!("no category {key:?} in {}", args.dataset))?;
            Some(e as u32)
        }
        None => None,
    };
    let allowed =
        |i: u32| category.is_none_or(|c| side.links[i as usize].iter().any(|&(_, e)| e == c));
    let filters = Filters { exclude_seen: !args.keep_seen, allowed: &allowed };
    let (list, source) = server.top_n(shopper, args.n, &filters)?;
    let names: Vec<&str> = interest_names.iter().map(String::as_str).collect();
    let mut out = format!(
        "{} for {}:\n",
        match source {
            Source::Personal => "personal",
            Source::Session => "from this session",
            Source::Interests => "from stated interests",
            Source::Fallback => "popular (nothing known about the shopper)",
        },
        args.user.as_deref().unwrap_or("a guest")
    );
    for (rank, r) in list.iter().enumerate() {
        out.push_str(&format!(
            "{:>3}. {}  ({})\n     {}\n",
            rank + 1,
            side.titles[r.item as usize],
            data.ids().items[r.item as usize],
            server.words(&r.because, &names)
        ));
    }
    report(out.trim_end());
    Ok(())
}
