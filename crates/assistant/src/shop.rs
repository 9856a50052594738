//! The assistant's tools: every fact an answer may state comes from here, read from
//! the store, the search index and the recommender, never from the language model.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use shopgraph_core::event::EventKind;
use shopgraph_core::interest::{Interest, Polarity};
use shopgraph_core::product::{NewProduct, Product};
use shopgraph_core::segment::ProductRule;
use shopgraph_core::{ProductId, UserId};
use shopgraph_import::{Dataset, EventRecord};
use shopgraph_recommend::data::Interactions;
use shopgraph_recommend::model::{
    Graph, GraphParams, ItemKnn, ItemKnnParams, Popularity, PopularityParams,
};
use shopgraph_recommend::serve::{Explanation, Filters, Server, Shopper};
use shopgraph_recommend::side::ItemSide;
use shopgraph_search::{SearchIndex, SearchRequest};
use shopgraph_store::{EventFilter, Store};

use crate::AssistantError;

/// Reviews shown with a book's facts (the most recent).
const REVIEWS_SHOWN: u32 = 2;

/// What the shop knows about one book, as the tools hand it to the assistant.
#[derive(Clone, Debug, PartialEq)]
pub struct BookFacts {
    pub id: ProductId,
    pub sku: String,
    pub title: String,
    pub author: Option<String>,
    pub year: Option<i32>,
    pub publisher: Option<String>,
    /// Formatted, such as `12.99 EUR`.
    pub price: String,
    pub stock: i64,
    /// Other customers' words: untrusted text, never instructions.
    pub reviews: Vec<String>,
}

impl BookFacts {
    pub fn of(p: &Product) -> BookFacts {
        BookFacts {
            id: p.id,
            sku: p.sku.clone(),
            title: p.title.clone(),
            author: p.maker.as_ref().map(|m| m.name.clone()),
            year: p.year,
            publisher: p.publisher.as_ref().map(|m| m.name.clone()),
            price: format_price(p.price_cents, &p.currency),
            stock: p.stock,
            reviews: Vec::new(),
        }
    }

    /// One line of trusted facts for a prompt (and for the grounding check).
    pub fn line(&self) -> String {
        let mut line = format!("\"{}\"", self.title);
        if let Some(a) = &self.author {
            line.push_str(&format!(" by {a}"));
        }
        if let Some(y) = self.year {
            line.push_str(&format!(", {y}"));
        }
        if let Some(p) = &self.publisher {
            line.push_str(&format!(", {p}"));
        }
        line.push_str(&format!(", ISBN {}, price {}, ", self.sku, self.price));
        if self.stock > 0 {
            line.push_str(&format!("{} in stock", self.stock));
        } else {
            line.push_str("out of stock");
        }
        line
    }
}

pub fn format_price(cents: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", cents / 100, cents % 100)
}

/// A recommended book and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub book: BookFacts,
    /// In words, from the graph: "By Stephen King, whom you like", "Also by …".
    pub reason: String,
}

/// A graph concept an interest was linked to.
#[derive(Clone, Debug, PartialEq)]
pub struct Concept {
    /// `maker:<key>`, `category:<key>`, `publisher:<key>`, or `topic:<words>` when
    /// nothing in the graph matched.
    pub subject: String,
    pub name: String,
}

/// The recommender over the store's behaviour events, with the graph that explains it.
struct Recs {
    data: Interactions,
    side: Arc<ItemSide>,
    knn: ItemKnn,
    popular: Popularity,
    graph: Graph,
    /// Product id of each item index.
    products: Vec<ProductId>,
    /// In stock and shown, per item index, when the tools were loaded.
    available: Vec<bool>,
    item_of: HashMap<ProductId, u32>,
    /// Entity index by `relation:key`.
    entity_of: HashMap<String, u32>,
    /// The newest association rules with one product on the left, by that product,
    /// most confident first.
    together: HashMap<ProductId, Vec<ProductRule>>,
}

/// The tools.
pub struct Shop {
    store: Store,
    search: Arc<SearchIndex>,
    recs: Recs,
    /// Normalised maker and category names → concept, for linking interests.
    names: HashMap<String, Concept>,
    /// Products read for lists, so that a list costs no query per book; replaced when
    /// a product changes through [`Shop::product_changed`].
    products: RwLock<HashMap<ProductId, Arc<Product>>>,
}

/// Products the list cache holds before it starts over.
const PRODUCT_CACHE: usize = 100_000;

impl Shop {
    /// Reads the catalog and the behaviour events, and fits the recommender (item-kNN
    /// over co-interactions, popularity for strangers, the graph for explanations).
    /// `search` must index the same store.
    pub async fn load(store: Store, search: Arc<SearchIndex>) -> Result<Shop, AssistantError> {
        let Exported { dataset, sku_of, sellable, .. } = export(&store, |kind| {
            matches!(
                kind,
                EventKind::Rating | EventKind::Purchase | EventKind::View | EventKind::AddToCart
            )
        })
        .await?;
        let data = Interactions::from_dataset(&dataset, false);
        let side = Arc::new(ItemSide::from_dataset(&dataset, data.ids()));
        let knn = ItemKnn::fit(&data, ItemKnnParams { neighbours: 100, shrink: 10.0 });
        let popular = Popularity::fit(&data, PopularityParams { half_life_days: None });
        let graph = Graph::fit(&data, Arc::clone(&side), GraphParams { half_life: None });
        let id_of_sku: HashMap<&str, ProductId> =
            sku_of.iter().map(|(id, sku)| (sku.as_str(), *id)).collect();
        let products: Vec<ProductId> =
            data.ids().items.iter().map(|sku| id_of_sku[sku.as_str()]).collect();
        let item_of = products.iter().enumerate().map(|(i, &p)| (p, i as u32)).collect();
        // Stock-aware: what is about to run out is sold, but not pushed.
        let short = running_out(&dataset);
        let available = products
            .iter()
            .map(|p| sellable.contains(p) && !short.contains(sku_of[p].as_str()))
            .collect();
        let mut together: HashMap<ProductId, Vec<ProductRule>> = HashMap::new();
        if let Some(version) = store.latest_rules_version().await? {
            for rule in store.rules(version).await? {
                if let [from] = rule.antecedent[..] {
                    together.entry(from).or_default().push(rule);
                }
            }
        }
        for list in together.values_mut() {
            list.sort_by(|a, b| {
                b.confidence.total_cmp(&a.confidence).then(b.lift.total_cmp(&a.lift))
            });
        }
        let mut entity_of = HashMap::new();
        for links in &side.links {
            for &(r, e) in links {
                let key =
                    format!("{}:{}", side.relations[r as usize], side.entities[e as usize].key);
                entity_of.insert(key, e);
            }
        }

        let mut names = HashMap::new();
        for p in &dataset.products {
            for (relation, maker) in [("maker", &p.maker), ("publisher", &p.publisher)] {
                if let Some(m) = maker {
                    names.entry(normalise(&m.name)).or_insert_with(|| Concept {
                        subject: format!("{relation}:{}", m.key),
                        name: m.name.clone(),
                    });
                }
            }
        }
        for c in &dataset.categories {
            names.insert(
                normalise(&c.name),
                Concept { subject: format!("category:{}", c.key), name: c.name.clone() },
            );
        }
        tracing::info!(
            products = dataset.products.len(),
            interactions = data.len(),
            concepts = names.len(),
            "assistant tools ready"
        );
        let recs = Recs {
            data,
            side,
            knn,
            popular,
            graph,
            products,
            available,
            item_of,
            entity_of,
            together,
        };
        Ok(Shop { store, search, recs, names, products: RwLock::default() })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Books matching what a shopper typed: an ISBN (10 or 13 digits) exactly, else
    /// the search index's best `n`.
    pub async fn find(&self, text: &str, n: usize) -> Result<Vec<BookFacts>, AssistantError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if let Some(isbn) = shopgraph_import::clean::normalize_isbn(word)
                && let Some(p) = self.store.product_by_sku(&isbn).await?
            {
                return Ok(vec![self.facts(&p).await?]);
            }
        }
        let mut request = SearchRequest::new(text);
        request.limit = n;
        let results = match self.search.search(&request) {
            Ok(results) => results,
            // Words the index cannot read as a query (only punctuation, say) find nothing.
            Err(e) if e.is_client_error() => return Ok(Vec::new()),
            Err(e) => return Err(AssistantError::Tool(e.to_string())),
        };
        let mut out = Vec::new();
        for hit in results.hits {
            if let Some(p) = self.store.product(hit.id).await? {
                out.push(self.facts(&p).await?);
            }
        }
        Ok(out)
    }

    /// A book's facts with its most recent reviews.
    pub async fn facts(&self, p: &Product) -> Result<BookFacts, AssistantError> {
        let mut facts = BookFacts::of(p);
        let filter = EventFilter {
            product: Some(p.id),
            kind: Some(EventKind::Review),
            ..EventFilter::default()
        };
        let reviews = self.store.events(&filter).await?;
        for e in reviews.iter().rev().take(REVIEWS_SHOWN as usize) {
            if let Some(text) = e.payload.as_deref().and_then(review_text) {
                facts.reviews.push(text);
            }
        }
        Ok(facts)
    }

    /// The graph concept `words` name (an author, publisher or category), or a free
    /// topic.
    pub fn link(&self, words: &str) -> Concept {
        let key = normalise(words);
        if let Some(c) = self.names.get(&key) {
            return c.clone();
        }
        Concept { subject: format!("topic:{key}"), name: words.trim().to_owned() }
    }

    /// `n` books for `user` (their history, if the recommender knows them) bent by
    /// their interests: books linked in the graph to a liked concept, or found by a
    /// liked topic, move up with the interest as their reason; books linked to a
    /// disliked one are left out. A user with neither gets the popular books.
    pub async fn recommend(
        &self,
        user: UserId,
        interests: &[Interest],
        n: usize,
    ) -> Result<Vec<Pick>, AssistantError> {
        match self.store.user(user).await? {
            Some(u) => self.recommend_known(&u.external_id, interests, n).await,
            None => self.rank(Shopper::Stranger, interests, n).await,
        }
    }

    /// [`Shop::recommend`] for a user the caller has already read: no lookup of the user.
    pub async fn recommend_known(
        &self,
        external_id: &str,
        interests: &[Interest],
        n: usize,
    ) -> Result<Vec<Pick>, AssistantError> {
        let known = self.recs.data.ids().user(external_id);
        self.rank(known.map_or(Shopper::Stranger, Shopper::User), interests, n).await
    }

    /// `n` of the books that sell most, ordered by the shopper's interests: an
    /// experiment's baseline against [`Shop::recommend_known`].
    pub async fn recommend_popular(
        &self,
        interests: &[Interest],
        n: usize,
    ) -> Result<Vec<Pick>, AssistantError> {
        self.rank(Shopper::Stranger, interests, n).await
    }

    /// `n` books for a guest's session: the products they looked at or chose in this
    /// visit, oldest first. Products the recommender has no history for are skipped;
    /// with none left, the popular books.
    pub async fn recommend_session(
        &self,
        session: &[ProductId],
        n: usize,
    ) -> Result<Vec<Pick>, AssistantError> {
        let items: Vec<u32> =
            session.iter().filter_map(|p| self.recs.item_of.get(p).copied()).collect();
        let shopper = if items.is_empty() { Shopper::Stranger } else { Shopper::Session(&items) };
        self.rank(shopper, &[], n).await
    }

    /// Books chosen by the same shoppers as `product` ("frequently bought together"),
    /// most similar first; empty for a product with no history.
    pub async fn together(
        &self,
        product: ProductId,
        n: usize,
    ) -> Result<Vec<Pick>, AssistantError> {
        let r = &self.recs;
        let mut picks: Vec<Pick> = Vec::with_capacity(n);
        let title = match self.sellable(product).await? {
            Some(p) => p.title.clone(),
            None => match self.store.product(product).await? {
                Some(p) => p.title,
                None => return Ok(Vec::new()),
            },
        };
        // First the association rules: what shoppers chose in the same sessions.
        for rule in r.together.get(&product).into_iter().flatten() {
            for &other in &rule.consequent {
                if picks.len() >= n || picks.iter().any(|p| p.book.id == other) {
                    continue;
                }
                let pushed = r.item_of.get(&other).is_none_or(|&i| r.available[i as usize]);
                if pushed && let Some(p) = self.sellable(other).await? {
                    let reason = format!(
                        "often chosen together: {:.0}% of the visits that chose {title} chose it too, {:.1} times as often as visits at large",
                        (rule.confidence * 100.0).clamp(1.0, 100.0),
                        rule.lift
                    );
                    picks.push(Pick { book: BookFacts::of(&p), reason });
                }
            }
        }
        // Then the books most chosen by the same shoppers at any time.
        let Some(&item) = r.item_of.get(&product) else { return Ok(picks) };
        let list = {
            let allowed = |i: u32| r.available[i as usize];
            self.server()
                .similar(item, (n + picks.len()).min(shopgraph_recommend::serve::MAX_N), &allowed)
                .map_err(|e| AssistantError::Tool(e.to_string()))?
        };
        for rec in list {
            let id = r.products[rec.item as usize];
            if picks.len() >= n || picks.iter().any(|p| p.book.id == id) {
                continue;
            }
            if let Some(p) = self.sellable(id).await? {
                let reason = format!(
                    "chosen by {:.0}% of the shoppers who chose {title}",
                    (rec.score * 100.0).clamp(1.0, 100.0),
                );
                picks.push(Pick { book: BookFacts::of(&p), reason });
            }
        }
        Ok(picks)
    }

    /// Products that rules say go with `product` and that are not about to run out:
    /// for "people who bought this also…" in a conversation.
    pub async fn also_bought(
        &self,
        product: ProductId,
        n: usize,
    ) -> Result<Vec<Pick>, AssistantError> {
        if !self.recs.together.contains_key(&product) {
            return Ok(Vec::new());
        }
        let mut picks = self.together(product, n).await?;
        picks.retain(|p| p.reason.starts_with("often chosen together"));
        Ok(picks)
    }

    fn server(&self) -> Server<'_> {
        let r = &self.recs;
        Server::new(&r.knn, &r.popular, &r.data).with_graph(&r.graph).with_neighbours(&r.knn)
    }

    /// The product, from the cache or the store, when it is in stock and shown.
    pub async fn sellable(&self, id: ProductId) -> Result<Option<Arc<Product>>, AssistantError> {
        let cached = self.products.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
        let product = match cached {
            Some(p) => p,
            None => {
                let Some(p) = self.store.product(id).await? else { return Ok(None) };
                let p = Arc::new(p);
                let mut cache = self.products.write().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= PRODUCT_CACHE {
                    cache.clear();
                }
                cache.insert(id, Arc::clone(&p));
                p
            }
        };
        Ok((product.stock > 0 && !product.hidden).then_some(product))
    }

    /// Tells the tools that a product changed (price, stock, shown or hidden): the next
    /// list reads it from here rather than from the cache.
    pub fn product_changed(&self, product: &Product) {
        let mut cache = self.products.write().unwrap_or_else(|e| e.into_inner());
        cache.insert(product.id, Arc::new(product.clone()));
    }

    async fn rank(
        &self,
        shopper: Shopper<'_>,
        interests: &[Interest],
        n: usize,
    ) -> Result<Vec<Pick>, AssistantError> {
        let r = &self.recs;
        let n_items = r.products.len();

        // Interest boosts and exclusions per item.
        let mut boost: HashMap<u32, (f32, String)> = HashMap::new();
        let mut banned: HashSet<u32> = HashSet::new();
        for interest in interests {
            let items = self.items_of_subject(&interest.subject).await?;
            let name = interest_name(&interest.subject);
            for item in items {
                match interest.polarity {
                    Polarity::Dislikes => {
                        banned.insert(item);
                    }
                    Polarity::Likes => {
                        let w = interest.weight as f32;
                        let entry = boost.entry(item).or_insert((0.0, String::new()));
                        if w > entry.0 {
                            entry.1 = format!("you said you like {name}");
                        }
                        entry.0 += w;
                    }
                }
            }
        }

        // The model's list and its reasons, computed before any await: the model
        // and the filters are not shared across threads.
        let ranked = {
            let server = self.server();
            // Stock as loaded; each pick is checked again below (cache or store).
            let allowed = |i: u32| r.available[i as usize] && !banned.contains(&i);
            let filters = Filters { exclude_seen: true, allowed: &allowed };
            let max = shopgraph_recommend::serve::MAX_N.min(n_items.max(1));
            // A few more than asked (some may have sold out since the tools were
            // loaded); all of them when interests move books up from further down.
            let want = if boost.is_empty() { (n + n / 2 + 2).min(max) } else { max };
            let (base, _) = server
                .top_n(shopper, want, &filters)
                .map_err(|e| AssistantError::Tool(e.to_string()))?;
            let seen: HashSet<u32> = match shopper {
                Shopper::User(u) => r.data.user(u).iter().map(|x| x.item).collect(),
                Shopper::Session(items) => items.iter().copied().collect(),
                _ => HashSet::new(),
            };
            // Interest-linked books first (by weight, then the model's order), then
            // the model's list.
            let mut ranked: Vec<(f32, usize, u32, String)> = Vec::new();
            let position: HashMap<u32, usize> =
                base.iter().enumerate().map(|(k, rec)| (rec.item, k)).collect();
            for (&item, (w, why)) in &boost {
                if allowed(item) && !seen.contains(&item) {
                    let k = position.get(&item).copied().unwrap_or(usize::MAX);
                    ranked.push((*w, k, item, why.clone()));
                }
            }
            for (k, rec) in base.iter().enumerate() {
                if !boost.contains_key(&rec.item) {
                    let why = match rec.because {
                        Explanation::Popular => "popular with our readers".to_owned(),
                        _ => server.words(&rec.because, &[]),
                    };
                    ranked.push((0.0, k, rec.item, why));
                }
            }
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            ranked
        };
        let mut picks = Vec::new();
        for (_, _, item, reason) in ranked {
            if picks.len() == n {
                break;
            }
            if let Some(p) = self.sellable(r.products[item as usize]).await? {
                picks.push(Pick { book: BookFacts::of(&p), reason });
            }
        }
        Ok(picks)
    }

    /// Items an interest's subject reaches: through its graph entity, or for a topic
    /// through search.
    async fn items_of_subject(&self, subject: &str) -> Result<Vec<u32>, AssistantError> {
        let r = &self.recs;
        if let Some(words) = subject.strip_prefix("topic:") {
            let hits = self.find(words, 20).await?;
            return Ok(hits.iter().filter_map(|b| r.item_of.get(&b.id).copied()).collect());
        }
        // One product (a shopper's "not interested" in it, say).
        if let Some(sku) = subject.strip_prefix("product:") {
            return Ok(r.data.ids().item(sku).into_iter().collect());
        }
        let Some(&entity) = r.entity_of.get(subject) else { return Ok(Vec::new()) };
        Ok((0..r.products.len() as u32)
            .filter(|&i| r.side.links[i as usize].iter().any(|&(_, e)| e == entity))
            .collect())
    }

    /// Whether the recommender has history for this user (their external id).
    pub fn knows_user(&self, external_id: &str) -> bool {
        self.recs.data.ids().user(external_id).is_some()
    }

    /// Whether `id` is a product of the catalog the recommender knows.
    pub fn knows(&self, id: ProductId) -> bool {
        self.recs.item_of.contains_key(&id)
    }
}

/// The words of an interest subject (`maker:stephen king` → `stephen king`).
pub fn interest_name(subject: &str) -> &str {
    subject.split_once(':').map_or(subject, |(_, rest)| rest)
}

/// Lowercase letters and digits, single spaces: how names are compared.
pub fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Weeks of demand a product needs in the latest stretch to be forecast.
const RECENT_WEEKS: i64 = 12;

/// The skus whose stock covers less than the coming week's forecast demand (the
/// insight crate's weekly forecast, whose method is chosen on held-out weeks), among
/// products in stock sold in the last [`RECENT_WEEKS`] weeks of the data. Demand is
/// purchases; where there are none (the public data sets), ratings.
fn running_out(dataset: &Dataset) -> HashSet<&str> {
    use shopgraph_insight::forecast;
    let kind = shopgraph_insight::shopping::demand_kind(dataset.events.iter().map(|e| e.kind));
    let sold = || dataset.events.iter().filter(move |e| e.kind == kind);
    let Some(newest) = sold().map(|e| e.occurred_at).max() else {
        return HashSet::new();
    };
    let since = newest - RECENT_WEEKS * forecast::WEEK_MS;
    let stock: HashMap<&str, i64> =
        dataset.products.iter().map(|p| (p.sku.as_str(), p.stock)).collect();
    let mut recent: Vec<&str> = sold()
        .filter(|e| e.occurred_at >= since)
        .filter_map(|e| e.product.as_deref())
        .filter(|sku| stock.get(sku).is_some_and(|&s| s > 0))
        .collect();
    recent.sort_unstable();
    recent.dedup();
    let slot: HashMap<&str, u32> = recent.iter().enumerate().map(|(i, &s)| (s, i as u32)).collect();
    let observations =
        sold().filter_map(|e| Some((e.occurred_at, *slot.get(e.product.as_deref()?)?)));
    let Ok((_, series)) = forecast::weekly(observations, recent.len()) else {
        return HashSet::new();
    };
    recent
        .into_iter()
        .zip(&series)
        .filter(|(sku, y)| {
            forecast::fit(y, 52).is_ok_and(|m| (stock[*sku] as f64) < m.forecast(1)[0])
        })
        .map(|(sku, _)| sku)
        .collect()
}

/// The store's catalog, shoppers and behaviour as a data set, with the store's ids.
pub struct Exported {
    /// Events keep their idempotency keys; payloads are left out.
    pub dataset: Dataset,
    pub sku_of: HashMap<ProductId, String>,
    /// Products in stock and not hidden.
    pub sellable: HashSet<ProductId>,
    /// Each shopper's external id.
    pub external: HashMap<UserId, String>,
}

/// Reads the whole catalog, every shopper, and the events of the kinds `keep` takes
/// that name a product, in pages.
pub async fn export(
    store: &Store,
    keep: impl Fn(EventKind) -> bool,
) -> Result<Exported, AssistantError> {
    let mut dataset = Dataset { categories: store.categories().await?, ..Dataset::default() };
    let mut sku_of: HashMap<ProductId, String> = HashMap::new();
    let mut sellable: HashSet<ProductId> = HashSet::new();
    let mut after = ProductId(0);
    loop {
        let page = store.products_page(after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for p in page {
            sku_of.insert(p.id, p.sku.clone());
            if p.stock > 0 && !p.hidden {
                sellable.insert(p.id);
            }
            dataset.products.push(new_product(&p));
        }
    }
    let mut external: HashMap<UserId, String> = HashMap::new();
    let mut after_user = UserId(0);
    loop {
        let page = store.users_page(after_user, 5_000).await?;
        let Some(last) = page.last() else { break };
        after_user = last.id;
        for u in page {
            external.insert(u.id, u.external_id);
        }
    }
    let mut seq = 0;
    loop {
        let page = store.events_after(seq, 20_000).await?;
        let Some(last) = page.last() else { break };
        seq = last.seq;
        for e in page {
            let (Some(product), Some(user)) = (e.product, external.get(&e.user)) else {
                continue;
            };
            if keep(e.kind)
                && let Some(sku) = sku_of.get(&product)
            {
                dataset.events.push(EventRecord {
                    key: e.idempotency_key,
                    user: user.clone(),
                    product: Some(sku.clone()),
                    kind: e.kind,
                    value: e.value,
                    payload: None,
                    occurred_at: e.occurred_at,
                });
            }
        }
    }
    Ok(Exported { dataset, sku_of, sellable, external })
}

/// A review event's text: its payload is `{"text": …}` or plain text.
fn review_text(payload: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) => v.get("text").and_then(|t| t.as_str()).map(str::to_owned),
        Err(_) => Some(payload.to_owned()),
    }
}

fn new_product(p: &Product) -> NewProduct {
    NewProduct {
        sku: p.sku.clone(),
        title: p.title.clone(),
        description: None,
        maker: p.maker.clone(),
        publisher: p.publisher.clone(),
        year: p.year,
        image_url: None,
        price_cents: p.price_cents,
        currency: p.currency.clone(),
        stock: p.stock,
        category_keys: p.categories.clone(),
        attributes: None,
        synthetic_fields: Vec::new(),
        source: p.source.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_sells_faster_than_its_stock_is_not_pushed() {
        let product = |sku: &str, stock: i64| NewProduct {
            sku: sku.into(),
            title: sku.into(),
            description: None,
            maker: None,
            publisher: None,
            year: None,
            image_url: None,
            price_cents: 999,
            currency: "EUR".into(),
            stock,
            category_keys: Vec::new(),
            attributes: None,
            synthetic_fields: Vec::new(),
            source: "test".into(),
        };
        let week = shopgraph_insight::forecast::WEEK_MS;
        let mut events = Vec::new();
        for w in 0..30 {
            // "hot" sells 5 a week with 2 left; "deep" the same with 60; "old" sold
            // long ago with 1 left; "seen" is viewed 50 times a week with 3 left, and
            // views are no demand.
            for i in 0..50 {
                events.push(EventRecord {
                    key: format!("seen-{w}-{i}"),
                    user: format!("v{i}"),
                    product: Some("seen".into()),
                    kind: EventKind::View,
                    value: None,
                    payload: None,
                    occurred_at: 957_139_200_000 + w * week + i,
                });
            }
            for (sku, n) in [("hot", 5), ("deep", 5), ("old", if w < 5 { 5 } else { 0 })] {
                for i in 0..n {
                    events.push(EventRecord {
                        key: format!("{sku}-{w}-{i}"),
                        user: format!("u{i}"),
                        product: Some(sku.into()),
                        kind: EventKind::Purchase,
                        value: None,
                        payload: None,
                        occurred_at: 957_139_200_000 + w * week + i,
                    });
                }
            }
        }
        let data = Dataset {
            products: vec![
                product("hot", 2),
                product("deep", 60),
                product("old", 1),
                product("seen", 3),
            ],
            events,
            ..Dataset::default()
        };
        let short = running_out(&data);
        assert_eq!(short, HashSet::from(["hot"]));
        assert!(running_out(&Dataset::default()).is_empty());
    }

    #[test]
    fn names_compare_without_case_or_punctuation() {
        assert_eq!(normalise("  J.R.R. Tolkien "), "j r r tolkien");
        assert_eq!(normalise("Stephen KING"), "stephen king");
        assert_eq!(format_price(1299, "EUR"), "12.99 EUR");
        assert_eq!(interest_name("maker:stephen king"), "stephen king");
    }
}
