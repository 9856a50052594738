//! `shopgraph search`: words and meaning over the judged catalog, an index that follows
//! the store in place (changed products, new events), and bad input refused clearly.

use std::fs;
use std::path::PathBuf;

use crate::support::{TestDb, graph_data, repo_root, run_ok, shopgraph};

fn model_dir() -> String {
    let cache = std::env::var_os("SHOPGRAPH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache"));
    cache.join("models/all-MiniLM-L6-v2").display().to_string()
}

/// Runs `shopgraph search ARGS…` with info logs: (success, stdout, stderr).
fn search(args: &[&str], db: &TestDb, index_dir: &str) -> (bool, String, String) {
    let out = shopgraph()
        .env("RUST_LOG", "shopgraph=info")
        .arg("search")
        .args(args)
        .args(db.args())
        .args([
            "--index-dir",
            index_dir,
            "--model-dir",
            &model_dir(),
            "--synonyms",
            &graph_data("synonyms.txt"),
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The first result line's title.
fn first(out: &str) -> &str {
    out.lines().nth(1).unwrap_or_default()
}

#[test]
fn search_follows_the_store_and_ranks_words_and_meaning() {
    for db in TestDb::both() {
        let name = db.name();
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("search").display().to_string();
        run_ok(&["import", &graph_data("search/catalog")], &db);

        // Words only: built on first use, typo forgiven.
        let (ok, out, err) = search(&["tolkein", "--mode", "bm25"], &db, &index);
        assert!(ok, "{name}: {err}");
        assert!(err.contains("building the search index: no search index yet"), "{name}: {err}");
        assert!(
            first(&out).contains("The Hobbit") || first(&out).contains("The Lord of the Rings"),
            "{name}: {out}"
        );

        // Meaning: vectors are made once, then reused.
        let (ok, out, err) =
            search(&["a boy who learns magic at a school for wizards"], &db, &index);
        assert!(ok && err.contains("encoded=88"), "{name}: {err}");
        let top3: Vec<&str> = out.lines().skip(1).take(3).collect();
        assert!(
            top3.iter().any(|l| l.contains("Harry Potter") || l.contains("Earthsea")),
            "{name}: {out}"
        );
        assert!(fs::metadata(dir.path().join("search/vectors.bin")).unwrap().len() > 88 * 384 * 4);
        let (_, _, err) = search(&["wizard"], &db, &index);
        assert!(
            !err.contains("building") && !err.contains("encoded="),
            "{name}: nothing to redo: {err}"
        );

        // A product changes and shoppers look at another: applied in place, one vector
        // re-encoded.
        let change = tempfile::tempdir().unwrap();
        fs::copy(
            graph_data("search/catalog/categories.jsonl"),
            change.path().join("categories.jsonl"),
        )
        .unwrap();
        fs::write(
            change.path().join("products.jsonl"),
            r#"{"sku": "BK-DUNE", "title": "Dune, deluxe illustrated edition", "author": "Frank Herbert", "year": 2015, "price": 45.00, "stock": 3, "categories": ["books/scifi"]}
"#,
        )
        .unwrap();
        fs::write(change.path().join("users.jsonl"), "{\"id\": \"zoe\"}\n").unwrap();
        let views: String = (0..3)
            .map(|i| format!("{{\"key\": \"v{i}\", \"user\": \"zoe\", \"product\": \"KT-MOKA\", \"kind\": \"view\", \"at_ms\": 1737000000000}}\n"))
            .collect();
        fs::write(change.path().join("events.jsonl"), views).unwrap();
        run_ok(&["import", &change.path().display().to_string()], &db);
        let (ok, out, err) = search(&["deluxe"], &db, &index);
        assert!(
            ok && err.contains("up to date in place") && !err.contains("building"),
            "{name}: {err}"
        );
        assert!(err.contains("encoded=1 "), "{name}: only Dune's text changed: {err}");
        assert!(
            first(&out).contains("Dune, deluxe illustrated edition")
                && first(&out).contains("45.00"),
            "{name}: {out}"
        );
        let (_, out, _) =
            search(&["coffee", "--sort", "popularity", "--mode", "bm25"], &db, &index);
        assert!(first(&out).contains("Moka Express"), "{name}: popularity follows events: {out}");

        // Filters and facets from the command line.
        let (ok, out, _) = search(
            &[
                "headphones",
                "--category",
                "electronics",
                "--max-price",
                "200",
                "--in-stock",
                "--facets",
            ],
            &db,
            &index,
        );
        assert!(ok, "{name}");
        assert!(!out.contains("WH-1000XM5") && out.contains("HD 560S"), "{name}: {out}");
        assert!(out.contains("categories: Headphones & speakers"), "{name}: {out}");
        // Chinese.
        let (_, out, _) = search(&["三体", "--mode", "bm25"], &db, &index);
        assert!(first(&out).contains("三体"), "{name}: {out}");
    }
}

#[test]
fn bad_search_input_gets_a_clear_error_or_a_sane_reading() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("search").display().to_string();
    run_ok(&["import", &graph_data("search/catalog")], &db);
    let long = "word ".repeat(300);
    for (args, expected) in [
        (vec![""], "type a word to search for"),
        (vec!["\"\" - ***"], "type a word to search for"),
        (vec![long.as_str()], "at most 1024 are read"),
        (vec!["tea", "--category", "no/such"], "no category \"no/such\""),
        (vec!["tea", "--min-price", "10", "--max-price", "5"], "lowest price is above the highest"),
        (vec!["tea", "--per-page", "1000"], "limit must be 1 to 100"),
        (vec!["tea", "--sort", "cheapest"], "unknown sort"),
        (vec!["tea", "--min-price", "NaN"], "is not a price"),
    ] {
        let mut all = args.clone();
        all.extend(["--mode", "bm25"]);
        let (ok, _, err) = search(&all, &db, &index);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Operators and unbalanced quotes are read, not refused.
    for text in
        [r#""tolkien"#, "tolkien AND (hobbit OR", "title:hobbit^2 ~tolkien*", "-", "\u{7}tea\u{1b}"]
    {
        let (ok, out, err) = search(&[text, "--mode", "bm25"], &db, &index);
        assert!(ok || err.contains("type a word"), "{text:?}: {err}");
        assert!(!err.contains("panicked"), "{text:?}: {err}");
        let _ = out;
    }
}
