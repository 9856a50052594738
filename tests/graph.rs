//! `shopgraph graph`: built from the store, kept current in place as products, events
//! and interests arrive, rebuilt when rows are deleted or the snapshot is damaged, and
//! queried with clear errors for bad input.

use std::fs;

use crate::support::{TestDb, graph_data, run_ok, shopgraph};

/// Runs `shopgraph graph ARGS…` with info logs, returning (success, stdout, stderr).
fn graph(args: &[&str], db: &TestDb, snapshot: &str) -> (bool, String, String) {
    let out = shopgraph()
        .env("RUST_LOG", "shopgraph=info")
        .arg("graph")
        .args(args)
        .args(db.args())
        .args(["--snapshot", snapshot])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_graph_follows_the_store_in_place_and_explains_itself() {
    for db in TestDb::both() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("graph.snapshot").display().to_string();
        let name = db.name();
        run_ok(&["import", &graph_data("examples/shop")], &db);
        let (ok, out, _) = graph(&["build"], &db, &snapshot);
        assert!(ok && out.contains("built 27 nodes and 33 edges"), "{name}: {out}");

        let (_, out, _) = graph(&["explain", "shop:ana", "LENS-35-L"], &db, &snapshot);
        assert!(
            out.starts_with("you bought Mirrorless camera X100, 24 MP; this is made by Lumix\n"),
            "{name}: {out}"
        );
        assert!(
            out.contains(
                "user:1 -interacted-> product:3 -made-by-> brand:lumix <-made-by- product:4"
            ),
            "{out}"
        );

        // New events and a new product arrive through the store...
        let mut append = shopgraph()
            .args(["events", "append"])
            .args(db.args())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            &mut append.stdin.take().unwrap(),
            br#"{"key": "n1", "user": "shop:li", "product": "LENS-35-L", "kind": "purchase", "at_ms": 1737000000000}
"#,
        )
        .unwrap();
        assert!(append.wait_with_output().unwrap().status.success());
        let more = dir.path().join("more");
        fs::create_dir(&more).unwrap();
        fs::write(
            more.join("products.jsonl"),
            r#"{"sku": "LENS-85-L", "title": "85 mm f/1.8 portrait lens", "brand": "Lumix", "price": 599, "stock": 2, "attributes": {"mount": "L"}}"#,
        )
        .unwrap();
        run_ok(&["import", more.to_str().unwrap()], &db);

        // ...and the snapshot takes them in place, equal to a rebuild.
        let (ok, out, err) = graph(&["verify"], &db, &snapshot);
        assert!(
            ok && out.contains("in place equals rebuild: 28 nodes, 36 edges"),
            "{name}: {out}{err}"
        );
        assert!(err.contains("brought the graph snapshot up to date in place"), "{name}: {err}");
        assert!(!err.contains("rebuilding"), "{name}: {err}");
        let (_, out, _) = graph(&["explain", "shop:ana", "LENS-85-L"], &db, &snapshot);
        assert!(
            out.starts_with("you looked at 2 products by Lumix; this is made by Lumix\n"),
            "{name}: {out}"
        );

        // Agent queries.
        let (_, out, _) =
            graph(&["connect", "sku:CAM-X100", "sku:LENS-85-L", "--hops", "2"], &db, &snapshot);
        assert!(out.contains("-made-by-> brand:lumix <-made-by- product:7"), "{name}: {out}");
        let (_, out, _) =
            graph(&["bought-rated-low", "9787115428028", "9780316373050"], &db, &snapshot);
        assert_eq!(out, "shop:li\n", "{name}");
        let (_, out, _) =
            graph(&["neighbours", "brand:lumix", "--relation", "made-by"], &db, &snapshot);
        assert_eq!(out.lines().count(), 3, "{name}: {out}");

        // A deletion cannot be followed in place: the graph is rebuilt.
        run_ok(&["delete-user", "shop:li"], &db);
        let (ok, out, err) = graph(&["stats"], &db, &snapshot);
        assert!(ok && out.contains("nodes: user                  2"), "{name}: {out}");
        assert!(
            err.contains(
                "rebuilding the graph from the store: products, users or interests were deleted"
            ),
            "{err}"
        );

        // A damaged snapshot is refused whole and rebuilt, never half-loaded.
        let mut bytes = fs::read(&snapshot).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle..middle + 4].copy_from_slice(b"oops");
        fs::write(&snapshot, bytes).unwrap();
        let (ok, out, err) = graph(&["stats"], &db, &snapshot);
        assert!(ok && out.contains("nodes: user                  2"), "{name}: {out}");
        assert!(
            err.contains("snapshot checksum does not match: the file is corrupt"),
            "{name}: {err}"
        );
        fs::write(&snapshot, b"not a snapshot").unwrap();
        let (ok, _, err) = graph(&["stats"], &db, &snapshot);
        assert!(ok && err.contains("not a shopgraph graph snapshot"), "{name}: {err}");
    }
}

#[test]
fn bad_graph_queries_get_clear_errors() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("graph.snapshot").display().to_string();
    run_ok(&["import", &graph_data("examples/shop")], &db);
    for (args, expected) in [
        (vec!["explain", "shop:nobody", "CAM-X100"], "no user with id \"shop:nobody\""),
        (vec!["similar", "NO-SUCH-SKU"], "no product with sku \"NO-SUCH-SKU\""),
        (vec!["neighbours", "nonsense"], "\"nonsense\" is not a node"),
        (vec!["neighbours", "author:nobody"], "no such node: author:nobody"),
        (vec!["neighbours", "sku:CAM-X100", "--relation", "likes"], "unknown relation \"likes\""),
        (
            vec!["connect", "sku:CAM-X100", "sku:LENS-35-L", "--hops", "9"],
            "hops 9 is over the limit of 4",
        ),
        (
            vec!["neighbours", "sku:CAM-X100", "--limit", "5000"],
            "limit 5000 is over the limit of 1000",
        ),
    ] {
        let (ok, _, err) = graph(&args, &db, &snapshot);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn movielens_similar_and_explained_through_freebase() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("graph.snapshot").display().to_string();
    run_ok(&["import", &graph_data("excerpts/ml-100k")], &db);
    let (_, out, _) = graph(&["similar", "ml-100k:1", "--k", "3"], &db, &snapshot);
    assert!(out.contains("Babe  (shares Children's"), "{out}");
    let (_, out, _) = graph(&["explain", "ml-100k:1", "ml-100k:22", "--k", "1"], &db, &snapshot);
    assert!(out.starts_with("you rated Shanghai Triad (Yao a yao yao dao waipo qiao); this shares a film genre m.02wtdps\n"), "{out}");
    assert!(
        out.contains(
            "-linked-to-> entity:m.0bxsk -film.film.genre-> entity:m.02wtdps <-film.film.genre- entity:m.08vz4p <-linked-to- product:15"
        ),
        "{out}"
    );
}
