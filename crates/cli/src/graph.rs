//! `shopgraph graph …`: the knowledge graph, built from the store, kept in a snapshot
//! beside it, and queried from the command line.
//!
//! Loading: a snapshot whose stamp matches the store (same database, same catalog
//! fingerprint) is loaded and caught up with the events appended since it was written,
//! in place. A snapshot that is missing, stale, corrupt or of another format is rebuilt
//! from the store and written anew (atomically: a crash never leaves half a file).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use shopgraph_core::product::MakerKind;
use shopgraph_core::{InterestId, ProductId, UserId};
use shopgraph_graph::query::Step;
use shopgraph_graph::{KnowledgeGraph, Limits, NodeKey, Relation, snapshot};
use shopgraph_store::{Store, SyncMarks};

use crate::{DbArgs, report};

#[derive(Args, Clone)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    pub(crate) db: DbArgs,
    /// Where the snapshot lives; by default beside the fetched data, one per database.
    #[arg(long, env = "SHOPGRAPH_GRAPH_SNAPSHOT")]
    pub(crate) snapshot: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum GraphCommand {
    /// Rebuild the graph from the store and write its snapshot.
    Build(GraphArgs),
    /// Node and edge counts.
    Stats(GraphArgs),
    /// A node's neighbours. NODE: `sku:SKU`, `user:EXTERNAL_ID`, `author:KEY`,
    /// `publisher:KEY`, `category:KEY`, `year:1990s`, `entity:m.0bln8`, ….
    Neighbours {
        #[command(flatten)]
        graph: GraphArgs,
        node: String,
        /// Only edges of this relation (`made-by`, `interacted`, `in-category`, …).
        #[arg(long)]
        relation: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Products like this one, and what they share.
    Similar {
        #[command(flatten)]
        graph: GraphArgs,
        sku: String,
        #[arg(long, default_value_t = 10)]
        k: usize,
    },
    /// Why a product fits a customer, in words, with the paths behind it.
    Explain {
        #[command(flatten)]
        graph: GraphArgs,
        user: String,
        sku: String,
        #[arg(long, default_value_t = 3)]
        k: usize,
    },
    /// Why a product fits a guest's session (or a basket): what it shares with the
    /// products given.
    ExplainSession {
        #[command(flatten)]
        graph: GraphArgs,
        /// The session's products, comma-separated skus.
        #[arg(long, value_delimiter = ',', required = true)]
        products: Vec<String>,
        sku: String,
        #[arg(long, default_value_t = 3)]
        k: usize,
    },
    /// What connects two nodes.
    Connect {
        #[command(flatten)]
        graph: GraphArgs,
        a: String,
        b: String,
        #[arg(long, default_value_t = 3)]
        hops: usize,
        #[arg(long, default_value_t = 5)]
        k: usize,
    },
    /// Customers who bought one product and rated another low.
    BoughtRatedLow {
        #[command(flatten)]
        graph: GraphArgs,
        bought: String,
        rated: String,
        #[arg(long, default_value_t = 4.0)]
        max_rating: f32,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// A customer's interests and where each came from.
    Profile {
        #[command(flatten)]
        graph: GraphArgs,
        user: String,
    },
    /// Check that the snapshot, caught up in place, equals a rebuild from the store.
    Verify(GraphArgs),
}

pub(crate) async fn run(command: GraphCommand) -> anyhow::Result<()> {
    let limits = Limits::default();
    match command {
        GraphCommand::Build(args) => {
            let store = args.db.open().await?;
            let marks = store.sync_marks().await?;
            let started = Instant::now();
            let graph = build(&store).await?;
            let built = started.elapsed();
            save(&graph, &args.snapshot_path(), &stamp_of(&args.identity(), &marks))?;
            report(&format!(
                "built {} nodes and {} edges in {:.1} s; snapshot {}",
                graph.node_count(),
                graph.edge_count(),
                built.as_secs_f64(),
                args.snapshot_path().display()
            ));
        }
        GraphCommand::Stats(args) => {
            let (graph, _) = open(&args).await?;
            let lines: Vec<String> =
                graph.stats().into_iter().map(|(k, v)| format!("{k:<28} {v}")).collect();
            report(&lines.join("\n"));
        }
        GraphCommand::Neighbours { graph: args, node, relation, limit } => {
            let (graph, store) = open(&args).await?;
            let relation = match relation {
                Some(name) => Some(
                    Relation::parse(&name).with_context(|| format!("unknown relation {name:?}"))?,
                ),
                None => None,
            };
            let key = node_key(&store, &graph, &node).await?;
            for n in graph.neighbours(&key, relation, limit, &limits)? {
                let arrow = if n.forward { "->" } else { "<-" };
                report(&format!(
                    "{arrow} {:<16} {:<40} {} ({:.1})",
                    n.relation_name,
                    n.key.to_string(),
                    n.label,
                    n.weight
                ));
            }
        }
        GraphCommand::Similar { graph: args, sku, k } => {
            let (graph, _) = open(&args).await?;
            let product = product_id(&graph, &sku)?;
            for s in graph.similar_products(product, k, &limits)? {
                report(&format!("{:>6.2}  {}  (shares {})", s.score, s.title, s.shared.join(", ")));
            }
        }
        GraphCommand::Explain { graph: args, user, sku, k } => {
            let (graph, store) = open(&args).await?;
            let user = user_id(&store, &user).await?;
            let found = graph.explain(user, product_id(&graph, &sku)?, k, &limits)?;
            if found.is_empty() {
                report("the graph holds nothing that links them");
            }
            for e in found {
                report(&format!("{}\n    {}", e.text, render_path(&graph, &e.path)));
            }
        }
        GraphCommand::ExplainSession { graph: args, products, sku, k } => {
            let (graph, _) = open(&args).await?;
            let session = products
                .iter()
                .map(|p| product_id(&graph, p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let found =
                graph.explain_for_products(&session, product_id(&graph, &sku)?, k, &limits)?;
            if found.is_empty() {
                report("the graph holds nothing that links them");
            }
            for e in found {
                report(&format!("{}\n    {}", e.text, render_path(&graph, &e.path)));
            }
        }
        GraphCommand::Connect { graph: args, a, b, hops, k } => {
            let (graph, store) = open(&args).await?;
            let (a, b) = (node_key(&store, &graph, &a).await?, node_key(&store, &graph, &b).await?);
            let paths = graph.connect(&a, &b, hops, k, &limits)?;
            if paths.is_empty() {
                report(&format!("nothing connects them within {hops} hops"));
            }
            for path in paths {
                report(&render_path(&graph, &path));
            }
        }
        GraphCommand::BoughtRatedLow { graph: args, bought, rated, max_rating, limit } => {
            let (graph, store) = open(&args).await?;
            let users = graph.bought_and_rated_low(
                product_id(&graph, &bought)?,
                product_id(&graph, &rated)?,
                max_rating,
                limit,
                &limits,
            )?;
            for user in users {
                let external = store.user(user).await?.map(|u| u.external_id).unwrap_or_default();
                report(&external);
            }
        }
        GraphCommand::Profile { graph: args, user } => {
            let (graph, store) = open(&args).await?;
            for i in graph.profile(user_id(&store, &user).await?)? {
                report(&format!(
                    "{:<8} {:<40} {:.2}  from {} {}",
                    if i.polarity == shopgraph_core::interest::Polarity::Likes {
                        "likes"
                    } else {
                        "dislikes"
                    },
                    i.label,
                    i.weight,
                    i.source.kind(),
                    i.source.reference().unwrap_or_default()
                ));
            }
        }
        GraphCommand::Verify(args) => {
            let (live, store) = open(&args).await?;
            let rebuilt = build(&store).await?;
            if live.canonical() != rebuilt.canonical() {
                bail!("the graph caught up in place differs from a rebuild from the store");
            }
            report(&format!(
                "in place equals rebuild: {} nodes, {} edges",
                live.node_count(),
                live.edge_count()
            ));
        }
    }
    Ok(())
}

impl GraphArgs {
    /// Which database a snapshot belongs to.
    fn identity(&self) -> String {
        format!("{}|{}", self.db.url, self.db.pg_schema.as_deref().unwrap_or(""))
    }

    pub(crate) fn snapshot_path(&self) -> PathBuf {
        self.snapshot.clone().unwrap_or_else(|| {
            PathBuf::from(format!(".cache/graph-{:016x}.snapshot", fnv(self.identity().as_bytes())))
        })
    }
}

/// Opens the store and the graph: the snapshot brought up to date in place, or a
/// rebuild when there is no usable snapshot or something was deleted since.
pub(crate) async fn open(args: &GraphArgs) -> anyhow::Result<(KnowledgeGraph, Store)> {
    let store = args.db.open().await?;
    let marks = store.sync_marks().await?;
    let identity = args.identity();
    let path = args.snapshot_path();
    let updated = match load(&path) {
        Ok((mut graph, stamp)) => {
            match update_in_place(&store, &mut graph, &identity, &stamp, &marks).await? {
                Ok(applied) => {
                    if applied > 0 {
                        tracing::info!(applied, "brought the graph snapshot up to date in place");
                        save(&graph, &path, &stamp_of(&identity, &marks))?;
                    }
                    Some(graph)
                }
                Err(why) => {
                    tracing::warn!("rebuilding the graph from the store: {why}");
                    None
                }
            }
        }
        Err(_) if !path.exists() => {
            tracing::info!(
                "no graph snapshot yet at {}: building it from the store",
                path.display()
            );
            None
        }
        Err(why) => {
            tracing::warn!("rebuilding the graph from the store: {why:#}");
            None
        }
    };
    let graph = match updated {
        Some(graph) => graph,
        None => {
            let graph = build(&store).await?;
            save(&graph, &path, &stamp_of(&identity, &marks))?;
            graph
        }
    };
    Ok((graph, store))
}

/// The snapshot's stamp: which database, and the store's marks when it was written.
fn stamp_of(identity: &str, marks: &SyncMarks) -> String {
    let numbers: Vec<String> = marks.to_array().iter().map(i64::to_string).collect();
    format!("{identity}\n{}", numbers.join(" "))
}

fn parse_marks(text: &str) -> Option<SyncMarks> {
    let numbers: Vec<i64> = text.split(' ').map(str::parse).collect::<Result<_, _>>().ok()?;
    Some(SyncMarks::from_array(numbers.try_into().ok()?))
}

/// Applies what changed in the store since the snapshot's marks: categories, new and
/// changed products and users, new interests, new events. Returns how many records it
/// applied, or why the snapshot cannot be brought up to date (then the caller rebuilds).
async fn update_in_place(
    store: &Store,
    graph: &mut KnowledgeGraph,
    identity: &str,
    stamp: &str,
    marks: &SyncMarks,
) -> anyhow::Result<Result<usize, String>> {
    let Some((written_for, old)) = stamp.split_once('\n') else {
        return Ok(Err("the snapshot has no marks".into()));
    };
    if written_for != identity {
        return Ok(Err(format!("the snapshot was written for {written_for:?}")));
    }
    let Some(old) = parse_marks(old) else {
        return Ok(Err("the snapshot's marks are unreadable".into()));
    };
    if (old.triples, old.entity_links) != (marks.triples, marks.entity_links) {
        return Ok(Err("the imported knowledge graph changed".into()));
    }
    // A clustering run replaces a whole version of segments: rebuild.
    if (old.segment_members, old.last_segment) != (marks.segment_members, marks.last_segment) {
        return Ok(Err("the segments changed".into()));
    }
    if old.last_rule != marks.last_rule {
        return Ok(Err("the association rules changed".into()));
    }
    // Categories are few and a rename changes no count: apply them all, every time.
    for category in store.categories().await? {
        graph.upsert_category(&category);
    }
    let applied = apply_changes(store, graph, &old).await?;
    // Deletions leave no trace to follow: counts that disagree mean something went.
    let counts = graph.counts();
    if (counts.products, counts.users, counts.interests)
        != (marks.products, marks.users, marks.interests)
    {
        return Ok(Err("products, users or interests were deleted since the snapshot".into()));
    }
    Ok(Ok(applied))
}

fn load(path: &Path) -> anyhow::Result<(KnowledgeGraph, String)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("no snapshot at {}", path.display()))?;
    snapshot::decode(&bytes).with_context(|| format!("snapshot {}", path.display()))
}

pub(crate) fn save(graph: &KnowledgeGraph, path: &Path, stamp: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("snapshot.tmp");
    std::fs::write(&tmp, snapshot::encode(graph, stamp))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Builds the graph from everything in the store.
pub(crate) async fn build(store: &Store) -> anyhow::Result<KnowledgeGraph> {
    let mut graph = KnowledgeGraph::default();
    let bar = ProgressBar::new_spinner().with_message("building the knowledge graph");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    for category in store.categories().await? {
        graph.upsert_category(&category);
    }
    for kind in [MakerKind::Author, MakerKind::Brand, MakerKind::Publisher] {
        for maker in store.makers(kind).await? {
            graph.upsert_maker(&maker);
        }
    }
    // A build is an update from nothing.
    apply_changes(store, &mut graph, &SyncMarks::default()).await?;
    let mut after = None;
    loop {
        let page = store.triples_page(after.as_ref(), PAGE).await?;
        let Some(last) = page.last().cloned() else { break };
        for triple in &page {
            graph.add_triple(triple);
        }
        after = Some(last);
    }
    for (product, entity) in store.product_entity_links().await? {
        graph.link_entity(product, &entity);
    }
    if let Some(version) = store.latest_segment_version().await? {
        for segment in store.segments(version).await? {
            let members = store.segment_members(segment.id).await?;
            graph.upsert_segment(segment.id, &segment.description, &members);
        }
    }
    if let Some(version) = store.latest_rules_version().await? {
        graph.set_rules(&store.rules(version).await?);
    }
    bar.finish_and_clear();
    Ok(graph)
}

/// Rows read from the store at a time.
const PAGE: u32 = 20_000;

/// Applies the products and users added or changed since `since`, the interests added
/// after it, and the events after the graph's cursor. Returns how many were news (rows
/// of the last millisecond of `since` are applied again, as they may have changed after
/// the marks were read, but do not count).
async fn apply_changes(
    store: &Store,
    graph: &mut KnowledgeGraph,
    since: &SyncMarks,
) -> anyhow::Result<usize> {
    let mut applied = 0;
    let mut after = ProductId(0);
    loop {
        let page = store.products_changed_since(since.products_updated_at, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for product in &page {
            graph.upsert_product(product);
        }
        applied += page.iter().filter(|p| p.updated_at > since.products_updated_at).count();
    }
    let mut after = UserId(0);
    loop {
        let page = store.users_changed_since(since.users_updated_at, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for user in &page {
            graph.upsert_user(user);
        }
        applied += page.iter().filter(|u| u.updated_at > since.users_updated_at).count();
    }
    let mut after = InterestId(since.last_interest);
    loop {
        let page = store.interests_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for interest in &page {
            graph.add_interest(interest);
        }
        applied += page.len();
    }
    Ok(applied + catch_up(store, graph).await?)
}

/// Applies every event after the graph's cursor. Returns how many it read.
pub(crate) async fn catch_up(store: &Store, graph: &mut KnowledgeGraph) -> anyhow::Result<usize> {
    let mut applied = 0;
    loop {
        let page = store.events_after(graph.last_seq(), 50_000).await?;
        if page.is_empty() {
            return Ok(applied);
        }
        applied += page.len();
        for event in &page {
            graph.apply_event(event);
        }
    }
}

/// `user:1 -interacted-> product:3 -made-by-> brand:lumix <-made-by- product:4`: each
/// edge drawn in the direction it points, imported relations by their own names.
fn render_path(graph: &KnowledgeGraph, path: &[Step]) -> String {
    let mut text = path.first().map(|s| s.from.to_string()).unwrap_or_default();
    for step in path {
        let name = graph.relation_name(step.relation);
        if step.forward {
            text.push_str(&format!(" -{name}-> {}", step.to));
        } else {
            text.push_str(&format!(" <-{name}- {}", step.to));
        }
    }
    text
}

fn product_id(graph: &KnowledgeGraph, sku: &str) -> anyhow::Result<ProductId> {
    graph.product_by_sku(sku).with_context(|| format!("no product with sku {sku:?}"))
}

async fn user_id(store: &Store, external_id: &str) -> anyhow::Result<UserId> {
    Ok(store
        .user_by_external_id(external_id)
        .await?
        .with_context(|| format!("no user with id {external_id:?}"))?
        .id)
}

/// `sku:SKU` and `user:EXTERNAL_ID` are resolved here; the rest is [`NodeKey::parse`].
async fn node_key(store: &Store, graph: &KnowledgeGraph, text: &str) -> anyhow::Result<NodeKey> {
    if let Some(sku) = text.strip_prefix("sku:") {
        return Ok(NodeKey::Product(product_id(graph, sku)?));
    }
    if let Some(user) = text.strip_prefix("user:") {
        return Ok(NodeKey::User(user_id(store, user).await?));
    }
    NodeKey::parse(text).with_context(|| {
        format!("{text:?} is not a node: write KIND:NAME (sku:…, user:…, author:…, category:…)")
    })
}

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
