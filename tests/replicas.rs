//! Two `shopgraph serve` replicas on one PostgreSQL, a server of the test's own so that
//! it can be restarted: writes through one reach the other, a singleton job runs once
//! per period for both, the second replica's model is the first one's `/v1` endpoint,
//! and under steady traffic neither a PostgreSQL restart nor a replica killed with
//! SIGKILL loses an acknowledged event.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shopgraph_store::EventFilter;

use crate::server::{ADMIN, STOREFRONT, call, raw, serve, serve_again, sse};
use crate::support::{OwnPostgres, TestDb, block_on};

/// How long a replica may take to show another's write: its follower looks every
/// 500 ms and its recommender is refitted every second (the config below); the rest is
/// slack for a busy two-core machine.
const BOUND: Duration = Duration::from_secs(30);

#[test]
#[allow(clippy::print_stdout, reason = "how long each step took is worth seeing in a run")]
fn two_replicas_share_writes_run_jobs_once_and_lose_no_acknowledged_event() {
    let pg = OwnPostgres::start();
    let db = TestDb::Own(pg);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("replica.toml");
    std::fs::write(&config, "follow_ms = 500\nrefit_secs = 1\n\n[jobs]\nsegments_every_secs = 4\n")
        .unwrap();
    let config = config.display().to_string();
    let mut a = serve(&db, &[("SHOPGRAPH_CONFIG", &config)]);
    // B has no model of its own: it asks A's OpenAI-compatible endpoint, as replicas
    // ask a GPU host.
    let llm = format!("{}/v1", a.base);
    let b = serve_again(
        &db,
        &[
            ("SHOPGRAPH_CONFIG", &config),
            ("SHOPGRAPH_LLM_URL", &llm),
            ("SHOPGRAPH_LLM_API_KEY", STOREFRONT),
        ],
    );
    let store = db.store();

    block_on(async {
        // ---- A product written through A is found by B's search.
        let product = json!({ "sku": "replica-0001", "title": "The Lighthouse Keeper of Quillon",
                              "author": "Mara Venn", "price": 12.5, "stock": 4, "categories": [] });
        let (s, up) = call(
            &a.base,
            "PUT",
            "/api/v1/products",
            Some(STOREFRONT),
            Some(json!({ "products": [product] })),
        )
        .await;
        assert_eq!(s, 200, "{up}");
        within(BOUND, "B's search finds A's new product", || async {
            let (s, found) =
                call(&b.base, "GET", "/api/v1/search?q=quillon", Some(STOREFRONT), None).await;
            s == 200 && found["hits"][0]["sku"] == "replica-0001"
        })
        .await;

        // ---- Purchases through A reach B's recommendations: once B has refitted, the
        // bought books leave the shopper's list.
        let (s, up) = call(
            &a.base,
            "PUT",
            "/api/v1/users",
            Some(STOREFRONT),
            Some(json!({ "users": [{ "id": "replica:zoe" }] })),
        )
        .await;
        assert_eq!(s, 200, "{up}");
        let before = skus(&b.base, "replica:zoe").await;
        assert!(before.len() >= 2, "{before:?}");
        let bought = &before[..2];
        let at = shopgraph_core::now_ms();
        let events: Vec<Value> = bought
            .iter()
            .enumerate()
            .map(|(i, sku)| json!({ "key": format!("zoe-{i}"), "user": "replica:zoe", "product": sku, "kind": "purchase", "at_ms": at + i as i64 }))
            .collect();
        let (s, ok) = call(
            &a.base,
            "POST",
            "/api/v1/events",
            Some(STOREFRONT),
            Some(json!({ "events": events })),
        )
        .await;
        assert_eq!((s, ok["inserted"].as_u64()), (200, Some(2)), "{ok}");
        within(BOUND, "B's recommendations leave out what zoe bought through A", || async {
            let now = skus(&b.base, "replica:zoe").await;
            !now.is_empty() && now.iter().all(|sku| !bought.contains(sku))
        })
        .await;
        // And B's graph has the purchases: zoe's neighbours there are the books.
        let (s, nb) = call(
            &b.base,
            "GET",
            "/api/v1/agent/graph/neighbours?node=user:replica:zoe",
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(s, 200, "{nb}");
        let refs: Vec<&str> =
            nb.as_array().unwrap().iter().map(|n| n["node"]["ref"].as_str().unwrap()).collect();
        for sku in bought {
            assert!(refs.contains(&format!("sku:{sku}").as_str()), "{sku} not in {refs:?}");
        }

        // ---- The segmentation job runs once per period for both replicas.
        within(BOUND, "two segmentation runs finished", || async {
            let runs = store.job_runs(100).await.unwrap();
            runs.iter().filter(|r| r.job == "segments" && r.finished_at.is_some()).count() >= 2
        })
        .await;
        let runs = store.job_runs(100).await.unwrap();
        let finished: Vec<_> =
            runs.iter().filter(|r| r.job == "segments" && r.finished_at.is_some()).collect();
        for r in &finished {
            assert!(r.outcome.as_deref().is_some_and(|o| o.starts_with("ok")), "{r:?}");
        }
        // One stored segmentation per run: no slot was run by both replicas.
        let versions = store.latest_segment_version().await.unwrap().unwrap();
        let started = runs.iter().filter(|r| r.job == "segments").count() as i64;
        assert!(
            versions >= finished.len() as i64 && versions <= started,
            "{versions} versions for {} finished and {started} started runs",
            finished.len()
        );
    });

    // ---- The injection suite through B, whose assistant's model is A's OpenAI-compatible
    // endpoint: the guards hold with the model behind a network too.
    block_on(async {
        crate::injection::plant_reviews(&a.base).await;
        let failures = crate::injection::through_web(&b.base, &store).await;
        assert!(failures.is_empty(), "the injection suite failed:\n{}", failures.join("\n"));
    });

    // ---- Steady traffic through both replicas while PostgreSQL restarts and A dies.
    let traffic = Traffic::start(vec![a.base.clone(), b.base.clone()]);
    traffic.wait_for(30);
    let TestDb::Own(pg) = &db else { unreachable!() };
    // A crash of the database, down long enough for waiting requests to give up.
    pg.down("immediate");
    std::thread::sleep(Duration::from_secs(8));
    pg.up();
    traffic.wait_for(30);
    a.kill();
    traffic.wait_for(30);
    let report = traffic.stop();
    println!(
        "replicas: {} events acknowledged, {} refused with 503, {} refused connections",
        report.acked.len(),
        report.unavailable,
        report.refused
    );
    assert!(
        report.unexpected.is_empty(),
        "answers other than 200 and 503: {:?}",
        report.unexpected
    );
    assert_eq!(report.hung, 0, "requests that hung");
    assert!(report.unavailable > 0, "no request saw the database down");

    block_on(async {
        // Nothing acknowledged is lost.
        let user = store.user_by_external_id("replica:traffic").await.unwrap().unwrap();
        let stored: HashSet<String> = store
            .events(&EventFilter { user: Some(user.id), ..EventFilter::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.idempotency_key)
            .collect();
        let lost: Vec<&String> = report.acked.iter().filter(|k| !stored.contains(*k)).collect();
        assert!(lost.is_empty(), "{} acknowledged events lost: {lost:?}", lost.len());

        // B carries on without A, its model host: the assistant answers from its tools.
        let (s, ready) = call(&b.base, "GET", "/readyz", None, None).await;
        assert_eq!(s, 200, "{ready}");
        let (s, chat) = call(&b.base, "POST", "/api/v1/chat/sessions", None, Some(json!({}))).await;
        assert_eq!(s, 200, "{chat}");
        let token = chat["token"].as_str().unwrap().to_owned();
        for question in ["How much is The Hobbit?", "Is The Joy Luck Club in stock?"] {
            let body = json!({ "text": question }).to_string().into_bytes();
            let (s, _, text) = raw(
                &b.base,
                "POST",
                "/api/v1/chat/messages",
                Some(&token),
                Some(("application/json", body)),
            )
            .await;
            assert_eq!(s, 200, "{text}");
            let events = sse(&text);
            let said: String = events
                .iter()
                .filter(|(e, _)| e == "text" || e == "replace")
                .map(|(_, d)| d.as_str())
                .collect();
            assert!(said.contains("EUR"), "{question}: {said:?} in {events:?}");
            assert!(events.iter().any(|(e, _)| e == "done"), "{events:?}");
        }
    });
}

/// The skus of a shopper's recommendations on `base`.
async fn skus(base: &str, user: &str) -> Vec<String> {
    let (s, list) = call(
        base,
        "GET",
        &format!("/api/v1/users/{user}/recommendations?n=10"),
        Some(STOREFRONT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sku"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `check` until it holds, failing the test after `bound`.
#[allow(clippy::print_stdout, reason = "how long it took is worth seeing in a run")]
async fn within<F, Fut>(bound: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < bound, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("replicas: {what} after {:.1} s", started.elapsed().as_secs_f32());
}

/// Events for one shopper, each with its own key, sent one after another to the
/// replicas in turn; a refused or failed send is sent again (same key) to the next
/// replica, as a load balancer would, until one acknowledges it.
struct Traffic {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<Report>>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Clone, Debug, Default)]
struct Report {
    acked: Vec<String>,
    /// 503s: the database was down.
    unavailable: usize,
    /// Connections refused: a replica was dead.
    refused: usize,
    /// Requests with no answer within 30 s.
    hung: usize,
    /// Any other answer.
    unexpected: Vec<(u16, String)>,
}

impl Traffic {
    fn start(targets: Vec<String>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(Report::default()));
        let (s, r) = (Arc::clone(&stop), Arc::clone(&report));
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(send_all(targets, s, r));
        });
        Traffic { stop, report, thread }
    }

    /// Waits until `n` more events have been acknowledged.
    fn wait_for(&self, n: usize) {
        let target = self.report.lock().unwrap().acked.len() + n;
        let started = Instant::now();
        while self.report.lock().unwrap().acked.len() < target {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "traffic stalled: {:?}",
                self.report.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        self.report.lock().unwrap().clone()
    }
}

async fn send_all(targets: Vec<String>, stop: Arc<AtomicBool>, report: Arc<Mutex<Report>>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let user = json!({ "users": [{ "id": "replica:traffic" }] });
    let mut next = 0usize;
    let mut i = 0usize;
    // The shopper first, then one event after another.
    let mut pending: Option<(String, Value)> = Some(("/api/v1/users".into(), user));
    while !stop.load(Ordering::SeqCst) {
        let (path, body) = match pending.take() {
            Some(p) => p,
            None => {
                i += 1;
                let key = format!("traffic-{i}");
                let event = json!({ "key": key, "user": "replica:traffic", "product": "9780345318589",
                                    "kind": "view", "at_ms": shopgraph_core::now_ms() });
                ("/api/v1/events".into(), event)
            }
        };
        let base = &targets[next % targets.len()];
        next += 1;
        let method =
            if path == "/api/v1/users" { reqwest::Method::PUT } else { reqwest::Method::POST };
        let sent = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(STOREFRONT)
            .json(&body)
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status() == 200 => {
                if let Some(key) = body["key"].as_str() {
                    report.lock().unwrap().acked.push(key.to_owned());
                }
                false
            }
            Ok(r) if r.status() == 503 => {
                report.lock().unwrap().unavailable += 1;
                true
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                report.lock().unwrap().unexpected.push((status, text));
                false
            }
            Err(e) if e.is_timeout() => {
                report.lock().unwrap().hung += 1;
                true
            }
            Err(_) => {
                report.lock().unwrap().refused += 1;
                true
            }
        };
        if retry {
            pending = Some((path, body));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
