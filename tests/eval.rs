//! `shopgraph eval` on the real MovieLens-100K: the split files others score, the table,
//! and peer rankings read back (and refused when they name what the split lacks).

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use crate::support::{repo_root, shopgraph};

fn data_dir() -> String {
    let cache = std::env::var_os("SHOPGRAPH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache"));
    cache.join("data").display().to_string()
}

fn model_dir() -> String {
    let data = PathBuf::from(data_dir());
    data.parent().unwrap().join("models/all-MiniLM-L6-v2").display().to_string()
}

fn eval(args: &[&str]) -> (bool, String, String) {
    let out = shopgraph()
        .arg("eval")
        .args(["--data-dir", &data_dir(), "--model-dir", &model_dir()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn pairs(path: &std::path::Path) -> HashSet<(String, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn evaluation_writes_its_splits_and_scores_peers_alike() {
    let splits = tempfile::tempdir().unwrap();
    let dir = splits.path().display().to_string();
    let (ok, out, err) = eval(&["--dataset", "ml-100k", "--splits-dir", &dir, "--splits-only"]);
    assert!(ok, "{err}");
    let folders: Vec<&str> = out.lines().collect();
    assert_eq!(folders.len(), 2, "{out}");

    // The files: all 100,000 ratings, none in both training and test.
    let random = splits.path().join("ml-100k-random");
    let (train, test) = (pairs(&random.join("train.tsv")), pairs(&random.join("test.tsv")));
    assert!(train.is_disjoint(&test));
    assert_eq!(train.len() + test.len(), 100_000);
    let (fit, valid) = (pairs(&random.join("fit.tsv")), pairs(&random.join("valid.tsv")));
    assert!(fit.is_disjoint(&valid) && fit.union(&valid).count() == train.len());

    // A "peer" that recommends, to every test user, the first 20 items of the test file:
    // read back and scored by the same code as ours.
    let items: Vec<String> =
        test.iter().map(|(_, i)| i.clone()).collect::<HashSet<_>>().into_iter().take(20).collect();
    let users: HashSet<&String> = test.iter().map(|(u, _)| u).collect();
    let peers = random.join("peers");
    fs::create_dir_all(&peers).unwrap();
    let lines: Vec<String> = users.iter().map(|u| format!("{u}\t{}", items.join("\t"))).collect();
    fs::write(peers.join("fixed-list.tsv"), lines.join("\n")).unwrap();
    fs::write(peers.join("fixed-list.fit"), "1.5\n").unwrap();

    let (ok, out, err) =
        eval(&["--dataset", "ml-100k", "--splits-dir", &dir, "--peers", "--models", "pop,knn,als"]);
    assert!(ok, "{err}");
    for model in ["popularity", "item-kNN", "ALS", "peer: fixed-list"] {
        assert!(out.contains(model), "{model} missing:\n{out}");
    }
    // Learned models find something: NDCG@10 of ALS on the random split is well above 0.
    let als = out.lines().find(|l| l.trim_start().starts_with("ALS")).unwrap();
    let ndcg10: f64 = als.split_whitespace().rev().nth(6).unwrap().parse().unwrap();
    assert!(ndcg10 > 0.2, "{als}");

    // A peer file naming an item the data set lacks is an error that says where.
    let user = test.iter().next().unwrap().0.clone();
    fs::write(peers.join("broken.tsv"), format!("{user}\tno-such-movie\n")).unwrap();
    let (ok, _, err) =
        eval(&["--dataset", "ml-100k", "--splits-dir", &dir, "--peers", "--models", "pop"]);
    assert!(!ok);
    assert!(err.contains("broken.tsv") && err.contains("no-such-movie"), "{err}");
}

/// The generators that read the items' text and graph, and the fusion model (profile
/// transformer and the ranker over every generator), end to end on MovieLens-100K with
/// the real encoder: two epochs only, so the figures are not the table's, but every
/// row must beat popularity's chance level.
#[test]
fn content_graph_and_fusion_rows_come_out_of_the_real_pipeline() {
    let splits = tempfile::tempdir().unwrap();
    let dir = splits.path().display().to_string();
    let models = "pop,knn,ease,content,graph,fusion";
    let (ok, out, err) = eval(&[
        "--dataset",
        "ml-100k",
        "--splits-dir",
        &dir,
        "--models",
        models,
        "--max-epochs",
        "2",
    ]);
    assert!(ok, "{err}");
    let random = out.split("leave-last-out").next().unwrap();
    let ndcg = |prefix: &str| -> f64 {
        let line = random
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{out}"));
        line.split_whitespace().rev().nth(6).unwrap().parse().unwrap()
    };
    let popularity = ndcg("popularity");
    for model in ["content: BERT profile", "graph: KG paths", "profile transformer", "EASE"] {
        assert!(ndcg(model) > 0.0, "{model}:\n{out}");
    }
    // The ranker reads EASE and item-kNN among others: it is at least near the best.
    let ranker = ndcg("fusion ranker");
    assert!(ranker > popularity && ranker > 0.9 * ndcg("EASE"), "{out}");
    // The item vectors were written beside the split, for the next run.
    assert!(splits.path().join("ml-100k-random/item-vectors.f32").is_file());
}

fn recommend(args: &[&str]) -> (bool, String, String) {
    let out = shopgraph()
        .arg("recommend")
        .args(["--data-dir", &data_dir()])
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The storefront's call from the terminal: explanations in words for a known user and
/// a guest, the popular fallback for a stranger (said, not hidden), and bad input
/// refused with what was wrong.
#[test]
fn recommend_explains_falls_back_and_refuses_bad_input() {
    let (ok, out, err) = recommend(&["--user", "ml-100k:1", "-n", "5"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("personal for ml-100k:1:"), "{out}");
    let explanations: Vec<&str> =
        out.lines().filter(|l| l.starts_with("     ")).map(str::trim).collect();
    assert_eq!(explanations.len(), 5, "{out}");
    assert!(
        explanations.iter().all(|e| e.starts_with("Same ")
            || e.starts_with("In ")
            || e.starts_with("From the ")
            || e.starts_with("Shoppers who chose")),
        "{out}"
    );

    let (ok, out, err) = recommend(&[
        "--session",
        "ml-100k:50,ml-100k:181",
        "--category",
        "movies/comedy",
        "-n",
        "3",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("from this session"), "{out}");

    // Interests alone: the content generator on the interests' BERT vectors.
    let cache = tempfile::tempdir().unwrap();
    let model_dir = model_dir();
    let (ok, out, err) = recommend(&[
        "--interests",
        "science fiction in space=1,romance=0.5",
        "-n",
        "3",
        "--model-dir",
        &model_dir,
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("from stated interests"), "{out}");
    assert!(out.contains("Matches your interest in science fiction in space"), "{out}");
    let (ok, _, err) = recommend(&["--interests", "romance=lots"]);
    assert!(!ok && err.contains("the weight after = is not a number"), "{err}");

    let (ok, out, err) = recommend(&["--user", "nobody", "-n", "3"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("popular (nothing known about the shopper)"), "{out}");
    assert!(err.contains("\"nobody\" is not a user of ml-100k"), "{err}");

    for (args, message) in [
        (&["--user", "ml-100k:1", "-n", "0"][..], "n must be between 1 and 100, got 0"),
        (&["--user", "ml-100k:1", "-n", "101"][..], "n must be between 1 and 100, got 101"),
        (&["--session", "ml-100k:1,no-such-movie"][..], "unknown item \"no-such-movie\""),
        (&["--user", "ml-100k:1", "--category", "movies/nope"][..], "no category \"movies/nope\""),
    ] {
        let (ok, _, err) = recommend(args);
        assert!(!ok, "{args:?} was accepted");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
