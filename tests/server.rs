//! The server end to end: the real `shopgraph serve` over the Book-Crossing excerpt, on
//! a real SQLite file and on PostgreSQL, with the real model, driven over HTTP on
//! loopback: every endpoint, the access rules, bad input, and an OpenAI client.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestDb, block_on, graph_data, repo_root, run_ok, shopgraph};

pub(crate) const STOREFRONT: &str = "sf-test-key-1";
pub(crate) const AGENT: &str = "agent-test-key-ana";
pub(crate) const AGENT_2: &str = "agent-test-key-bo";
pub(crate) const ADMIN: &str = "admin-test-key";

pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("SHOPGRAPH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache"))
}

/// `shopgraph serve` on a free port; killed when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) base: String,
    _dir: tempfile::TempDir,
}

impl Served {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Imports the bookstore excerpt into `db` and serves it, waiting until `/readyz` says
/// ready (the model loaded and warm).
pub(crate) fn serve(db: &TestDb, extra_env: &[(&str, &str)]) -> Served {
    run_ok(&["import", &graph_data("excerpts/bookcrossing")], db);
    serve_again(db, extra_env)
}

/// Serves `db` as it is (a restart: nothing imported).
pub(crate) fn serve_again(db: &TestDb, extra_env: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let keys = format!(
        "storefront:web:{STOREFRONT},agent:ana:{AGENT},agent:bo:{AGENT_2},admin:ops:{ADMIN}"
    );
    let mut cmd = shopgraph();
    cmd.args(["serve", "--addr", "127.0.0.1:0"])
        .arg("--snapshot")
        .arg(dir.path().join("graph.snapshot"))
        .arg("--index-dir")
        .arg(dir.path().join("search"))
        .arg("--synonyms")
        .arg(repo_root().join("graph_data/synonyms.txt"))
        .arg("--llm-model")
        .arg(cache_dir().join("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
        .args(db.args())
        .env("SHOPGRAPH_API_KEYS", keys)
        .env("RUST_LOG", "shopgraph=info,warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("serve ended before listening").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split(':')
                .take(3)
                .collect::<Vec<_>>()
                .join(":")
                .trim_end_matches(':')
                .to_owned();
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let served = Served { child, base, _dir: dir };
    let started = Instant::now();
    loop {
        let (status, body) = block_on(call(&served.base, "GET", "/readyz", None, None));
        if status == 200 {
            assert_eq!(body["ready"], true, "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(started.elapsed() < Duration::from_secs(600), "not ready after 10 minutes: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    served
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
}

/// One request; the status and the body as JSON (a string when it is not JSON).
pub(crate) async fn call(
    base: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, _, text) = raw(
        base,
        method,
        path,
        auth,
        body.map(|b| ("application/json", b.to_string().into_bytes())),
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub(crate) async fn raw(
    base: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = client().request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(token) = auth {
        request = request.bearer_auth(token);
    }
    if let Some((kind, bytes)) = body {
        request = request.header("content-type", kind).body(bytes);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// The events of a server-sent-events body: (event, data).
pub(crate) fn sse(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = "message".to_owned();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}

pub(crate) fn isbn13(isbn10: &str) -> String {
    shopgraph_import::clean::normalize_isbn(isbn10).unwrap()
}

/// Asserts a refusal: its status, a JSON error with a message, and no 5xx ever.
#[track_caller]
pub(crate) fn refused(got: (u16, Value), status: u16, words: &str) {
    let (s, body) = got;
    assert_eq!(s, status, "{body}");
    let message =
        body["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(message.contains(words), "{message:?} does not say {words:?}");
}

#[test]
fn every_endpoint_over_http_on_sqlite_and_postgres() {
    for db in TestDb::both() {
        // The recommender is refitted every second when events arrived.
        let served = serve(&db, &[("SHOPGRAPH_REFIT_SECS", "1")]);
        let store = db.store();
        block_on(exercise(&served.base, &db, &store));
    }
}

async fn exercise(base: &str, db: &TestDb, store: &shopgraph_store::Store) {
    let name = db.name();
    let joy = isbn13("0804106304");
    let hobbit = isbn13("0345318587");

    // ---- storefront
    let (s, recs) =
        call(base, "GET", "/api/v1/users/bx:11676/recommendations?n=5", Some(STOREFRONT), None)
            .await;
    assert_eq!(s, 200, "{name}: {recs}");
    let items = recs["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{name}: {recs}");
    for item in items {
        assert!(
            item["price"].as_str().unwrap().ends_with(" EUR")
                && !item["reason"].as_str().unwrap().is_empty(),
            "{item}"
        );
        assert!(item["stock"].as_i64().unwrap() > 0, "{item}");
    }
    let (s, session) = call(
        base,
        "POST",
        "/api/v1/recommendations/session",
        Some(STOREFRONT),
        Some(json!({ "events": [{ "product": joy, "kind": "view" }], "n": 5 })),
    )
    .await;
    assert_eq!(s, 200, "{session}");
    let session_items = session["items"].as_array().unwrap();
    assert!(
        !session_items.is_empty() && session_items.iter().all(|i| i["sku"] != joy.as_str()),
        "{session}"
    );
    let (s, similar) =
        call(base, "GET", &format!("/api/v1/products/{joy}/similar?n=5"), Some(STOREFRONT), None)
            .await;
    assert_eq!(s, 200, "{similar}");
    assert!(
        similar["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["reason"].as_str().unwrap().starts_with("shares ")),
        "{similar}"
    );
    let (s, together) = call(
        base,
        "GET",
        &format!("/api/v1/products/{joy}/bought-together?n=5"),
        Some(STOREFRONT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{together}");
    assert!(!together["items"].as_array().unwrap().is_empty(), "{together}");
    assert!(
        together["items"][0]["reason"].as_str().unwrap().contains("The Joy Luck Club"),
        "{together}"
    );
    let (s, found) =
        call(base, "GET", "/api/v1/search?q=joy%20luck%20club&per_page=3", Some(STOREFRONT), None)
            .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["hits"][0]["sku"], joy.as_str(), "{found}");

    // Catalog and users change, and search, the graph and the lists see it at once.
    let (s, up) = call(
        base,
        "PUT",
        "/api/v1/users",
        Some(STOREFRONT),
        Some(json!({ "users": [{ "id": "web:alice", "name": "Alice" }] })),
    )
    .await;
    assert_eq!((s, up["upserted"].as_u64()), (200, Some(1)), "{up}");
    let wizard = json!({ "sku": "web-0001", "title": "A Wizard of the Northern Sea", "author": "Ursula K. Le Guin",
                          "price": 9.5, "stock": 3, "categories": [] });
    let (s, up) = call(
        base,
        "PUT",
        "/api/v1/products",
        Some(STOREFRONT),
        Some(json!({ "products": [wizard] })),
    )
    .await;
    assert_eq!((s, up["upserted"].as_u64()), (200, Some(1)), "{up}");
    let (s, found) =
        call(base, "GET", "/api/v1/search?q=northern%20sea%20wizard", Some(STOREFRONT), None).await;
    assert_eq!(s, 200);
    assert_eq!(found["hits"][0]["sku"], "web-0001", "{found}");
    assert_eq!(found["hits"][0]["price_cents"], 950, "{found}");

    // Events: one, its retry, a batch; the graph follows.
    let at = shopgraph_core::now_ms();
    let event = json!({ "key": "web:e1", "user": "web:alice", "product": joy, "kind": "view", "at_ms": at });
    let (s, a) = call(base, "POST", "/api/v1/events", Some(STOREFRONT), Some(event.clone())).await;
    assert_eq!((s, a["inserted"].as_u64()), (200, Some(1)), "{a}");
    let (s, a) = call(base, "POST", "/api/v1/events", Some(STOREFRONT), Some(event)).await;
    assert_eq!(
        (s, a["inserted"].as_u64(), a["duplicates"].as_u64()),
        (200, Some(0), Some(1)),
        "{a}"
    );
    let batch = json!({ "events": [
        { "key": "web:e2", "user": "web:alice", "product": "web-0001", "kind": "purchase", "value": 1, "at_ms": at },
        { "key": "web:e3", "user": "web:alice", "kind": "search", "payload": { "query": "wizards" }, "at_ms": at },
    ]});
    let (s, a) = call(base, "POST", "/api/v1/events", Some(STOREFRONT), Some(batch)).await;
    assert_eq!((s, a["inserted"].as_u64()), (200, Some(2)), "{a}");
    let (s, nb) =
        call(base, "GET", "/api/v1/agent/graph/neighbours?node=user:web:alice", Some(AGENT), None)
            .await;
    assert_eq!(s, 200, "{nb}");
    let refs: Vec<&str> =
        nb.as_array().unwrap().iter().map(|n| n["node"]["ref"].as_str().unwrap()).collect();
    assert!(
        refs.contains(&format!("sku:{joy}").as_str()) && refs.contains(&"sku:web-0001"),
        "{refs:?}"
    );
    // Alice was a stranger to the recommender (popular books); once it is refitted over
    // her events, her list comes from what she chose, and says so.
    let started = Instant::now();
    loop {
        let (s, recs) = call(
            base,
            "GET",
            "/api/v1/users/web:alice/recommendations?n=5",
            Some(STOREFRONT),
            None,
        )
        .await;
        assert_eq!(s, 200, "{recs}");
        let reasons: Vec<&str> = recs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["reason"].as_str().unwrap())
            .collect();
        if reasons.iter().any(|r| r.contains("The Joy Luck Club") || r.contains("Northern Sea")) {
            assert!(
                recs["items"].as_array().unwrap().iter().all(|i| i["sku"] != joy.as_str()),
                "{recs}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name}: no refit in a minute: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // ---- a customer's chat, handed off, taken over and answered
    let (s, chat) = call(base, "POST", "/api/v1/chat/sessions", None, Some(json!({}))).await;
    assert_eq!(s, 200, "{chat}");
    let token = chat["token"].as_str().unwrap().to_owned();
    let conversation = chat["conversation"].as_i64().unwrap();
    let customer = chat["customer"].as_str().unwrap().to_owned();
    let (s, _, body) = raw(
        base,
        "POST",
        "/api/v1/chat/messages",
        Some(&token),
        Some(("application/json", br#"{"text": "How much is The Hobbit?"}"#.to_vec())),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let events = sse(&body);
    let text: String = events
        .iter()
        .filter(|(e, _)| e == "text" || e == "replace")
        .map(|(_, d)| d.as_str())
        .collect();
    assert!(!text.is_empty() && events.iter().any(|(e, _)| e == "done"), "{events:?}");
    if let Some((_, cards)) = events.iter().find(|(e, _)| e == "cards") {
        let cards: Value = serde_json::from_str(cards).unwrap();
        assert!(cards[0]["price"].as_str().unwrap().ends_with("EUR"), "{cards}");
    }
    let (s, _, body) = raw(
        base,
        "POST",
        "/api/v1/chat/messages",
        Some(&token),
        Some(("application/json", br#"{"text": "I want to talk to a person"}"#.to_vec())),
    )
    .await;
    assert_eq!(s, 200);
    let done: Value =
        serde_json::from_str(&sse(&body).into_iter().find(|(e, _)| e == "done").unwrap().1)
            .unwrap();
    assert_eq!(
        (done["handoff"].as_bool(), done["state"].as_str()),
        (Some(true), Some("waiting")),
        "{done}"
    );

    let (s, inbox) = call(base, "GET", "/api/v1/agent/conversations", Some(AGENT), None).await;
    assert_eq!(s, 200);
    assert!(
        inbox
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == conversation && c["customer"] == customer.as_str()),
        "{inbox}"
    );
    let (s, view) = call(
        base,
        "GET",
        &format!("/api/v1/agent/conversations/{conversation}"),
        Some(AGENT),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["tool"] == "handoff" && m["data"]["summary"].is_string()),
        "{view}"
    );
    let path = |what: &str| format!("/api/v1/agent/conversations/{conversation}/{what}");
    refused(
        call(base, "POST", &path("messages"), Some(AGENT), Some(json!({ "text": "hi" }))).await,
        409,
        "take the conversation over",
    );
    let (s, taken) = call(base, "POST", &path("takeover"), Some(AGENT), None).await;
    assert_eq!(
        (s, taken["state"].as_str(), taken["agent"].as_str()),
        (200, Some("agent"), Some("ana")),
        "{taken}"
    );
    refused(
        call(base, "POST", &path("takeover"), Some(AGENT_2), None).await,
        409,
        "ana has already taken",
    );
    refused(
        call(base, "POST", &path("messages"), Some(AGENT_2), Some(json!({ "text": "me too" })))
            .await,
        409,
        "take the conversation over",
    );
    let (s, _) = call(
        base,
        "POST",
        &path("messages"),
        Some(AGENT),
        Some(json!({ "text": "Hello, this is Ana from the shop." })),
    )
    .await;
    assert_eq!(s, 200);
    let (s, seen) = call(base, "GET", "/api/v1/chat/messages?after=0", Some(&token), None).await;
    assert_eq!(s, 200);
    assert_eq!(seen["state"], "agent");
    let messages = seen["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["role"] == "agent" && m["content"] == "Hello, this is Ana from the shop."),
        "{seen}"
    );
    assert!(
        messages.iter().all(|m| m["tool"] != "handoff"),
        "the customer must not see the agents' packet: {seen}"
    );
    // The customer writes again: the assistant only says a colleague is on it.
    let (s, _, body) = raw(
        base,
        "POST",
        "/api/v1/chat/messages",
        Some(&token),
        Some(("application/json", br#"{"text": "thanks!"}"#.to_vec())),
    )
    .await;
    assert_eq!(s, 200);
    assert!(sse(&body).iter().any(|(e, d)| e == "text" && d.contains("colleague")), "{body}");

    // Profiles: interests with their sources; a wrong id is refused.
    let (s, profile) =
        call(base, "GET", &format!("/api/v1/agent/customers/{customer}"), Some(AGENT), None).await;
    assert_eq!(s, 200, "{profile}");
    assert_eq!(profile["conversations"][0]["id"], conversation, "{profile}");
    refused(
        call(
            base,
            "DELETE",
            &format!("/api/v1/agent/customers/{customer}/interests/999999"),
            Some(AGENT),
            None,
        )
        .await,
        404,
        "no interest",
    );
    let (s, mine) = call(base, "GET", "/api/v1/chat/profile", Some(&token), None).await;
    assert_eq!(s, 200, "{mine}");
    assert!(mine.is_array());

    // The graph's typed queries.
    let (s, view) = call(
        base,
        "GET",
        &format!("/api/v1/agent/graph/neighbourhood?node=sku:{hobbit}&hops=2"),
        Some(AGENT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{view}");
    assert!(
        view["nodes"].as_array().unwrap().len() > 2
            && !view["edges"].as_array().unwrap().is_empty(),
        "{view}"
    );
    assert_eq!(view["nodes"][0]["ref"], format!("sku:{hobbit}"));
    let (s, sim) = call(
        base,
        "GET",
        &format!("/api/v1/agent/graph/similar?sku={hobbit}&k=3"),
        Some(AGENT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{sim}");
    assert!(!sim[0]["shared"].as_array().unwrap().is_empty(), "{sim}");
    let (s, paths) = call(
        base,
        "GET",
        &format!("/api/v1/agent/graph/connect?a=sku:{hobbit}&b=author:jrr%20tolkien&hops=2"),
        Some(AGENT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{paths}");
    let (s, why) = call(
        base,
        "GET",
        &format!("/api/v1/agent/graph/explain?user=bx:11676&sku={joy}"),
        Some(AGENT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{why}");
    let (s, low) = call(
        base,
        "GET",
        &format!("/api/v1/agent/graph/bought-rated-low?bought={joy}&rated={hobbit}"),
        Some(AGENT),
        None,
    )
    .await;
    assert_eq!(s, 200, "{low}");
    let (s, closed) = call(base, "POST", &path("close"), Some(AGENT), None).await;
    assert_eq!((s, closed["state"].as_str()), (200, Some("closed")));
    refused(call(base, "POST", &path("takeover"), Some(AGENT), None).await, 409, "closed");

    // ---- access: missing and wrong keys, wrong roles, another customer's data
    refused(
        call(base, "GET", "/api/v1/users/bx:11676/recommendations", None, None).await,
        401,
        "storefront",
    );
    refused(
        call(base, "GET", "/api/v1/users/bx:11676/recommendations", Some("not-a-key"), None).await,
        401,
        "not valid",
    );
    refused(
        call(base, "GET", "/api/v1/agent/conversations", Some(STOREFRONT), None).await,
        403,
        "agent role",
    );
    refused(
        call(base, "GET", "/api/v1/users/bx:11676/recommendations", Some(AGENT), None).await,
        403,
        "storefront role",
    );
    refused(
        call(base, "GET", "/api/v1/agent/conversations", Some(&token), None).await,
        403,
        "customer session",
    );
    refused(
        call(base, "GET", &format!("/api/v1/agent/customers/{customer}"), Some(&token), None).await,
        403,
        "customer session",
    );
    let (_, other) = call(base, "POST", "/api/v1/chat/sessions", None, Some(json!({}))).await;
    let other_token = other["token"].as_str().unwrap();
    let (s, _, _) = raw(
        base,
        "POST",
        "/api/v1/chat/messages",
        Some(other_token),
        Some(("application/json", br#"{"text": "My secret order is 4242"}"#.to_vec())),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = call(
        base,
        "GET",
        &format!("/api/v1/chat/conversations/{}", other["conversation"]),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 404, "{body}");
    assert!(!body.to_string().contains("4242"), "{body}");
    let (s, own) = call(
        base,
        "GET",
        &format!("/api/v1/chat/conversations/{conversation}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200, "{own}");
    let forged =
        token.replacen(&format!(".{conversation}."), &format!(".{}.", other["conversation"]), 1);
    refused(
        call(base, "GET", "/api/v1/chat/conversation", Some(&forged), None).await,
        401,
        "not valid",
    );
    refused(
        call(base, "POST", "/api/v1/chat/sessions", Some(&token), Some(json!({}))).await,
        403,
        "already has",
    );
    refused(
        call(base, "POST", "/api/v1/chat/sessions", None, Some(json!({ "user": "bx:11676" })))
            .await,
        401,
        "storefront key",
    );
    let (s, signed_in) = call(
        base,
        "POST",
        "/api/v1/chat/sessions",
        Some(STOREFRONT),
        Some(json!({ "user": "bx:11676" })),
    )
    .await;
    assert_eq!((s, signed_in["customer"].as_str()), (200, Some("bx:11676")), "{signed_in}");

    // ---- bad input: a clear 4xx, never a 5xx, and nothing written
    let events_before = store.count_events().await.unwrap();
    let bad = |s: &str| Some(("application/json", s.as_bytes().to_vec()));
    let (s, _, body) =
        raw(base, "POST", "/api/v1/events", Some(STOREFRONT), bad("{\"key\": ")).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("\"code\":\"bad_request\""), "{body}");
    refused(
        call(
            base,
            "POST",
            "/api/v1/recommendations/session",
            Some(STOREFRONT),
            Some(json!({ "events": 5 })),
        )
        .await,
        422,
        "events",
    );
    let (s, _, body) = raw(
        base,
        "PUT",
        "/api/v1/products",
        Some(STOREFRONT),
        Some(("text/plain", b"{}".to_vec())),
    )
    .await;
    assert_eq!(s, 415, "{body}");
    let huge = format!("{{\"products\": [\"{}\"]}}", "x".repeat(2 * 1024 * 1024));
    let (s, _, body) = raw(base, "PUT", "/api/v1/products", Some(STOREFRONT), bad(&huge)).await;
    assert_eq!(s, 413, "{body}");
    refused(
        call(base, "GET", "/api/v1/users/nobody/recommendations", Some(STOREFRONT), None).await,
        404,
        "no user",
    );
    refused(
        call(base, "GET", "/api/v1/products/0000000000000/similar", Some(STOREFRONT), None).await,
        404,
        "no product",
    );
    refused(
        call(base, "GET", "/api/v1/users/bx:11676/recommendations?n=0", Some(STOREFRONT), None)
            .await,
        400,
        "n must be",
    );
    refused(
        call(base, "GET", "/api/v1/users/bx:11676/recommendations?n=many", Some(STOREFRONT), None)
            .await,
        400,
        "n",
    );
    refused(
        call(base, "GET", "/api/v1/agent/conversations/99999999", Some(AGENT), None).await,
        404,
        "no conversation",
    );
    refused(
        call(base, "GET", "/api/v1/agent/conversations/abc", Some(AGENT), None).await,
        400,
        "not a number",
    );
    refused(
        call(base, "GET", "/api/v1/agent/conversations?state=lost", Some(AGENT), None).await,
        400,
        "state must be",
    );
    refused(
        call(base, "GET", "/api/v1/agent/graph/neighbours?node=nonsense", Some(AGENT), None).await,
        400,
        "not a node",
    );
    refused(call(base, "GET", "/api/v1/search?q=", Some(STOREFRONT), None).await, 400, "");
    let half_bad = json!({ "events": [
        { "key": "web:ok", "user": "web:alice", "product": joy, "kind": "view", "at_ms": at },
        { "key": "web:bad", "user": "web:alice", "product": joy, "kind": "teleport", "at_ms": at },
    ]});
    refused(
        call(base, "POST", "/api/v1/events", Some(STOREFRONT), Some(half_bad)).await,
        400,
        "event 1",
    );
    let unknown_user = json!({ "key": "web:u", "user": "web:nobody", "product": joy, "kind": "view", "at_ms": at });
    refused(
        call(base, "POST", "/api/v1/events", Some(STOREFRONT), Some(unknown_user)).await,
        404,
        "no user",
    );
    refused(
        call(
            base,
            "PUT",
            "/api/v1/products",
            Some(STOREFRONT),
            Some(json!({ "products": [{ "sku": "x", "title": "X", "price": -1, "stock": 1 }] })),
        )
        .await,
        400,
        "price",
    );
    refused(
        call(
            base,
            "PUT",
            "/api/v1/products",
            Some(STOREFRONT),
            Some(
                json!({ "products": [{ "sku": "x", "title": "X", "price": 1, "stock": "many" }] }),
            ),
        )
        .await,
        400,
        "product 0",
    );
    assert_eq!(
        store.count_events().await.unwrap(),
        events_before,
        "{name}: a refused call wrote events"
    );
    let (_, fresh) = call(base, "POST", "/api/v1/chat/sessions", None, None).await;
    let fresh_token = fresh["token"].as_str().unwrap();
    refused(
        call(
            base,
            "POST",
            "/api/v1/chat/messages",
            Some(fresh_token),
            Some(json!({ "text": "   " })),
        )
        .await,
        400,
        "empty",
    );
    refused(
        call(
            base,
            "POST",
            "/api/v1/chat/messages",
            Some(fresh_token),
            Some(json!({ "text": "a\u{7}b" })),
        )
        .await,
        400,
        "control",
    );
    let (_, view) = call(base, "GET", "/api/v1/chat/conversation", Some(fresh_token), None).await;
    assert!(
        view["messages"].as_array().unwrap().is_empty(),
        "a refused message was stored: {view}"
    );

    // ---- operations
    let (s, headers, body) = raw(base, "GET", "/healthz", None, None).await;
    assert_eq!((s, body.as_str()), (200, "ok"));
    assert!(headers.contains_key("x-request-id"));
    let mut with_id = client().get(format!("{base}/healthz"));
    with_id = with_id.header("x-request-id", "trace-me-42");
    let echoed = with_id.send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
    let (s, _, metrics) = raw(base, "GET", "/metrics", None, None).await;
    assert_eq!(s, 200);
    assert!(metrics.contains("shopgraph_http_requests_total{method=\"GET\",route=\"/api/v1/users/{user}/recommendations\",status=\"200\"}"), "{metrics}");
    assert!(metrics.contains("shopgraph_http_request_duration_seconds_bucket"), "{metrics}");
    let served_line =
        metrics.lines().find(|l| l.starts_with("shopgraph_recommendations_served_total ")).unwrap();
    assert!(served_line.split(' ').nth(1).unwrap().parse::<u64>().unwrap() >= 5, "{served_line}");
    let tokens =
        metrics.lines().find(|l| l.starts_with("shopgraph_llm_completion_tokens_total ")).unwrap();
    assert!(tokens.split(' ').nth(1).unwrap().parse::<u64>().unwrap() > 0, "{tokens}");
    let (s, doc) = call(base, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    for path in [
        "/api/v1/users/{user}/recommendations",
        "/api/v1/recommendations/session",
        "/api/v1/products/{sku}/similar",
        "/api/v1/products/{sku}/bought-together",
        "/api/v1/search",
        "/api/v1/events",
        "/api/v1/products",
        "/api/v1/users",
        "/api/v1/agent/graph/neighbourhood",
        "/api/v1/agent/customers/{user}/interests/{id}",
        "/api/v1/agent/conversations/{id}/takeover",
        "/api/v1/chat/messages",
        "/api/v1/chat/sessions",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    let (s, _, page) = raw(base, "GET", "/docs/", None, None).await;
    assert_eq!(s, 200);
    assert!(page.contains("swagger"), "{page}");
    for (path, words) in [
        ("/", "Ask the bookshop"),
        ("/console", "Agent console"),
        ("/web/chat.js", "text/event-stream"),
        ("/web/shopgraph.css", "--accent"),
    ] {
        let (s, _, page) = raw(base, "GET", path, None, None).await;
        assert_eq!(s, 200, "{path}");
        assert!(page.contains(words), "{path}");
    }

    // ---- rate limits: an address without a key gets its burst, then 429s.
    let mut limited = 0;
    for _ in 0..80 {
        let (s, headers, _) = raw(base, "GET", "/api/v1/chat/conversation", None, None).await;
        assert!(s == 401 || s == 429, "{s}");
        if s == 429 {
            limited += 1;
            assert!(headers.contains_key("retry-after"));
        }
    }
    assert!(limited > 0, "{name}: no request was rate-limited");
}

/// The `openai` Python package (installed by scripts/test.sh in its own venv)
/// completes a chat against the server, whole and streamed.
#[test]
fn an_openai_client_completes_a_chat_whole_and_streamed() {
    let python = cache_dir().join("venv-openai/bin/python");
    assert!(python.exists(), "no {} (run scripts/test.sh)", python.display());
    let db = TestDb::sqlite();
    let served = serve(&db, &[]);
    let script = r#"
import os, sys
from openai import OpenAI
client = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key=os.environ["KEY"])
print("models:", [m.id for m in client.models.list().data])
whole = client.chat.completions.create(model="default", max_tokens=12,
    messages=[{"role": "user", "content": "Say hello."}])
print("whole:", repr(whole.choices[0].message.content), whole.usage.completion_tokens)
parts = []
for chunk in client.chat.completions.create(model="default", max_tokens=12, stream=True,
        messages=[{"role": "user", "content": "Count to three."}]):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
print("streamed:", len(parts), repr("".join(parts)))
try:
    OpenAI(base_url=os.environ["BASE"] + "/v1", api_key="wrong").chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}])
    print("wrong key: accepted")
except Exception as e:
    print("wrong key:", type(e).__name__)
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .env("BASE", &served.base)
        .env("KEY", ADMIN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("models: ['qwen2.5-coder-0.5b"), "{stdout}");
    let whole = stdout.lines().find(|l| l.starts_with("whole:")).unwrap();
    assert!(!whole.contains("''") && !whole.ends_with(" 0"), "{whole}");
    let streamed = stdout.lines().find(|l| l.starts_with("streamed:")).unwrap();
    let chunks: usize = streamed.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(chunks > 1, "{streamed}");
    assert!(stdout.contains("wrong key: AuthenticationError"), "{stdout}");
}

/// `SHOPGRAPH_LOG_FORMAT=json` makes every log line a JSON object, for a collector.
#[test]
fn logs_can_be_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopgraph()
        .args(["migrate", "--db", &format!("sqlite:{}", dir.path().join("x.db").display())])
        .env("SHOPGRAPH_LOG_FORMAT", "json")
        .env("RUST_LOG", "shopgraph=info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["fields"]["message"].as_str().is_some_and(|m| m.contains("applied migration"))),
        "{stderr}"
    );
}
