//! The search index on disk, over the judged catalog in `graph_data/search/`, with the
//! real encoder for hybrid search.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use shopgraph_core::ProductId;
use shopgraph_core::product::{Maker, MakerKind, Product};
use shopgraph_embed::{Encoder, Method, VectorIndex, text_hash};
use shopgraph_search::eval::{evaluate, parse_judgements};
use shopgraph_search::{
    Categories, Filters, Fusion, HybridOptions, ProductDoc, SearchError, SearchIndex,
    SearchRequest, Sort, Synonyms, hybrid,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Catalog {
    products: Vec<Product>,
    categories: Categories,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let (dataset, report) =
            shopgraph_import::jsonl::read(&repo().join("graph_data/search/catalog"))
                .expect("catalog reads");
        assert_eq!(report.total_malformed(), 0, "{report}");
        let products = dataset
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| Product {
                id: ProductId(i as i64 + 1),
                sku: p.sku.clone(),
                title: p.title.clone(),
                description: p.description.clone(),
                maker: p.maker.clone(),
                publisher: p.publisher.clone(),
                year: p.year,
                image_url: p.image_url.clone(),
                price_cents: p.price_cents,
                currency: p.currency.clone(),
                stock: p.stock,
                hidden: false,
                categories: p.category_keys.clone(),
                attributes: p.attributes.clone(),
                synthetic_fields: p.synthetic_fields.clone(),
                source: p.source.clone(),
                updated_at: 0,
            })
            .collect();
        Catalog { products, categories: Categories::new(&dataset.categories) }
    })
}

fn synonyms() -> Synonyms {
    Synonyms::load(&repo().join("graph_data/synonyms.txt")).expect("synonyms parse")
}

fn docs(popularity: impl Fn(&Product) -> u64) -> Vec<ProductDoc> {
    let c = catalog();
    c.products.iter().map(|p| ProductDoc::new(p, &c.categories, popularity(p))).collect()
}

/// A real index in a temporary directory, filled with the catalog.
fn index_in(dir: &Path, synonyms: Synonyms) -> SearchIndex {
    let index = SearchIndex::open(dir, synonyms).expect("index opens");
    index.set_categories(catalog().categories.clone());
    index.upsert(&docs(|p| p.stock as u64)).expect("upsert");
    index.commit("v1").expect("commit");
    index
}

fn skus(index: &SearchIndex, request: &SearchRequest) -> Vec<String> {
    index.search(request).expect("search").hits.into_iter().map(|h| h.sku).collect()
}

fn q(text: &str) -> SearchRequest {
    SearchRequest::new(text)
}

#[test]
fn english_queries_rank_the_named_products_first() {
    let dir = tempfile::tempdir().unwrap();
    let index = index_in(dir.path(), synonyms());
    assert_eq!(index.len(), catalog().products.len() as u64);
    let top2 = &skus(&index, &q("harry potter"))[..2];
    assert!(
        top2.contains(&"BK-HP1".to_string()) && top2.contains(&"BK-HP3".to_string()),
        "{top2:?}"
    );
    assert_eq!(skus(&index, &q("kindle"))[0], "EL-KINDLE");
    assert_eq!(skus(&index, &q("cast iron skillet"))[0], "KT-SKILLET");
    // Stemming: "lenses" and "knives" find the singular.
    assert!(skus(&index, &q("knives")).contains(&"KT-CHEF".to_string()));
    // A quoted phrase must appear together; a minus excludes.
    let phrase = skus(&index, &q(r#""lord of the rings""#));
    assert_eq!(phrase, ["BK-LOTR"]);
    let without = skus(&index, &q("tolkien -hobbit"));
    assert_eq!(without, ["BK-LOTR"]);
}

#[test]
fn typos_in_longer_words_are_forgiven() {
    let dir = tempfile::tempdir().unwrap();
    let index = index_in(dir.path(), synonyms());
    let got = skus(&index, &q("tolkein"));
    assert!(got[..2].contains(&"BK-HOBBIT".to_string()), "{got:?}");
    assert_eq!(skus(&index, &q("sherlok holmes"))[0], "BK-HOLMES");
    let got = skus(&index, &q("headphnes"));
    assert!(got.iter().take(3).all(|s| s.starts_with("EL-")), "{got:?}");
    // Two edits in a long word.
    assert_eq!(skus(&index, &q("neuromancr"))[0], "BK-NEUROMANCER");
    assert_eq!(skus(&index, &q("nueromancre"))[0], "BK-NEUROMANCER");
    // Exact matches outrank fuzzy ones: "plenty" is a title, not a typo of anything.
    assert_eq!(skus(&index, &q("plenty"))[0], "BK-VEG");
}

/// A bookstore in miniature: 3,000 books, every one in "Books" and most from a
/// "… Books" publisher, so that "book" is common enough to only rank.
#[test]
fn common_words_rank_what_the_other_words_select() {
    let categories = Categories::new(&[shopgraph_core::product::Category {
        key: "books".into(),
        name: "Books".into(),
        parent_key: None,
    }]);
    let maker = |kind, name: &str| Maker { kind, key: name.to_lowercase(), name: name.into() };
    let template = &catalog().products[0];
    let docs: Vec<ProductDoc> = (0..3_000)
        .map(|i| {
            let title = match i {
                0 => "The Dinosaur Book".to_owned(),
                _ if i % 80 == 1 => format!("Dinosaur Tales {i}"),
                _ if i % 100 == 2 => format!("Women's Voices {i}"),
                _ if i % 3 == 0 => format!("Mother's Day Stories {i}"),
                _ => format!("Collected Stories {i}"),
            };
            let product = Product {
                id: ProductId(i + 1),
                sku: format!("B{i}"),
                title,
                maker: Some(maker(MakerKind::Author, &format!("Author {}", i % 50))),
                publisher: Some(maker(
                    MakerKind::Publisher,
                    if i % 4 == 0 { "Ace" } else { "Pocket Books" },
                )),
                description: None,
                attributes: None,
                categories: vec!["books".into()],
                ..template.clone()
            };
            ProductDoc::new(&product, &categories, 0)
        })
        .collect();
    let index = SearchIndex::in_ram(Synonyms::default()).unwrap();
    index.set_categories(categories);
    index.upsert(&docs).unwrap();
    index.commit("v1").unwrap();

    // "book" selects nothing on its own next to "dinosaur": the 39 dinosaur books
    // match, the one that is also a "book" first.
    let results = index.search(&q("dinosaur book")).unwrap();
    assert_eq!(results.total, 39);
    assert_eq!(results.hits[0].sku, "B0");
    // Alone, a common word still finds: every book says "book" somewhere, but the
    // category that all of them share ranks nothing and is not walked.
    let results = index.search(&q("book")).unwrap();
    assert_eq!(results.total, 1 + 2_250, "the title, and the Pocket Books publisher's");
    assert_eq!(results.hits[0].sku, "B0");
    // The "s" of "women's" is not a word: "Mother's Day" does not match.
    let results = index.search(&q("women's")).unwrap();
    assert_eq!(results.total, 30);
    assert!(results.hits.iter().all(|h| h.title.starts_with("Women's")));
    // A typo in a long word is still forgiven; one in its first letter is not.
    assert_eq!(index.search(&q("dinosuar tales")).unwrap().total, 39);
    assert_eq!(index.search(&q("kinosaur")).unwrap().total, 0);
}

#[test]
fn synonyms_find_what_the_catalog_calls_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let with = index_in(dir.path(), synonyms());
    let other = tempfile::tempdir().unwrap();
    let without = index_in(other.path(), Synonyms::default());
    // No product says "cellphone"; several say "smartphone".
    assert!(without.search(&q("cellphone")).unwrap().hits.is_empty());
    let got = skus(&with, &q("cellphone"));
    assert!(
        got.contains(&"EL-IPHONE".to_string()) && got.contains(&"EL-PIXEL".to_string()),
        "{got:?}"
    );
    // A multi-word entry matched from one word, and the reading says so.
    let results = with.search(&q("sneakers")).unwrap();
    assert!(results.hits.iter().any(|h| h.sku == "SP-PEGASUS"), "{:?}", results.hits);
    assert!(results.reading.contains("running shoes"), "{}", results.reading);
    // Chinese entries too: 手机 is a phone.
    assert!(skus(&with, &q("cellphone")).contains(&"EL-XIAOMI".to_string()));
}

#[test]
fn chinese_and_english_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let index = index_in(dir.path(), synonyms());
    assert_eq!(skus(&index, &q("三体"))[0], "BK-SANTI");
    assert_eq!(skus(&index, &q("刘慈欣"))[0], "BK-SANTI");
    // jieba cuts the unspaced title: 降噪 and 耳机 are found inside it.
    assert_eq!(skus(&index, &q("降噪耳机"))[0], "EL-HUAWEI-BUDS");
    // 耳机 alone is also a synonym of earphones and headphones: any of them will do.
    let got = skus(&index, &q("耳机"));
    assert!(got[..3].contains(&"EL-HUAWEI-BUDS".to_string()), "{got:?}");
    assert!(got[..3].iter().all(|s| s.starts_with("EL-")), "{got:?}");
    assert_eq!(skus(&index, &q("绿茶"))[0], "KT-GREENTEA");
    // Mixed: a brand in Latin letters and a Chinese word.
    assert_eq!(skus(&index, &q("FreeBuds 耳机"))[0], "EL-HUAWEI-BUDS");
    // An English query does not drag Chinese products in.
    assert!(!skus(&index, &q("green tea")).contains(&"BK-HONGLOU".to_string()));
}

#[test]
fn filters_narrow_and_facets_count_every_match() {
    let dir = tempfile::tempdir().unwrap();
    let index = index_in(dir.path(), synonyms());
    let c = catalog();
    let by_sku: HashMap<&str, &Product> = c.products.iter().map(|p| (p.sku.as_str(), p)).collect();

    // A category includes its subcategories.
    let mut r = q("");
    r.filters.category = Some("kitchen".into());
    r.limit = 100;
    let got = index.search(&r).unwrap();
    let kitchen =
        c.products.iter().filter(|p| p.categories.iter().any(|k| k.starts_with("kitchen"))).count();
    assert_eq!(got.total, kitchen);
    assert!(got.hits.iter().all(|h| h.sku.starts_with("KT-")));

    // Price range and stock.
    let mut r = q("book");
    r.filters = Filters {
        price_min_cents: Some(700),
        price_max_cents: Some(1000),
        in_stock: true,
        ..Filters::default()
    };
    r.limit = 100;
    for sku in skus(&index, &r) {
        let p = by_sku[sku.as_str()];
        assert!((700..=1000).contains(&p.price_cents) && p.stock > 0, "{sku}");
    }
    let mut r = q("game of thrones");
    assert_eq!(skus(&index, &r)[0], "BK-GOT");
    r.filters.in_stock = true;
    assert!(!skus(&index, &r).contains(&"BK-GOT".to_string()), "out of stock is filtered");

    // Years.
    let mut r = q("");
    r.filters =
        Filters { category: Some("books".into()), year_max: Some(1900), ..Filters::default() };
    r.limit = 100;
    let mut old = skus(&index, &r);
    old.sort();
    assert_eq!(old, ["BK-HOLMES", "BK-HONGLOU", "BK-PRIDE"]);

    // Facets: counts by subcategory, price band and stock over all matches.
    let mut r = q("steel");
    r.facets = true;
    let got = index.search(&r).unwrap();
    let facets = got.facets.expect("facets asked for");
    let matches: Vec<&Product> = c
        .products
        .iter()
        .filter(|p| {
            let text = format!("{} {:?} {:?}", p.title, p.description, p.attributes).to_lowercase();
            text.contains("steel")
        })
        .collect();
    assert_eq!(got.total, matches.len());
    let band_total: u64 = facets.price_bands.iter().map(|(_, n)| n).sum();
    assert_eq!(band_total as usize, got.total);
    assert_eq!(facets.in_stock as usize, matches.iter().filter(|p| p.stock > 0).count());
    let kitchen = facets.categories.iter().find(|f| f.key == "kitchen").expect("kitchen facet");
    assert_eq!(kitchen.name, "Kitchen");
    let in_kitchen =
        matches.iter().filter(|p| p.categories.iter().any(|k| k.starts_with("kitchen"))).count();
    assert_eq!(kitchen.count as usize, in_kitchen);
    // Under a category filter, facets count its children.
    r.filters.category = Some("kitchen".into());
    let facets = index.search(&r).unwrap().facets.unwrap();
    assert!(facets.categories.iter().all(|f| f.key.starts_with("kitchen/")), "{facets:?}");
}

#[test]
fn sorting_and_pages_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let index = index_in(dir.path(), synonyms());
    let mut r = q("");
    r.filters.category = Some("books".into());
    r.sort = Sort::PriceAsc;
    r.limit = 100;
    let all = index.search(&r).unwrap().hits;
    assert!(all.windows(2).all(|w| w[0].price_cents <= w[1].price_cents));
    r.sort = Sort::PriceDesc;
    let desc = index.search(&r).unwrap().hits;
    assert!(desc.windows(2).all(|w| w[0].price_cents >= w[1].price_cents));
    // Popularity here is the stock level (see `index_in`).
    r.sort = Sort::Popularity;
    let pop = index.search(&r).unwrap().hits;
    assert!(pop.windows(2).all(|w| w[0].stock >= w[1].stock));
    // Pages tile the full list.
    r.sort = Sort::PriceAsc;
    r.limit = 5;
    let mut paged = Vec::new();
    for page in 0..all.len().div_ceil(5) {
        r.offset = page * 5;
        paged.extend(index.search(&r).unwrap().hits);
    }
    let ids =
        |hits: &[shopgraph_search::Hit]| hits.iter().map(|h| h.price_cents).collect::<Vec<_>>();
    assert_eq!(ids(&paged), ids(&all));
}

#[test]
fn updates_apply_in_place_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog();
    {
        let index = index_in(dir.path(), synonyms());
        assert_eq!(index.mark().as_deref(), Some("v1"));
        let mut docs = docs(|_| 0);
        let dune = docs.iter_mut().find(|d| d.sku == "BK-DUNE").unwrap();
        dune.title = "Dune (deluxe hardcover edition)".into();
        dune.price_cents = 4_500;
        dune.stock = 0;
        let dune = dune.clone();
        index.upsert(std::slice::from_ref(&dune)).unwrap();
        let kindle = c.products.iter().find(|p| p.sku == "EL-KINDLE").unwrap().id;
        index.remove(&[kindle]).unwrap();
        // Nothing shows before the commit.
        assert!(index.search(&q("deluxe")).unwrap().hits.is_empty());
        index.commit("v2").unwrap();
        let hit = &index.search(&q("deluxe hardcover")).unwrap().hits[0];
        assert_eq!((hit.sku.as_str(), hit.price_cents, hit.stock), ("BK-DUNE", 4_500, 0));
        assert!(index.search(&q("kindle")).unwrap().hits.iter().all(|h| h.sku != "EL-KINDLE"));
        // One document per product, still.
        assert_eq!(index.len(), c.products.len() as u64 - 1);
    }
    let reopened = SearchIndex::open(dir.path(), synonyms()).unwrap();
    reopened.set_categories(c.categories.clone());
    assert_eq!(reopened.mark().as_deref(), Some("v2"));
    assert_eq!(reopened.len(), c.products.len() as u64 - 1);
    assert_eq!(skus(&reopened, &q("deluxe")), ["BK-DUNE"]);
}

#[test]
fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let index = index_in(dir.path(), synonyms());
    let err = |r: SearchRequest| index.search(&r).unwrap_err();
    for empty in ["", "   ", "\"\"", "-", "***", "AND OR"] {
        let e = err(q(empty));
        assert!(matches!(e, SearchError::EmptyQuery), "{empty:?}: {e}");
        assert!(e.is_client_error());
    }
    let e = err(q(&"x".repeat(5000)));
    assert!(matches!(e, SearchError::QueryTooLong { bytes: 5000, .. }) && e.is_client_error());
    let mut r = q("book");
    r.limit = 0;
    assert!(err(r.clone()).is_client_error());
    r.limit = 10;
    r.offset = 1_000_000;
    assert!(err(r.clone()).to_string().contains("offset"));
    r.offset = 0;
    r.filters.price_min_cents = Some(100);
    r.filters.price_max_cents = Some(10);
    assert!(err(r.clone()).is_client_error());
    r.filters = Filters { category: Some("no/such".into()), ..Filters::default() };
    let e = err(r);
    assert!(e.is_client_error() && e.to_string().contains("no/such"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever is typed — quotes, operators, control characters, any script — the
    /// answer is results or a client error, never a panic or a server error.
    #[test]
    fn any_input_gets_results_or_a_client_error(
        text in prop_oneof![
            any::<String>(),
            "[\"()\\-+*:~^!&|\\\\ a-z0-9]{0,40}",
            "(AND|OR|NOT|\"|-|\\(|\\)|tolkien|三体|\\*| ){0,20}",
        ],
        sort in 0usize..5,
        offset in 0usize..20,
    ) {
        static INDEX: OnceLock<(tempfile::TempDir, SearchIndex)> = OnceLock::new();
        let (_, index) = INDEX.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let index = index_in(dir.path(), synonyms());
            (dir, index)
        });
        let mut r = q(&text);
        r.sort = [Sort::Relevance, Sort::PriceAsc, Sort::PriceDesc, Sort::Popularity, Sort::Newest][sort];
        r.offset = offset;
        r.facets = offset % 2 == 0;
        match index.search(&r) {
            Ok(results) => prop_assert!(results.hits.len() <= r.limit),
            Err(e) => prop_assert!(e.is_client_error(), "{:?}: {}", text, e),
        }
    }
}

// --- hybrid ------------------------------------------------------------------------

fn model_dir() -> PathBuf {
    let cache = std::env::var_os("SHOPGRAPH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache"));
    let dir = cache.join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/setup.sh",
        dir.display()
    );
    dir
}

struct Hybrid {
    _dir: tempfile::TempDir,
    index: SearchIndex,
    encoder: Encoder,
    vectors: VectorIndex,
}

fn hybrid_fixture() -> Hybrid {
    let dir = tempfile::tempdir().unwrap();
    let index = index_in(dir.path(), synonyms());
    let encoder = Encoder::load(&model_dir()).expect("model loads");
    let docs = docs(|_| 0);
    let texts: Vec<String> = docs.iter().map(ProductDoc::semantic_text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let data = encoder.encode_all(&refs, 16, |_| {}).expect("encodes");
    let mut vectors = VectorIndex::new(encoder.fingerprint(), encoder.dim());
    let items: Vec<(ProductId, u64)> =
        docs.iter().zip(&texts).map(|(d, t)| (d.id, text_hash(t))).collect();
    vectors.extend(&items, &data, |_| {}).expect("vectors");
    Hybrid { _dir: dir, index, encoder, vectors }
}

#[test]
#[allow(clippy::print_stderr, reason = "the figures are the point: `--nocapture` shows them")]
fn hybrid_beats_bm25_on_the_judged_queries() {
    let h = hybrid_fixture();
    let judged =
        parse_judgements(include_str!("../../../graph_data/search/queries.jsonl")).unwrap();
    let run = |fusion: Fusion| {
        evaluate(&judged, |text| {
            let mut r = q(text);
            r.limit = 10;
            let options =
                HybridOptions { fusion, method: Method::Exact, ..HybridOptions::default() };
            match hybrid::search(&h.index, &h.encoder, &h.vectors, &r, options) {
                Ok(results) => results.hits.into_iter().map(|h| h.sku).collect(),
                Err(e) => panic!("{text:?}: {e}"),
            }
        })
    };
    let (bm25, bm25_kinds) = run(Fusion::LexicalOnly);
    let (rrf, rrf_kinds) = run(Fusion::Rrf { k: 60.0 });
    let (semantic, _) = run(Fusion::SemanticOnly);
    let (convex, _) = run(Fusion::Convex { alpha: 0.5 });
    for (name, quality) in
        [("bm25", bm25), ("vectors", semantic), ("hybrid rrf", rrf), ("convex 0.5", convex)]
    {
        eprintln!(
            "{name:>12}: nDCG@10 {:.3}  recall@10 {:.3}  MRR {:.3}",
            quality.ndcg10, quality.recall10, quality.mrr
        );
    }
    for (kind, quality) in &rrf_kinds {
        eprintln!(
            "{kind:>12}: bm25 nDCG@10 {:.3} → hybrid {:.3}",
            bm25_kinds[kind].ndcg10, quality.ndcg10
        );
    }
    assert!(rrf.ndcg10 > bm25.ndcg10 + 0.05, "hybrid {:.3} vs bm25 {:.3}", rrf.ndcg10, bm25.ndcg10);
    assert!(
        rrf.recall10 > bm25.recall10,
        "hybrid recall {:.3} vs bm25 {:.3}",
        rrf.recall10,
        bm25.recall10
    );
    // Descriptions are where words fail and meaning helps most.
    assert!(rrf_kinds["described"].ndcg10 > bm25_kinds["described"].ndcg10 + 0.1);
}

#[test]
fn hybrid_respects_filters_exclusions_and_reranking() {
    struct CheapestFirst;
    impl shopgraph_search::Rerank for CheapestFirst {
        fn rerank(
            &self,
            _: shopgraph_core::UserId,
            _: &SearchRequest,
            mut hits: Vec<shopgraph_search::Hit>,
        ) -> Vec<shopgraph_search::Hit> {
            hits.sort_by_key(|h| h.price_cents);
            hits
        }
    }
    let h = hybrid_fixture();
    let c = catalog();
    let by_sku: HashMap<&str, &Product> = c.products.iter().map(|p| (p.sku.as_str(), p)).collect();
    let mut r = q("keep warm when camping in winter");
    r.filters = Filters {
        in_stock: true,
        category: Some("sports".into()),
        price_max_cents: Some(30_000),
        ..Filters::default()
    };
    r.limit = 20;
    let got =
        hybrid::search(&h.index, &h.encoder, &h.vectors, &r, HybridOptions::default()).unwrap();
    assert!(!got.hits.is_empty());
    for hit in &got.hits {
        let p = by_sku[hit.sku.as_str()];
        assert!(p.stock > 0 && p.price_cents <= 30_000, "{}", hit.sku);
        assert!(p.categories.iter().any(|k| k.starts_with("sports")), "{}", hit.sku);
        assert!(hit.lexical_rank.is_some() || hit.semantic_rank.is_some());
    }
    // Excluded words hold on the vector side too.
    let r = q("noise cancelling headphones -sony");
    let got =
        hybrid::search(&h.index, &h.encoder, &h.vectors, &r, HybridOptions::default()).unwrap();
    assert!(got.hits.iter().all(|h| h.sku != "EL-WH1000"));
    // The recommender's hook decides the final order for a shopper.
    let r = q("coffee");
    let options = HybridOptions {
        user: Some(shopgraph_core::UserId(1)),
        rerank: Some(&CheapestFirst),
        ..HybridOptions::default()
    };
    let got = hybrid::search(&h.index, &h.encoder, &h.vectors, &r, options).unwrap();
    assert!(got.hits.windows(2).all(|w| w[0].price_cents <= w[1].price_cents));
    // Bad input is refused the same way as lexical search.
    let e = hybrid::search(&h.index, &h.encoder, &h.vectors, &q("  "), HybridOptions::default())
        .unwrap_err();
    assert!(e.is_client_error());
}
