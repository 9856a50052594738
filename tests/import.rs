//! `shopgraph import`: real rows in, a report out, nothing half-written.

use std::fs;

use crate::support::{TestDb, block_on, graph_data, run, run_ok};

#[test]
fn bookcrossing_rows_are_cleaned_reported_and_imported_once() {
    for db in TestDb::both() {
        let out = run_ok(&["import", &graph_data("excerpts/bookcrossing")], &db);
        // Counts per entity, and the rows set aside with file and line.
        assert!(out.contains("products            220        218"), "{}: {out}", db.name());
        assert!(
            out.contains(
                "BX-Books.csv:156: ISBN 002542730x repeats an earlier book (9780025427303)"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "BX-Book-Ratings.csv:1502: rating of a book not in BX-Books.csv: \"034545104X\""
            ),
            "{out}"
        );

        let store = db.store();
        let counts = block_on(store.counts()).unwrap();
        assert_eq!(
            (counts.products, counts.users, counts.events),
            (218, 904, 1500),
            "{}",
            db.name()
        );
        // Latin-1 decoded, entities decoded, backslash-escaped quotes kept as quotes.
        let book = block_on(store.product_by_sku("9783462021097")).unwrap().unwrap();
        assert_eq!(book.title, "Schwarzer Tee mit drei Stück Zucker");
        assert_eq!(book.publisher.map(|p| p.name).as_deref(), Some("Kiepenheuer & Witsch"));
        let outlaw = block_on(store.product_by_sku("9780449003787")).unwrap().unwrap();
        assert_eq!(outlaw.title, "\"O\" Is for Outlaw");
        assert_eq!(
            outlaw.maker.as_ref().map(|m| m.name.as_str()),
            Some("Sue Grafton"),
            "shouting is tamed"
        );
        assert_eq!(outlaw.synthetic_fields, ["price_cents", "stock"]);
        // Five spellings of Tolkien in the excerpt are one author.
        let tolkien = block_on(store.makers(shopgraph_core::product::MakerKind::Author))
            .unwrap()
            .into_iter()
            .filter(|m| m.key == "jrr tolkien")
            .count();
        assert_eq!(tolkien, 1);
        // A user record broken across two lines is joined, not dropped.
        let broken = block_on(store.user_by_external_id("bx:275081")).unwrap().unwrap();
        assert_eq!(broken.location.as_deref(), Some("cernusco s , milan, italy"));

        // Importing again changes nothing.
        let again = run_ok(&["import", &graph_data("excerpts/bookcrossing")], &db);
        assert!(again.contains("0 new events (1500 already stored)"), "{again}");
        assert_eq!(block_on(store.counts()).unwrap(), counts);
        block_on(store.close());
    }
}

#[test]
fn movielens_brings_its_knowledge_graph() {
    let db = TestDb::postgres();
    let out = run_ok(&["import", &graph_data("excerpts/ml-100k")], &db);
    assert!(out.contains("1500 new kg triples"), "{out}");
    let store = db.store();
    let toy_story = block_on(store.product_by_sku("ml-100k:1")).unwrap().unwrap();
    assert_eq!(toy_story.title, "Toy Story");
    assert_eq!(
        toy_story.categories,
        ["movies", "movies/animation", "movies/children's", "movies/comedy"]
    );
    assert_eq!(block_on(store.product_entities(toy_story.id)).unwrap().len(), 1);
    let counts = block_on(store.counts()).unwrap();
    assert_eq!((counts.products, counts.events, counts.kg_triples), (60, 2000, 1500));
    block_on(store.close());
}

#[test]
fn shop_files_import_with_prices_categories_and_reviews() {
    let db = TestDb::sqlite();
    run_ok(&["import", &graph_data("examples/shop")], &db);
    let store = db.store();
    let lens = block_on(store.product_by_sku("LENS-50-E")).unwrap().unwrap();
    assert_eq!((lens.price_cents, lens.stock), (24_990, 0));
    assert_eq!(
        lens.maker.map(|m| (m.key, m.name)),
        Some(("sony".into(), "Sony Corporation".into()))
    );
    assert!(lens.synthetic_fields.is_empty(), "a shop's own prices are not synthetic");
    let book = block_on(store.product_by_sku("9787115428028")).unwrap().unwrap();
    assert_eq!((book.title.as_str(), book.currency.as_str()), ("摄影构图学", "CNY"));
    let li = block_on(store.user_by_external_id("shop:li")).unwrap().unwrap();
    let filter = shopgraph_store::EventFilter { user: Some(li.id), ..Default::default() };
    let events = block_on(store.events(&filter)).unwrap();
    let review =
        events.iter().find(|e| e.kind == shopgraph_core::event::EventKind::Review).unwrap();
    assert_eq!(review.payload.as_deref(), Some(r#"{"text":"构图讲得很清楚，例子很多。"}"#));
    block_on(store.close());
}

#[test]
fn malformed_rows_are_reported_by_file_and_line_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["categories.jsonl", "products.jsonl", "users.jsonl"] {
        fs::copy(graph_data(&format!("examples/shop/{file}")), dir.path().join(file)).unwrap();
    }
    let mut products = fs::read(dir.path().join("products.jsonl")).unwrap();
    products.extend_from_slice(
        b"{\"sku\": \"BAD-1\", \"title\": \"Negative\", \"price\": -5, \"stock\": 1}\n\
          {\"sku\": \"BAD-2\", \"title\": \"Typo\", \"prize\": 5, \"price\": 5, \"stock\": 1}\n\
          {\"sku\": \"BAD-3\", \"title\": \"Nowhere\", \"price\": 5, \"stock\": 1, \"categories\": [\"garden\"]}\n\
          {\"sku\": \"BAD-4\", \"title\": \"caf\xe9\", \"price\": 5, \"stock\": 1}\n\
          {\"sku\": \"BAD-5\", \"title\": \n\
          {\"sku\": \"GOOD-1\", \"title\": \"Lens cap\", \"price\": 5, \"stock\": 100, \"categories\": [\"photo/lenses\"]}\n\
          {\"sku\": \"GOOD-1\", \"title\": \"Lens cap, again\", \"price\": 6, \"stock\": 1}\n",
    );
    fs::write(dir.path().join("products.jsonl"), products).unwrap();
    let db = TestDb::sqlite();
    // 5 malformed rows of 22: above the default limit of 5%, so this run allows more.
    let out = run_ok(&["import", dir.path().to_str().unwrap(), "--max-malformed", "0.5"], &db);
    for expected in [
        "products.jsonl:7: product BAD-1: price -5 is not a non-negative number",
        "products.jsonl:8: not a valid products line: unknown field `prize`",
        "products.jsonl:9: product BAD-3: category \"garden\" is not in categories.jsonl",
        "products.jsonl:10: not valid UTF-8 (first bad byte at offset 30)",
        "products.jsonl:11: not a valid products line: EOF while parsing",
        "products.jsonl:13: product GOOD-1 repeats an earlier line",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // A repeated sku is a duplicate, not malformed; the first line wins.
    assert!(
        out.contains("products             13          7          5          0          1"),
        "{out}"
    );
    let store = db.store();
    assert_eq!(block_on(store.product_by_sku("GOOD-1")).unwrap().unwrap().title, "Lens cap");
    for bad in ["BAD-1", "BAD-2", "BAD-3", "BAD-4", "BAD-5"] {
        assert!(block_on(store.product_by_sku(bad)).unwrap().is_none(), "{bad} was written");
    }
    block_on(store.close());
}

#[test]
fn a_mostly_broken_file_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec![r#"{"sku": "OK-1", "title": "Fine", "price": 1, "stock": 1}"#.to_owned()];
    lines.extend((0..9).map(|i| format!("sku{i},title,price")));
    fs::write(dir.path().join("products.jsonl"), lines.join("\n")).unwrap();
    let db = TestDb::sqlite();
    let out = run(&["import", dir.path().to_str().unwrap()], &db);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "refused: 9 of 10 rows are malformed (90.0%, the limit is 5.0%); nothing was written"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("products.jsonl:2: not a valid products line"), "{stderr}");
    assert!(!db.sqlite_file_exists(), "a refused import does not even create the database");
}

#[test]
fn a_file_in_another_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["BX-Books.csv", "BX-Users.csv", "BX-Book-Ratings.csv"] {
        fs::copy(graph_data(&format!("excerpts/bookcrossing/{file}")), dir.path().join(file))
            .unwrap();
    }
    // Someone saved the ratings with commas.
    fs::write(
        dir.path().join("BX-Book-Ratings.csv"),
        "User-ID,ISBN,Book-Rating\r\n276725,034545104X,0\r\n",
    )
    .unwrap();
    let db = TestDb::postgres();
    let out = run(&["import", dir.path().to_str().unwrap()], &db);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BX-Book-Ratings.csv: header does not match Book-Crossing"),
        "{stderr}"
    );
    let store = db.store();
    assert_eq!(
        block_on(store.counts()).unwrap().products,
        0,
        "nothing of the other files was written either"
    );
    block_on(store.close());
}
