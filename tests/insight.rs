//! `shopgraph insight`: segments, rules, sequences, forecasts, audiences and experiments
//! over a real MovieLens excerpt in SQLite and PostgreSQL; what is stored reaches the
//! graph; bad input is refused with a reason and stores nothing.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::Stdio;

use crate::support::{TestDb, block_on, graph_data, run, run_ok, shopgraph};

fn append_events(db: &TestDb, lines: &str) {
    let mut append = shopgraph()
        .args(["events", "append"])
        .args(db.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    append.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(append.wait_with_output().unwrap().status.success());
}

#[track_caller]
fn refused(args: &[&str], db: &TestDb, why: &str) {
    let out = run(args, db);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(err.contains(why), "{args:?}: {err}");
}

#[test]
fn insight_reports_store_segments_and_rules_and_honour_every_audience_filter() {
    for db in TestDb::both() {
        let name = db.name();
        run_ok(&["import", &graph_data("excerpts/ml-100k")], &db);

        // Segments: k chosen by silhouette, repeatable with a seed, stored as version 1.
        let args = ["insight", "segments", "--k-min", "2", "--k-max", "4", "--seed", "7"];
        let first = run_ok(&args, &db);
        assert!(first.contains("chosen by silhouette"), "{name}: {first}");
        assert!(first.contains("silhouette by k: k=2: "), "{name}: {first}");
        assert_eq!(
            run_ok(&args, &db).lines().nth(2),
            first.lines().nth(2),
            "{name}: a seed repeats"
        );
        let saved = run_ok(&[&args[..], &["--save"]].concat(), &db);
        assert!(saved.contains("stored as segment version 1"), "{name}: {saved}");
        let store = db.store();
        let segments = block_on(store.segments(1)).unwrap();
        assert!(segments.len() >= 2, "{name}: {segments:?}");
        assert!(segments.iter().all(|s| s.n_members > 0 && !s.description.is_empty()));

        // Rules: stored, and the graph gets bought-together edges from them.
        let rules = run_ok(
            &[
                "insight",
                "rules",
                "--min-support",
                "0.01",
                "--min-confidence",
                "0.3",
                "--min-lift",
                "1",
                "--save",
            ],
            &db,
        );
        assert!(rules.contains("stored") && rules.contains("as rule version 1"), "{name}: {rules}");
        let stored = block_on(store.rules(1)).unwrap();
        assert!(!stored.is_empty(), "{name}: {rules}");
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("g.snapshot").display().to_string();
        let built = run_ok(&["graph", "build", "--snapshot", &snapshot], &db);
        let stats = run_ok(&["graph", "stats", "--snapshot", &snapshot], &db);
        assert!(stats.contains("bought-together"), "{name}: {built}{stats}");
        assert!(stats.contains("member-of"), "{name}: {stats}");

        // Audiences: each filter holds for every member, with a reason for each.
        let csv = dir.path().join("audience.csv");
        let out =
            run_ok(&["insight", "audience", "--segment", "0", "--csv", csv.to_str().unwrap()], &db);
        assert!(out.starts_with("audience: "), "{name}: {out}");
        let text = std::fs::read_to_string(&csv).unwrap();
        let listed: Vec<&str> = text.lines().skip(1).collect();
        let members: HashSet<String> = block_on(store.segment_members(segments[0].id))
            .unwrap()
            .into_iter()
            .map(|(u, _)| block_on(store.user(u)).unwrap().unwrap().external_id)
            .collect();
        assert_eq!(listed.len(), members.len(), "{name}: the whole segment");
        for line in &listed {
            let shopper = line.split(',').next().unwrap().trim_matches('"');
            assert!(members.contains(shopper), "{name}: {line}");
            assert!(line.contains("in segment 0 ("), "{name}: {line}");
        }
        let r = &stored[0];
        let sku = |id| block_on(store.product(id)).unwrap().unwrap().sku;
        let has = r.antecedent.iter().map(|&p| sku(p)).collect::<Vec<_>>().join(",");
        let lacks = r.consequent.iter().map(|&p| sku(p)).collect::<Vec<_>>().join(",");
        let out = run_ok(
            &["insight", "audience", "--has", &has, "--lacks", &lacks, "--active-days", "60"],
            &db,
        );
        for line in out.lines().skip(1).filter(|l| l.starts_with("  ml-100k:")) {
            assert!(line.contains(" but not ") && line.contains("; active on "), "{name}: {line}");
        }
        let out = run_ok(
            &["insight", "audience", "--propensity", &lacks, "--min-propensity", "0.3"],
            &db,
        );
        for line in out.lines().skip(1).filter(|l| l.starts_with("  ml-100k:")) {
            assert!(line.contains("likely to want"), "{name}: {line}");
        }

        // Sequences and forecasts (a 4-week season: the excerpt covers seven months).
        let seq = run_ok(&["insight", "sequences", "--top", "3"], &db);
        assert!(
            seq.contains("hit rate@10") && seq.contains("between categories:"),
            "{name}: {seq}"
        );
        let svg = dir.path().join("comedy.svg");
        let f = run_ok(
            &[
                "insight",
                "forecast",
                "--period",
                "4",
                "--horizon",
                "4",
                "--of",
                "category:movies/comedy",
                "--svg",
                svg.to_str().unwrap(),
            ],
            &db,
        );
        assert!(
            f.contains("products") && f.contains("categories") && f.contains("MASE"),
            "{name}: {f}"
        );
        assert!(f.contains("category:movies/comedy (Comedy): the next 8 weeks"), "{name}: {f}");
        let chart = std::fs::read_to_string(&svg).unwrap();
        assert!(chart.starts_with("<svg") && chart.contains("stroke-dasharray"), "{name}");

        // Experiments: impressions and clicks split between arms by a stable hash.
        let mut lines = String::new();
        for u in ["712", "715", "716", "721", "728", "747"] {
            lines.push_str(&format!(
                "{{\"key\": \"s{u}\", \"user\": \"ml-100k:{u}\", \"product\": \"ml-100k:50\", \"kind\": \"recommendation_shown\", \"at_ms\": 893000000000}}\n\
                 {{\"key\": \"c{u}\", \"user\": \"ml-100k:{u}\", \"product\": \"ml-100k:50\", \"kind\": \"click\", \"at_ms\": 893000060000}}\n"
            ));
        }
        append_events(&db, &lines);
        let e = run_ok(&["insight", "experiment", "ranker", "--arms", "personal=1,popular=1"], &db);
        let rows: Vec<&str> = e
            .lines()
            .filter(|l| l.starts_with("  personal") || l.starts_with("  popular"))
            .collect();
        let shoppers: usize = rows
            .iter()
            .take(2)
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(shoppers, 6, "{name}: {e}");
        assert!(e.contains("100.00%"), "{name}: every impression was clicked: {e}");
        assert_eq!(
            run_ok(&["insight", "experiment", "ranker", "--arms", "personal=1,popular=1"], &db),
            e
        );

        // Bad input: a clear reason, and nothing new stored.
        refused(
            &["insight", "rules", "--min-support", "2", "--save"],
            &db,
            "min_support must be in (0, 1]",
        );
        refused(&["insight", "rules", "--min-confidence", "NaN"], &db, "min_confidence");
        refused(
            &["insight", "rules", "--min-support", "0.9", "--save"],
            &db,
            "no rule met the thresholds",
        );
        refused(&["insight", "segments", "--k-min", "1"], &db, "k_min must be at least 2");
        refused(
            &["insight", "audience", "--segment", "99"],
            &db,
            "segment 99 is not in the current segmentation",
        );
        refused(&["insight", "audience"], &db, "an audience needs at least one filter");
        refused(
            &["insight", "audience", "--has", "no-such-sku"],
            &db,
            "no product has the sku no-such-sku",
        );
        refused(&["insight", "experiment", "x", "--arms", "a=1"], &db, "needs at least two arms");
        assert_eq!(block_on(store.latest_rules_version()).unwrap(), Some(1), "{name}");
        assert_eq!(block_on(store.latest_segment_version()).unwrap(), Some(1), "{name}");
    }
}

#[test]
fn an_empty_store_has_nothing_to_analyse() {
    let db = TestDb::sqlite();
    run_ok(&["migrate"], &db);
    refused(&["insight", "segments"], &db, "nothing to analyse");
    refused(&["insight", "rules"], &db, "nothing to analyse");
    refused(&["insight", "forecast"], &db, "nothing to analyse");
}

/// The insight API over HTTP on the MovieLens excerpt, with an experiment configured:
/// admins recompute segments and rules (the graph and the recommender follow), agents
/// read tables, audiences as CSV and forecasts as SVG, and customers' lists name their
/// arm.
#[test]
fn marketing_and_operations_over_http() {
    use serde_json::{Value, json};

    use crate::server::{ADMIN, AGENT, STOREFRONT, call, refused, serve_again};

    let db = TestDb::sqlite();
    run_ok(&["import", &graph_data("excerpts/ml-100k")], &db);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shopgraph.toml");
    std::fs::write(
        &config,
        "[experiment]\nname = \"ranker\"\narms = [\"personal=1\", \"popular=1\"]\n",
    )
    .unwrap();
    let served = serve_again(&db, &[("SHOPGRAPH_CONFIG", config.to_str().unwrap())]);
    let base = served.base.as_str();
    block_on(async {
        let (s, none) = call(base, "GET", "/api/v1/insight/segments", Some(AGENT), None).await;
        assert_eq!((s, none["version"].clone()), (200, Value::Null), "{none}");

        // Recomputing is for admins, with checked parameters.
        let seg = json!({"k_min": 2, "k_max": 3, "seed": 1});
        let (s, _) =
            call(base, "POST", "/api/v1/insight/segments", Some(AGENT), Some(seg.clone())).await;
        assert_eq!(s, 403);
        let bad =
            call(base, "POST", "/api/v1/insight/segments", Some(ADMIN), Some(json!({"k_min": 1})))
                .await;
        refused(bad, 400, "k_min must be at least 2");
        let huge = json!({"k_min": 2, "k_max": usize::MAX});
        let huge = call(base, "POST", "/api/v1/insight/segments", Some(ADMIN), Some(huge)).await;
        refused(huge, 400, "k_max must be at most 100");
        let (s, run) = call(base, "POST", "/api/v1/insight/segments", Some(ADMIN), Some(seg)).await;
        assert_eq!(s, 200, "{run}");
        assert_eq!(run["version"], 1);
        assert_eq!(run["tried"].as_array().unwrap().len(), 2, "{run}");
        let sizes: i64 = run["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["shoppers"].as_i64().unwrap())
            .sum();
        assert_eq!(sizes as u64, run["memberships"].as_u64().unwrap(), "{run}");
        // The graph has the memberships at once.
        let (_, near) = call(
            base,
            "GET",
            "/api/v1/agent/graph/neighbours?node=user:ml-100k:712&relation=member-of",
            Some(AGENT),
            None,
        )
        .await;
        assert_eq!(near.as_array().map(Vec::len), Some(1), "{near}");
        // A shopper the segmentation saw has a stored segment; one who came later is
        // assigned to the nearest centre of their profile.
        let (s, known) =
            call(base, "GET", "/api/v1/insight/segments/shopper/ml-100k:712", Some(AGENT), None)
                .await;
        assert_eq!((s, known["stored"].as_bool()), (200, Some(true)), "{known}");
        let (s, _) = call(
            base,
            "PUT",
            "/api/v1/users",
            Some(STOREFRONT),
            Some(json!({"users": [{"id": "web:newbie"}]})),
        )
        .await;
        assert_eq!(s, 200);
        let events: Vec<Value> = ["ml-100k:1", "ml-100k:50", "ml-100k:56"]
            .iter()
            .enumerate()
            .map(|(i, sku)| json!({"key": format!("newbie-{i}"), "user": "web:newbie", "product": sku, "kind": "view", "at_ms": 893_500_000_000i64 + i as i64}))
            .collect();
        let (s, _) =
            call(base, "POST", "/api/v1/events", Some(STOREFRONT), Some(json!({"events": events})))
                .await;
        assert_eq!(s, 200);
        let (s, new) =
            call(base, "GET", "/api/v1/insight/segments/shopper/web:newbie", Some(AGENT), None)
                .await;
        assert_eq!((s, new["stored"].as_bool()), (200, Some(false)), "{new}");
        assert!(new["description"].as_str().is_some_and(|d| !d.is_empty()), "{new}");
        refused(
            call(base, "GET", "/api/v1/insight/segments/shopper/web:nobody", Some(AGENT), None)
                .await,
            404,
            "no segment",
        );

        let bad = call(
            base,
            "POST",
            "/api/v1/insight/rules",
            Some(ADMIN),
            Some(json!({"min_support": 2.0})),
        )
        .await;
        refused(bad, 400, "min_support must be in (0, 1]");
        let mining = json!({"min_support": 0.01, "min_confidence": 0.3, "min_lift": 1.0});
        let (s, mined) =
            call(base, "POST", "/api/v1/insight/rules", Some(ADMIN), Some(mining)).await;
        assert_eq!(s, 200, "{mined}");
        assert!(mined["stored"].as_u64().unwrap() > 0, "{mined}");
        let (_, rules) = call(base, "GET", "/api/v1/insight/rules?n=5", Some(AGENT), None).await;
        let first = &rules["rules"][0];
        assert!(!first["has_titles"][0].as_str().unwrap().is_empty(), "{rules}");
        // The storefront's "frequently bought together" leads with the rules once the
        // recommender is refitted (which the new rules start).
        let sku = first["has"][0].as_str().unwrap().to_owned();
        let started = std::time::Instant::now();
        loop {
            let path = format!("/api/v1/products/{sku}/bought-together?n=5");
            let (_, list) = call(base, "GET", &path, Some(STOREFRONT), None).await;
            let reason = list["items"][0]["reason"].as_str().unwrap_or("").to_owned();
            if reason.starts_with("often chosen together: ") {
                break;
            }
            assert!(started.elapsed().as_secs() < 180, "no rule-based list: {list}");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }

        // Audiences: JSON with reasons, the whole of them as CSV, clear refusals.
        let (s, aud) = call(
            base,
            "POST",
            "/api/v1/insight/audience?n=3",
            Some(AGENT),
            Some(json!({"segment": 0})),
        )
        .await;
        assert_eq!(s, 200, "{aud}");
        assert!(aud["members"].as_array().unwrap().len() <= 3);
        assert!(
            aud["members"][0]["reasons"][0].as_str().unwrap().starts_with("in segment 0"),
            "{aud}"
        );
        let (s, csv) = call(
            base,
            "POST",
            "/api/v1/insight/audience?format=csv",
            Some(AGENT),
            Some(json!({"segment": 0})),
        )
        .await;
        let csv = csv.as_str().unwrap().to_owned();
        assert_eq!(s, 200);
        assert!(csv.starts_with("shopper,reasons\n"), "{csv}");
        assert_eq!(csv.lines().count() - 1, aud["size"].as_u64().unwrap() as usize);
        let empty =
            call(base, "POST", "/api/v1/insight/audience", Some(AGENT), Some(json!({}))).await;
        refused(empty, 400, "at least one filter");
        let ghost = call(
            base,
            "POST",
            "/api/v1/insight/audience",
            Some(AGENT),
            Some(json!({"segment": 99})),
        )
        .await;
        refused(ghost, 400, "segment 99");
        let has = json!({"has": ["ml-100k:50"], "active_days": 365});
        let (s, holders) =
            call(base, "POST", "/api/v1/insight/audience", Some(AGENT), Some(has)).await;
        assert_eq!(s, 200, "{holders}");
        assert!(holders["size"].as_u64().unwrap() > 0, "{holders}");
        for m in holders["members"].as_array().unwrap() {
            let reasons = m["reasons"].as_array().unwrap();
            assert!(reasons[0].as_str().unwrap().starts_with("has \""), "{m}");
            assert!(reasons[1].as_str().unwrap().starts_with("active on "), "{m}");
        }
        let typo = call(
            base,
            "POST",
            "/api/v1/insight/audience",
            Some(AGENT),
            Some(json!({"segmnet": 0})),
        )
        .await;
        refused(typo, 422, "segmnet");

        // Forecasts as JSON and as a chart.
        let (s, f) = call(
            base,
            "GET",
            "/api/v1/insight/forecast?of=category:movies/comedy&weeks=4",
            Some(AGENT),
            None,
        )
        .await;
        assert_eq!(s, 200, "{f}");
        assert_eq!(f["forecast"].as_array().unwrap().len(), 4);
        assert!(f["history"].as_array().unwrap().len() > 20, "{f}");
        let (s, svg) = call(
            base,
            "GET",
            "/api/v1/insight/forecast?of=category:movies/comedy&format=svg",
            Some(AGENT),
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert!(svg.as_str().unwrap().starts_with("<svg"), "{svg}");
        refused(
            call(base, "GET", "/api/v1/insight/forecast?of=nothing", Some(AGENT), None).await,
            400,
            "sku:SKU or category:KEY",
        );

        // What shoppers look at next.
        let (s, next) =
            call(base, "GET", "/api/v1/insight/next/ml-100k:50?n=3", Some(STOREFRONT), None).await;
        assert_eq!(s, 200, "{next}");
        assert!(next["items"].as_array().unwrap().len() <= 3);

        // The experiment: every customer's list names an arm, always the same one.
        let mut seen = HashSet::new();
        for u in ["1", "10", "101", "102", "104", "106", "108", "109", "11", "110"] {
            let path = format!("/api/v1/users/ml-100k:{u}/recommendations?n=3");
            let (_, a) = call(base, "GET", &path, Some(STOREFRONT), None).await;
            let (_, b) = call(base, "GET", &path, Some(STOREFRONT), None).await;
            assert_eq!(a["arm"], b["arm"], "{a} {b}");
            seen.insert(a["arm"].as_str().unwrap_or_else(|| panic!("no arm: {a}")).to_owned());
        }
        assert_eq!(seen.len(), 2, "ten customers fall in both arms: {seen:?}");
        let (s, report) = call(
            base,
            "GET",
            "/api/v1/insight/experiments/ranker?arms=personal=1,popular=1",
            Some(AGENT),
            None,
        )
        .await;
        assert_eq!(s, 200, "{report}");
        assert_eq!(report["arms"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(
            report["by_segment"].as_array().unwrap().len(),
            run["k"].as_u64().unwrap() as usize
        );
    });
}
