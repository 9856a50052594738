//! Top-N for a shopper, with the rules a shop needs around any model: a range for N,
//! what may not be shown (already bought, out of stock, hidden, outside a category),
//! who the shopper is (a known user, a guest's session, stated interests alone, a
//! stranger), and for each result the path through the graph that explains it.

use crate::data::Interactions;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::model::{Content, Graph, ItemKnn, Recommender};

/// The most results one call returns.
pub const MAX_N: usize = 100;

/// History items an explanation looks back over (the most recent).
const EXPLAIN_FROM: usize = 50;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ServeError {
    #[error("n must be between 1 and {MAX_N}, got {0}")]
    BadN(usize),
    #[error("unknown item {0:?}")]
    UnknownItem(String),
}

/// Who the list is for.
#[derive(Clone, Copy, Debug)]
pub enum Shopper<'s> {
    /// A user the model was fitted with (their index).
    User(u32),
    /// A guest's items in this session, oldest first.
    Session(&'s [u32]),
    /// A shopper with no events and stated interests: each interest's BERT vector and
    /// weight.
    Interests(&'s [(&'s [f32], f32)]),
    /// Nothing known.
    Stranger,
}

/// Why a list came out as it did: the shop shows it, the API returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The model, for a user it was fitted with.
    Personal,
    /// The model (or item-kNN, for a model that only knows its users) on a session.
    Session,
    /// The content generator on stated interests.
    Interests,
    /// The fallback model (popularity), for a shopper nothing is known about.
    Fallback,
}

/// One result.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub item: u32,
    pub score: f32,
    pub because: Explanation,
}

/// A path in the graph from what the shopper did to the result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Explanation {
    /// `from → entity ← item`: the result shares an entity (category, maker, director,
    /// …) with an item in the shopper's history.
    Shared { from: u32, relation: u32, entity: u32 },
    /// `from ← shoppers → item`: shoppers who chose a history item chose the result.
    AlsoChosen { from: u32, similarity: f32 },
    /// The result is nearest to this stated interest (its index in the request).
    Interest { interest: usize },
    /// Nothing joins them; the result is popular.
    Popular,
}

/// What a shop allows in a list.
pub struct Filters<'f> {
    /// Leave out what the shopper already interacted with.
    pub exclude_seen: bool,
    /// Out of stock, hidden, outside a category: whatever this refuses.
    pub allowed: &'f dyn Fn(u32) -> bool,
}

/// A model with its fallback, the history it excludes, and what explains results.
pub struct Server<'a> {
    model: &'a dyn Recommender,
    fallback: &'a dyn Recommender,
    history: &'a Interactions,
    graph: Option<&'a Graph>,
    neighbours: Option<&'a ItemKnn>,
    content: Option<&'a Content>,
}

impl<'a> Server<'a> {
    pub fn new(
        model: &'a dyn Recommender,
        fallback: &'a dyn Recommender,
        history: &'a Interactions,
    ) -> Server<'a> {
        Server { model, fallback, history, graph: None, neighbours: None, content: None }
    }

    /// Explanations by knowledge-graph paths.
    pub fn with_graph(mut self, graph: &'a Graph) -> Self {
        self.graph = Some(graph);
        self
    }

    /// Explanations by co-interaction, similar items, and sessions for models that
    /// only know their fitted users.
    pub fn with_neighbours(mut self, neighbours: &'a ItemKnn) -> Self {
        self.neighbours = Some(neighbours);
        self
    }

    /// Cold start from stated interests.
    pub fn with_content(mut self, content: &'a Content) -> Self {
        self.content = Some(content);
        self
    }

    /// The user's index, if the history knows them.
    pub fn user(&self, external: &str) -> Option<u32> {
        self.history.ids().user(external)
    }

    /// The item's index, or an error naming it.
    pub fn item(&self, external: &str) -> Result<u32, ServeError> {
        self.history
            .ids()
            .item(external)
            .ok_or_else(|| ServeError::UnknownItem(external.to_owned()))
    }

    /// The best `n` items for `shopper` that `filters` admit, each with its
    /// explanation. A shopper the model cannot score (a stranger, interests without a
    /// content generator) gets the fallback's list, and is told so by the source.
    pub fn top_n(
        &self,
        shopper: Shopper<'_>,
        n: usize,
        filters: &Filters<'_>,
    ) -> Result<(Vec<Recommendation>, Source), ServeError> {
        if n == 0 || n > MAX_N {
            return Err(ServeError::BadN(n));
        }
        let n_items = self.history.n_items();
        let mut scores = vec![0f32; n_items];
        let mut seen: Vec<u32> = Vec::new();
        let mut source = match shopper {
            Shopper::User(u) if (u as usize) < self.history.n_users() => {
                self.model.scores(u, &mut scores);
                seen = self.history.user(u).iter().map(|r| r.item).collect();
                Source::Personal
            }
            Shopper::Session(items) if !items.is_empty() => {
                if let Some(&bad) = items.iter().find(|&&i| i as usize >= n_items) {
                    return Err(ServeError::UnknownItem(format!("#{bad}")));
                }
                seen = items.to_vec();
                let scored = self.model.scores_for_session(items, &mut scores)
                    || self.neighbours.is_some_and(|k| k.scores_for_session(items, &mut scores));
                if scored { Source::Session } else { Source::Fallback }
            }
            Shopper::Interests(interests) if !interests.is_empty() => match self.content {
                Some(content) => {
                    let profile = content.profile_of(interests.iter().copied());
                    content.scores_for(&profile, &mut scores);
                    Source::Interests
                }
                None => Source::Fallback,
            },
            _ => Source::Fallback,
        };
        if source == Source::Fallback {
            self.fallback.scores(0, &mut scores);
        }
        if filters.exclude_seen {
            for &i in &seen {
                scores[i as usize] = f32::NEG_INFINITY;
            }
        }
        let items = top_k_allowed(&scores, n, filters.allowed);
        if items.is_empty() && source != Source::Fallback {
            source = Source::Fallback;
        }
        let recent = &seen[seen.len().saturating_sub(EXPLAIN_FROM)..];
        let list = items
            .into_iter()
            .map(|item| Recommendation {
                item,
                score: scores[item as usize],
                because: match shopper {
                    Shopper::Interests(interests) if source == Source::Interests => {
                        self.nearest_interest(interests, item)
                    }
                    _ => self.explain(recent, item),
                },
            })
            .collect();
        Ok((list, source))
    }

    /// Items like `item` (by co-interaction), that `allowed` admits.
    pub fn similar(
        &self,
        item: u32,
        n: usize,
        allowed: &dyn Fn(u32) -> bool,
    ) -> Result<Vec<Recommendation>, ServeError> {
        if n == 0 || n > MAX_N {
            return Err(ServeError::BadN(n));
        }
        if item as usize >= self.history.n_items() {
            return Err(ServeError::UnknownItem(format!("#{item}")));
        }
        let Some(knn) = self.neighbours else { return Ok(Vec::new()) };
        Ok(knn
            .similar(item)
            .iter()
            .filter(|&&(j, _)| allowed(j))
            .take(n)
            .map(|&(j, similarity)| Recommendation {
                item: j,
                score: similarity,
                because: self.explain(&[item], j),
            })
            .collect())
    }

    /// The best path from the recent history to `item`: a shared graph entity first
    /// (it says what they have in common), else shoppers who chose both.
    pub fn explain(&self, recent: &[u32], item: u32) -> Explanation {
        if let Some(graph) = self.graph
            && let Some(path) = graph.best_path(&graph.session(recent), item)
        {
            return Explanation::Shared {
                from: path.from,
                relation: path.relation,
                entity: path.entity,
            };
        }
        if let Some(knn) = self.neighbours {
            let best = recent
                .iter()
                .filter_map(|&j| {
                    knn.similar(j).iter().find(|&&(k, _)| k == item).map(|&(_, s)| (j, s))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((from, similarity)) = best {
                return Explanation::AlsoChosen { from, similarity };
            }
        }
        Explanation::Popular
    }

    fn nearest_interest(&self, interests: &[(&[f32], f32)], item: u32) -> Explanation {
        let Some(content) = self.content else { return Explanation::Popular };
        let x = content.vector(item);
        let best = interests
            .iter()
            .enumerate()
            .map(|(k, (v, w))| (k, w * shopgraph_embed::exact::dot(v, x)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        best.map_or(Explanation::Popular, |(interest, _)| Explanation::Interest { interest })
    }

    /// The explanation in words. `interest_names` names the request's interests.
    pub fn words(&self, explanation: &Explanation, interest_names: &[&str]) -> String {
        let title = |i: u32| match self.graph {
            Some(g) => g.side().titles[i as usize].clone(),
            None => self.history.ids().items[i as usize].clone(),
        };
        match *explanation {
            Explanation::Shared { from, relation, entity } => {
                let Some(graph) = self.graph else { return String::new() };
                let side = graph.side();
                let name = side.entities[entity as usize].name.clone();
                match (side.relations[relation as usize].as_str(), name) {
                    ("category", Some(name)) => format!("In {name}, like {}", title(from)),
                    ("maker", Some(name)) => format!("Also by {name}, like {}", title(from)),
                    ("publisher", Some(name)) => format!("Also from {name}, like {}", title(from)),
                    ("decade", Some(name)) => format!("From the {name}, like {}", title(from)),
                    (_, Some(name)) => format!(
                        "Same {} ({name}) as {}",
                        side.relation_words(relation),
                        title(from)
                    ),
                    (_, None) => {
                        format!("Same {} as {}", side.relation_words(relation), title(from))
                    }
                }
            }
            Explanation::AlsoChosen { from, .. } => {
                format!("Shoppers who chose {} chose this too", title(from))
            }
            Explanation::Interest { interest } => match interest_names.get(interest) {
                Some(name) => format!("Matches your interest in {name}"),
                None => "Matches your interests".to_owned(),
            },
            Explanation::Popular => "Popular with shoppers".to_owned(),
        }
    }
}

/// The `k` best-scored items that `allowed` admits, best first (ties by index): the
/// same list as refusing the others and sorting, but `allowed` is asked only of items
/// that would enter the list, and nothing of the size of the catalog is allocated.
/// In a shop of 150,000 items, asking a filter of each of them cost more than the model.
fn top_k_allowed(scores: &[f32], k: usize, allowed: &dyn Fn(u32) -> bool) -> Vec<u32> {
    /// Worst first: the heap's top is the entry the next better item replaces.
    #[derive(PartialEq)]
    struct Entry(f32, u32);
    impl Eq for Entry {}
    impl Ord for Entry {
        fn cmp(&self, other: &Entry) -> Ordering {
            other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
        }
    }
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if s == f32::NEG_INFINITY {
            continue;
        }
        // Items come in index order, so an equal score never beats the worst kept.
        if heap.len() == k && heap.peek().is_some_and(|worst| s <= worst.0) {
            continue;
        }
        if !allowed(i as u32) {
            continue;
        }
        heap.push(Entry(s, i as u32));
        if heap.len() > k {
            heap.pop();
        }
    }
    heap.into_sorted_vec().into_iter().map(|Entry(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Explanation, Filters, MAX_N, ServeError, Server, Shopper, Source};
    use crate::data::Interactions;
    use crate::model::{
        Content, ContentParams, Graph, GraphParams, ItemKnn, ItemKnnParams, Popularity,
        PopularityParams,
    };
    use crate::side::{Entity, ItemSide};

    #[test]
    fn the_filtered_top_k_is_the_top_k_of_what_the_filter_admits() {
        // Scores with many ties, some removed; a filter that refuses every third item.
        let scores: Vec<f32> = (0..500u32)
            .map(|i| if i % 7 == 0 { f32::NEG_INFINITY } else { ((i * 37) % 11) as f32 })
            .collect();
        let allowed = |i: u32| !i.is_multiple_of(3);
        let mut expected: Vec<f32> = scores.clone();
        for (i, s) in expected.iter_mut().enumerate() {
            if !allowed(i as u32) {
                *s = f32::NEG_INFINITY;
            }
        }
        for k in [1, 5, 20, 100, 400] {
            assert_eq!(
                super::top_k_allowed(&scores, k, &allowed),
                crate::eval::top_k(&expected, k),
                "k {k}"
            );
        }
    }

    fn data() -> Interactions {
        let mut records = Vec::new();
        for u in 0..6 {
            for i in 0..4 {
                if (u + i) % 5 != 0 {
                    records.push((format!("u{u}"), format!("i{i}"), 1.0, i64::from(i)));
                }
            }
        }
        records.push(("u0".into(), "i9".into(), 1.0, 9));
        Interactions::from_records(records)
    }

    const ALL: Filters<'static> = Filters { exclude_seen: true, allowed: &|_| true };

    #[test]
    fn filters_fallback_and_bad_n() {
        let data = data();
        let knn = ItemKnn::fit(&data, ItemKnnParams { neighbours: 10, shrink: 0.0 });
        let popular = Popularity::fit(&data, PopularityParams { half_life_days: None });
        let server = Server::new(&knn, &popular, &data).with_neighbours(&knn);
        let u1 = server.user("u1").unwrap();
        let seen: Vec<u32> = data.user(u1).iter().map(|r| r.item).collect();

        let (list, source) = server.top_n(Shopper::User(u1), 10, &ALL).unwrap();
        assert_eq!(source, Source::Personal);
        assert!(list.iter().all(|r| !seen.contains(&r.item)), "seen items are excluded");
        let keep_seen = Filters { exclude_seen: false, allowed: &|_| true };
        let (with_seen, _) = server.top_n(Shopper::User(u1), 10, &keep_seen).unwrap();
        assert!(with_seen.iter().any(|r| seen.contains(&r.item)), "unless the shop says not to");

        // Out of stock / hidden / other category: whatever `allowed` refuses.
        let i9 = server.item("i9").unwrap();
        let not_i9 = Filters { exclude_seen: true, allowed: &|i| i != i9 };
        let (list, _) = server.top_n(Shopper::User(u1), 10, &not_i9).unwrap();
        assert!(list.iter().all(|r| r.item != i9));

        // An unknown shopper gets the most popular items, and is told so.
        assert_eq!(server.user("stranger"), None);
        let (list, source) = server.top_n(Shopper::Stranger, 2, &ALL).unwrap();
        assert_eq!(source, Source::Fallback);
        let counts = data.item_counts();
        assert!(counts[list[0].item as usize] >= counts[list[1].item as usize]);
        // So does one with interests where no content generator is configured.
        let v = [1.0f32];
        let interests = [(&v[..], 1.0)];
        let (_, source) = server.top_n(Shopper::Interests(&interests), 2, &ALL).unwrap();
        assert_eq!(source, Source::Fallback);

        // A guest's session: item-kNN scores it, and the session's items are left out.
        let i1 = server.item("i1").unwrap();
        let (list, source) = server.top_n(Shopper::Session(&[i1]), 3, &ALL).unwrap();
        assert_eq!(source, Source::Session);
        assert!(list.iter().all(|r| r.item != i1));
        let similar = server.similar(i1, 2, &|_| true).unwrap();
        assert_eq!(similar.len(), 2);
        assert_eq!(similar[0].item, knn.similar(i1)[0].0);

        let user = Shopper::User(u1);
        assert_eq!(server.top_n(user, 0, &ALL), Err(ServeError::BadN(0)));
        assert_eq!(server.top_n(user, MAX_N + 1, &ALL), Err(ServeError::BadN(101)));
        assert_eq!(server.item("nope"), Err(ServeError::UnknownItem("nope".into())));
        assert!(matches!(
            server.top_n(Shopper::Session(&[99]), 3, &ALL),
            Err(ServeError::UnknownItem(_))
        ));
        assert!(matches!(server.similar(99, 3, &|_| true), Err(ServeError::UnknownItem(_))));
    }

    /// A tiny bookshop: two authors, two categories; shoppers read one author.
    fn shop() -> (Interactions, Arc<ItemSide>, Vec<f32>) {
        let books = [
            ("dune", "Dune", "herbert", "sf", [1.0, 0.0]),
            ("messiah", "Dune Messiah", "herbert", "sf", [0.9, 0.1]),
            ("children", "Children of Dune", "herbert", "sf", [0.95, 0.05]),
            ("emma", "Emma", "austen", "novel", [0.0, 1.0]),
            ("persuasion", "Persuasion", "austen", "novel", [0.1, 0.9]),
            ("foundation", "Foundation", "asimov", "sf", [0.8, 0.2]),
        ];
        let mut records = Vec::new();
        for u in 0..4 {
            let read: &[&str] = if u < 2 { &["dune", "messiah"] } else { &["emma", "persuasion"] };
            for (t, b) in read.iter().enumerate() {
                records.push((format!("u{u}"), b.to_string(), 1.0, t as i64));
            }
        }
        records.push(("u4".into(), "children".into(), 1.0, 0));
        records.push(("u4".into(), "foundation".into(), 1.0, 1));
        let data = Interactions::from_records(records);
        let mut side = ItemSide {
            titles: vec![String::new(); data.n_items()],
            texts: vec![String::new(); data.n_items()],
            relations: vec!["category".into(), "maker".into()],
            entities: Vec::new(),
            links: vec![Vec::new(); data.n_items()],
        };
        let mut vectors = vec![0f32; data.n_items() * 2];
        let entity = |side: &mut ItemSide, key: &str| -> u32 {
            match side.entities.iter().position(|e| e.key == key) {
                Some(e) => e as u32,
                None => {
                    side.entities.push(Entity { key: key.into(), name: Some(key.to_uppercase()) });
                    (side.entities.len() - 1) as u32
                }
            }
        };
        for (id, title, author, category, v) in books {
            let i = data.ids().item(id).unwrap() as usize;
            side.titles[i] = title.into();
            let c = entity(&mut side, category);
            let a = entity(&mut side, author);
            side.links[i] = vec![(0, c), (1, a)];
            vectors[i * 2..i * 2 + 2].copy_from_slice(&v);
        }
        (data, Arc::new(side), vectors)
    }

    #[test]
    fn explanations_are_paths_in_the_graph() {
        let (data, side, _) = shop();
        let knn = ItemKnn::fit(&data, ItemKnnParams { neighbours: 10, shrink: 0.0 });
        let graph = Graph::fit(&data, side.clone(), GraphParams { half_life: None });
        let popular = Popularity::fit(&data, PopularityParams { half_life_days: None });
        let server = Server::new(&graph, &popular, &data).with_graph(&graph).with_neighbours(&knn);
        let u0 = server.user("u0").unwrap();
        let history: Vec<u32> = data.user(u0).iter().map(|r| r.item).collect();
        // Children of Dune (same author and category), Foundation (same category).
        let (list, source) = server.top_n(Shopper::User(u0), 2, &ALL).unwrap();
        assert_eq!(source, Source::Personal);
        let children = server.item("children").unwrap();
        assert_eq!(list[0].item, children, "same author and category first");
        for r in &list {
            match r.because {
                Explanation::Shared { from, relation, entity } => {
                    assert!(history.contains(&from), "the path starts in the history");
                    assert!(side.links[from as usize].contains(&(relation, entity)));
                    assert!(side.links[r.item as usize].contains(&(relation, entity)));
                }
                other => panic!("{other:?} for {}", side.titles[r.item as usize]),
            }
        }
        assert!(
            matches!(list[0].because, Explanation::Shared { relation: 1, .. }),
            "the author is rarer"
        );
        let words = server.words(&list[0].because, &[]);
        assert!(
            words == "Also by HERBERT, like Dune" || words == "Also by HERBERT, like Dune Messiah",
            "{words}"
        );

        // Without a graph, the path goes through the shoppers who chose both.
        let by_knn = Server::new(&knn, &popular, &data).with_neighbours(&knn);
        let dune = by_knn.item("dune").unwrap();
        let messiah = by_knn.item("messiah").unwrap();
        match by_knn.explain(&[dune], messiah) {
            Explanation::AlsoChosen { from, .. } => {
                assert_eq!(from, dune);
                let both = (0..data.n_users() as u32).any(|u| {
                    let items: Vec<u32> = data.user(u).iter().map(|r| r.item).collect();
                    items.contains(&dune) && items.contains(&messiah)
                });
                assert!(both, "some shopper chose both");
            }
            other => panic!("{other:?}"),
        }
        let emma = by_knn.item("emma").unwrap();
        assert_eq!(by_knn.explain(&[dune], emma), Explanation::Popular, "no path, no story");
    }

    #[test]
    fn interests_alone_give_personal_results() {
        let (data, side, vectors) = shop();
        let content = Content::fit(&data, Arc::new(vectors), 2, ContentParams { half_life: None });
        let popular = Popularity::fit(&data, PopularityParams { half_life_days: None });
        let graph = Graph::fit(&data, side, GraphParams { half_life: None });
        let server = Server::new(&graph, &popular, &data).with_content(&content);
        let novels = [0.05f32, 1.0];
        let space = [1.0f32, 0.0];
        let interests = [(&novels[..], 1.0), (&space[..], 0.2)];
        let (list, source) = server.top_n(Shopper::Interests(&interests), 2, &ALL).unwrap();
        assert_eq!(source, Source::Interests);
        let titles: Vec<&str> =
            list.iter().map(|r| graph.side().titles[r.item as usize].as_str()).collect();
        assert_eq!(titles, ["Emma", "Persuasion"]);
        assert_eq!(list[0].because, Explanation::Interest { interest: 0 });
        assert_eq!(
            server.words(&list[0].because, &["novels", "space"]),
            "Matches your interest in novels"
        );
        // The other way round for a shopper into space.
        let interests = [(&space[..], 1.0)];
        let (list, _) = server.top_n(Shopper::Interests(&interests), 1, &ALL).unwrap();
        assert_eq!(graph.side().titles[list[0].item as usize], "Dune");
    }
}
