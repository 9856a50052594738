//! The knowledge graph's behaviour: explanations in words, bounded queries, snapshots
//! that refuse corruption, and (proptest) updates in place that equal a rebuild.

use std::collections::BTreeMap;

use proptest::prelude::*;
use shopgraph_core::event::{Event, EventKind};
use shopgraph_core::interest::{Interest, InterestSource, Polarity};
use shopgraph_core::kg::Triple;
use shopgraph_core::product::{Category, Maker, MakerKind, Product};
use shopgraph_core::segment::ProductRule;
use shopgraph_core::user::User;
use shopgraph_core::{InterestId, ProductId, UserId};
use shopgraph_graph::query::Step;
use shopgraph_graph::snapshot::{self, SnapshotError};
use shopgraph_graph::{KnowledgeGraph, Limits, NodeKey, QueryError, Relation};

// --- fixtures ---------------------------------------------------------------------

fn product(
    id: i64,
    title: &str,
    author: Option<&str>,
    publisher: Option<&str>,
    categories: &[&str],
    year: Option<i32>,
) -> Product {
    let maker = |kind, name: &str| Maker { kind, key: name.to_lowercase(), name: name.to_owned() };
    Product {
        id: ProductId(id),
        sku: format!("sku-{id}"),
        title: title.to_owned(),
        description: None,
        maker: author.map(|a| maker(MakerKind::Author, a)),
        publisher: publisher.map(|p| maker(MakerKind::Publisher, p)),
        year,
        image_url: None,
        price_cents: 999,
        currency: "EUR".into(),
        stock: 3,
        hidden: false,
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
        attributes: Some(r#"{"format":"book"}"#.into()),
        synthetic_fields: vec![],
        source: "test".into(),
        updated_at: 0,
    }
}

fn user(id: i64) -> User {
    User {
        id: UserId(id),
        external_id: format!("u{id}"),
        display_name: None,
        location: None,
        age: None,
        attributes: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn event(seq: i64, user: i64, product: i64, kind: EventKind, value: Option<f64>) -> Event {
    Event {
        seq,
        idempotency_key: format!("e{seq}"),
        user: UserId(user),
        product: Some(ProductId(product)),
        kind,
        value,
        payload: None,
        occurred_at: seq * 1000,
        recorded_at: seq * 1000,
    }
}

/// A small bookstore: three Tolkien books rated by user 1, a fourth unrated, and others.
fn bookstore() -> KnowledgeGraph {
    let mut g = KnowledgeGraph::default();
    g.upsert_category(&Category { key: "books".into(), name: "Books".into(), parent_key: None });
    g.upsert_category(&Category {
        key: "fantasy".into(),
        name: "Fantasy".into(),
        parent_key: Some("books".into()),
    });
    let tolkien = Some("J. R. R. Tolkien");
    for (id, title) in [
        (1, "The Hobbit"),
        (2, "The Fellowship of the Ring"),
        (3, "The Two Towers"),
        (4, "The Silmarillion"),
    ] {
        g.upsert_product(&product(
            id,
            title,
            tolkien,
            Some("Ballantine"),
            &["fantasy"],
            Some(1977),
        ));
    }
    g.upsert_product(&product(
        5,
        "Dune",
        Some("Frank Herbert"),
        Some("Ace"),
        &["books"],
        Some(1965),
    ));
    g.upsert_product(&product(
        6,
        "Emma",
        Some("Jane Austen"),
        Some("Penguin"),
        &["books"],
        Some(1815),
    ));
    for id in 1..=3 {
        g.upsert_user(&user(id));
    }
    g.apply_event(&event(1, 1, 1, EventKind::Rating, Some(9.0)));
    g.apply_event(&event(2, 1, 2, EventKind::Rating, Some(10.0)));
    g.apply_event(&event(3, 1, 3, EventKind::Rating, Some(8.0)));
    g.apply_event(&event(4, 1, 6, EventKind::Rating, Some(2.0)));
    g.apply_event(&event(5, 2, 5, EventKind::Purchase, Some(1.0)));
    g.apply_event(&event(6, 2, 6, EventKind::Rating, Some(3.0)));
    g.apply_event(&event(7, 3, 5, EventKind::Purchase, Some(1.0)));
    g.apply_event(&event(8, 3, 6, EventKind::Rating, Some(9.0)));
    g
}

fn limits() -> Limits {
    Limits::default()
}

#[track_caller]
fn assert_real(g: &KnowledgeGraph, path: &[Step]) {
    for pair in path.windows(2) {
        assert_eq!(pair[0].to, pair[1].from, "steps join up: {path:?}");
    }
    for step in path {
        assert!(
            g.has_edge(&step.from, &step.to, step.relation, step.forward),
            "not an edge: {step:?}"
        );
    }
}

// --- explanations and queries -------------------------------------------------------

#[test]
fn explanations_count_what_the_user_liked_and_say_why() {
    let g = bookstore();
    let found = g.explain(UserId(1), ProductId(4), 3, &limits()).unwrap();
    assert_eq!(found[0].text, "you rated 3 books by J. R. R. Tolkien; this is by J. R. R. Tolkien");
    assert_eq!(found[0].support, 3);
    for e in &found {
        assert_real(&g, &e.path);
        assert_eq!(e.path.first().unwrap().from, NodeKey::User(UserId(1)));
        assert_eq!(e.path.last().unwrap().to, NodeKey::Product(ProductId(4)));
    }
    // A book the user disliked (Emma, 2/10) explains nothing.
    assert!(
        g.explain(UserId(1), ProductId(6), 3, &limits())
            .unwrap()
            .iter()
            .all(|e| !e.text.contains("Emma"))
    );
}

#[test]
fn stated_interests_explain_too() {
    let mut g = bookstore();
    g.upsert_user(&user(9));
    let interest = Interest {
        id: InterestId(1),
        user: UserId(9),
        subject: "author:frank herbert".into(),
        weight: 0.9,
        polarity: Polarity::Likes,
        source: InterestSource::ChatMessage(12),
        at: 5,
    };
    g.add_interest(&interest);
    let found = g.explain(UserId(9), ProductId(5), 1, &limits()).unwrap();
    assert_eq!(found[0].text, "you told us you like Frank Herbert; this is by Frank Herbert");
    assert_real(&g, &found[0].path);
    let profile = g.profile(UserId(9)).unwrap();
    assert_eq!(profile[0].source, InterestSource::ChatMessage(12));
    assert!(g.remove_interest(InterestId(1)));
    assert!(g.explain(UserId(9), ProductId(5), 1, &limits()).unwrap().is_empty());
}

#[test]
fn a_guest_session_is_explained_from_its_products() {
    let g = bookstore();
    let session = [ProductId(1), ProductId(2)];
    let found = g.explain_for_products(&session, ProductId(4), 2, &limits()).unwrap();
    assert_eq!(
        found[0].text,
        "you looked at 2 books by J. R. R. Tolkien; this is by J. R. R. Tolkien"
    );
    assert_real(&g, &found[0].path);
    assert!(session.iter().any(|p| found[0].path[0].from == NodeKey::Product(*p)));
    let unknown = g.explain_for_products(&[ProductId(77)], ProductId(4), 2, &limits()).unwrap_err();
    assert_eq!(unknown, QueryError::UnknownNode("product:77".into()));
}

#[test]
fn cycles_do_not_trap_queries() {
    let mut g = bookstore();
    // A category made its own grandparent by mistake: books -> fantasy -> books.
    g.upsert_category(&Category {
        key: "books".into(),
        name: "Books".into(),
        parent_key: Some("fantasy".into()),
    });
    let reached = g.k_hop(&NodeKey::Category("books".into()), 4, 1_000, &limits()).unwrap();
    let unique: std::collections::HashSet<_> = reached.iter().map(|(k, _)| k).collect();
    assert_eq!(unique.len(), reached.len(), "every node once");
    let books = NodeKey::Category("books".into());
    assert!(g.connect(&books, &books, 3, 3, &limits()).unwrap().is_empty());
    for path in g.connect(&books, &NodeKey::Category("fantasy".into()), 4, 5, &limits()).unwrap() {
        assert_real(&g, &path);
    }
}

#[test]
fn similar_products_share_rare_nodes_first() {
    let g = bookstore();
    let similar = g.similar_products(ProductId(1), 3, &limits()).unwrap();
    let ids: Vec<i64> = similar.iter().map(|s| s.product.0).collect();
    assert_eq!(ids, [2, 3, 4]);
    assert_eq!(similar[0].shared[0], "J. R. R. Tolkien");
}

#[test]
fn agent_queries() {
    let g = bookstore();
    // Customers who bought Dune and rated Emma 5 or lower.
    assert_eq!(
        g.bought_and_rated_low(ProductId(5), ProductId(6), 5.0, 10, &limits()).unwrap(),
        [UserId(2)]
    );
    // What connects The Hobbit and Dune: a shared category path or shared readers.
    let paths = g
        .connect(&NodeKey::Product(ProductId(1)), &NodeKey::Product(ProductId(4)), 2, 5, &limits())
        .unwrap();
    assert!(!paths.is_empty());
    for path in &paths {
        assert!(path.len() <= 2);
        assert_real(&g, path);
    }
    let near = g
        .neighbours(&NodeKey::Product(ProductId(5)), Some(Relation::Interacted), 10, &limits())
        .unwrap();
    assert_eq!(near.len(), 2);
    assert!(near.iter().all(|n| !n.forward), "users point at products");
}

#[test]
fn rules_become_bought_together_edges_and_replace_the_last_run() {
    let mut g = bookstore();
    let rule = |a: Vec<i64>, c: Vec<i64>, confidence: f64| ProductRule {
        antecedent: a.into_iter().map(ProductId).collect(),
        consequent: c.into_iter().map(ProductId).collect(),
        support: 0.1,
        confidence,
        lift: 3.0,
    };
    let together = |g: &KnowledgeGraph, id: i64| -> Vec<(i64, f64)> {
        let mut out: Vec<(i64, f64)> = g
            .neighbours(
                &NodeKey::Product(ProductId(id)),
                Some(Relation::BoughtTogether),
                10,
                &limits(),
            )
            .unwrap()
            .into_iter()
            .filter(|n| n.forward)
            .map(|n| match n.key {
                NodeKey::Product(p) => (p.0, f64::from(n.weight)),
                other => panic!("{other}"),
            })
            .collect();
        out.sort_by_key(|x| x.0);
        out
    };
    g.set_rules(&[
        rule(vec![1], vec![2, 3], 0.6),
        rule(vec![1], vec![2], 0.8), // the more confident rule over 1 → 2 wins
        rule(vec![1, 2], vec![3], 0.9), // two on the left: no edge
        rule(vec![5], vec![99], 0.5), // not in the graph: skipped
    ]);
    let got = together(&g, 1);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, 2);
    assert!((got[0].1 - 0.8).abs() < 1e-6 && (got[1].1 - 0.6).abs() < 1e-6, "{got:?}");
    assert!(together(&g, 5).is_empty());
    assert_eq!(g.stats()["edges: bought-together"], 2);
    // A new run replaces the old edges.
    g.set_rules(&[rule(vec![5], vec![6], 0.4)]);
    assert!(together(&g, 1).is_empty());
    assert_eq!(together(&g, 5).len(), 1);
    // And a snapshot keeps them.
    let bytes = snapshot::encode(&g, "x");
    let (back, _) = snapshot::decode(&bytes).unwrap();
    assert_eq!(together(&back, 5), together(&g, 5));
}

#[test]
fn bad_queries_get_clear_errors() {
    let g = bookstore();
    let unknown = g.explain(UserId(1), ProductId(999), 3, &limits()).unwrap_err();
    assert_eq!(unknown, QueryError::UnknownNode("product:999".into()));
    let deep = g.k_hop(&NodeKey::Product(ProductId(1)), 9, 10, &limits()).unwrap_err();
    assert_eq!(deep, QueryError::TooBig { what: "hops", asked: 9, max: 4 });
    let huge =
        g.neighbours(&NodeKey::Product(ProductId(1)), None, 1_000_000, &limits()).unwrap_err();
    assert!(matches!(huge, QueryError::TooBig { what: "limit", .. }));
    assert!(NodeKey::parse("product:abc").is_none());
    assert!(NodeKey::parse("nothing").is_none());
}

#[test]
fn hubs_are_reached_but_not_walked_through() {
    let g = bookstore();
    let tight = Limits { hub_degree: 3, ..limits() };
    // "fantasy" has 4 books and a parent: a hub at this limit.
    let reached = g.k_hop(&NodeKey::Product(ProductId(1)), 2, 100, &tight).unwrap();
    assert!(reached.contains(&(NodeKey::Category("fantasy".into()), 1)));
    assert!(!reached.contains(&(NodeKey::Category("books".into()), 2)), "not through the hub");
}

// --- snapshots -----------------------------------------------------------------------

#[test]
fn snapshots_round_trip_and_refuse_corruption() {
    let g = bookstore();
    let bytes = snapshot::encode(&g, "stamp-1");
    let (loaded, stamp) = snapshot::decode(&bytes).unwrap();
    assert_eq!(stamp, "stamp-1");
    assert_eq!(loaded.canonical(), g.canonical());
    assert_eq!(loaded.last_seq(), 8);
    assert_eq!(
        loaded.explain(UserId(1), ProductId(4), 1, &limits()).unwrap()[0].text,
        g.explain(UserId(1), ProductId(4), 1, &limits()).unwrap()[0].text
    );

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    assert_eq!(snapshot::decode(&flipped).unwrap_err(), SnapshotError::Checksum);
    let truncated = &bytes[..bytes.len() - 10];
    assert!(matches!(snapshot::decode(truncated).unwrap_err(), SnapshotError::Truncated { .. }));
    assert_eq!(
        snapshot::decode(b"PK\x03\x04 a zip file").unwrap_err(),
        SnapshotError::NotASnapshot
    );
    let mut future = bytes.clone();
    future[4] = 99;
    assert_eq!(snapshot::decode(&future).unwrap_err(), SnapshotError::Version { found: 99 });
}

// --- properties ----------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Product { id: i64, author: u8, publisher: u8, categories: u8, year: Option<i32> },
    Event { user: i64, product: i64, kind: u8, value: u8 },
    Interest { user: i64, subject: u8, likes: bool },
    RemoveInterest(u8),
    Triple { head: u8, relation: u8, tail: u8 },
    Link { product: i64, entity: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..8i64, 0..4u8, 0..3u8, 0..8u8, proptest::option::of(1990..2010i32)).prop_map(
            |(id, author, publisher, categories, year)| Op::Product {
                id,
                author,
                publisher,
                categories,
                year
            }
        ),
        (1..5i64, 1..8i64, 0..6u8, 1..11u8).prop_map(|(user, product, kind, value)| Op::Event {
            user,
            product,
            kind,
            value
        }),
        (1..5i64, 0..8u8, any::<bool>()).prop_map(|(user, subject, likes)| Op::Interest {
            user,
            subject,
            likes
        }),
        (0..10u8).prop_map(Op::RemoveInterest),
        (0..6u8, 0..3u8, 0..6u8).prop_map(|(head, relation, tail)| Op::Triple {
            head,
            relation,
            tail
        }),
        (1..8i64, 0..6u8).prop_map(|(product, entity)| Op::Link { product, entity }),
    ]
}

const CATEGORIES: [&str; 3] = ["c0", "c1", "c2"];
const SUBJECTS: [&str; 8] = [
    "author:a0",
    "author:a3",
    "category:c1",
    "year:1990s",
    "format:book",
    "hiking",
    "product:sku-3",
    "user:2",
];

fn product_of(id: i64, author: u8, publisher: u8, categories: u8, year: Option<i32>) -> Product {
    let cats: Vec<&str> =
        (0..3).filter(|i| categories & (1 << i) != 0).map(|i| CATEGORIES[i]).collect();
    let author = format!("A{author}");
    let publisher = format!("P{publisher}");
    product(id, &format!("title {id}"), Some(&author), Some(&publisher), &cats, year)
}

fn categories() -> Vec<Category> {
    vec![
        Category { key: "c0".into(), name: "C0".into(), parent_key: None },
        Category { key: "c1".into(), name: "C1".into(), parent_key: Some("c0".into()) },
        Category { key: "c2".into(), name: "C2".into(), parent_key: Some("c0".into()) },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Applying updates as they arrive gives the graph a rebuild from the final state gives.
    #[test]
    fn updates_in_place_equal_a_rebuild(ops in proptest::collection::vec(op(), 1..60)) {
        let kinds = [EventKind::View, EventKind::Click, EventKind::AddToCart, EventKind::Purchase, EventKind::Rating, EventKind::Review];
        let mut live = KnowledgeGraph::default();
        for c in categories() { live.upsert_category(&c); }
        for u in 1..5 { live.upsert_user(&user(u)); }
        // The store's final state, as a rebuild would read it.
        let mut products: BTreeMap<i64, Product> = BTreeMap::new();
        let mut makers: BTreeMap<String, Maker> = BTreeMap::new();
        let mut events = Vec::new();
        let mut interests: BTreeMap<i64, Interest> = BTreeMap::new();
        let mut triples = Vec::new();
        let mut links = Vec::new();
        let mut next_interest = 0;
        for op in ops {
            match op {
                Op::Product { id, author, publisher, categories, year } => {
                    let p = product_of(id, author, publisher, categories, year);
                    live.upsert_product(&p);
                    for m in [&p.maker, &p.publisher].into_iter().flatten() {
                        makers.insert(format!("{:?}{}", m.kind, m.key), m.clone());
                    }
                    products.insert(id, p);
                }
                Op::Event { user, product, kind, value } => {
                    let kind = kinds[kind as usize];
                    let value = matches!(kind, EventKind::Rating | EventKind::Review).then_some(f64::from(value));
                    let e = event(events.len() as i64 + 1, user, product, kind, value);
                    live.apply_event(&e);
                    events.push(e);
                }
                Op::Interest { user, subject, likes } => {
                    next_interest += 1;
                    let i = Interest {
                        id: InterestId(next_interest),
                        user: UserId(user),
                        subject: SUBJECTS[subject as usize].into(),
                        weight: 0.5,
                        polarity: if likes { Polarity::Likes } else { Polarity::Dislikes },
                        source: InterestSource::Stated,
                        at: next_interest,
                    };
                    live.add_interest(&i);
                    interests.insert(next_interest, i);
                }
                Op::RemoveInterest(n) => {
                    let id = i64::from(n);
                    prop_assert_eq!(live.remove_interest(InterestId(id)), interests.remove(&id).is_some());
                }
                Op::Triple { head, relation, tail } => {
                    let t = Triple { head: format!("m.{head}"), relation: format!("film.film.r{relation}"), tail: format!("m.{tail}") };
                    live.add_triple(&t);
                    triples.push(t);
                }
                Op::Link { product, entity } => {
                    live.link_entity(ProductId(product), &format!("m.{entity}"));
                    links.push((ProductId(product), format!("m.{entity}")));
                }
            }
        }
        let mut rebuilt = KnowledgeGraph::default();
        for c in categories() { rebuilt.upsert_category(&c); }
        for m in makers.values() { rebuilt.upsert_maker(m); }
        for p in products.values() { rebuilt.upsert_product(p); }
        for u in 1..5 { rebuilt.upsert_user(&user(u)); }
        for e in &events { rebuilt.apply_event(e); }
        for i in interests.values() { rebuilt.add_interest(i); }
        for t in &triples { rebuilt.add_triple(t); }
        for (p, e) in &links { rebuilt.link_entity(*p, e); }
        prop_assert_eq!(live.canonical(), rebuilt.canonical());

        // Paths returned are real paths, and limits hold.
        for u in 1..5 {
            for p in 1..8 {
                if let Ok(found) = live.explain(UserId(u), ProductId(p), 3, &limits()) {
                    prop_assert!(found.len() <= 3);
                    for e in found {
                        assert_real(&live, &e.path);
                    }
                }
            }
        }
        let start = NodeKey::Product(ProductId(1));
        if live.contains(&start) {
            for hops in 1..=3 {
                let reached = live.k_hop(&start, hops, 7, &limits()).unwrap();
                prop_assert!(reached.len() <= 7);
                prop_assert!(reached.iter().all(|(_, d)| *d >= 1 && *d <= hops));
            }
            let goal = NodeKey::Product(ProductId(2));
            if live.contains(&goal) {
                for path in live.connect(&start, &goal, 3, 4, &limits()).unwrap() {
                    prop_assert!(path.len() <= 3);
                    assert_real(&live, &path);
                }
            }
        }
        // A snapshot of any graph loads back to the same graph.
        let (loaded, _) = snapshot::decode(&snapshot::encode(&live, "")).unwrap();
        prop_assert_eq!(loaded.canonical(), live.canonical());
    }
}
