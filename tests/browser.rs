//! The web pages in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `scripts/test.sh`), driven over the W3C WebDriver protocol: a
//! customer asks for a book and sees the streamed answer with product cards, reloads
//! and finds the conversation again, asks for a person; an agent takes the
//! conversation over in the console and answers, and the customer sees the answer; the
//! console shows the shoppers' segments as a table.
//! Screenshots go to `target/test-artifacts/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::server::{ADMIN, AGENT, call, serve};
use crate::support::{TestDb, block_on, repo_root};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct ChromeDriver {
    child: Child,
    url: String,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let binary = "/usr/bin/chromedriver";
        assert!(
            std::path::Path::new(binary).exists(),
            "no {binary}: run scripts/test.sh (it installs chromium-driver)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        ChromeDriver { child, url }
    }
}

/// One browser, through chromedriver.
struct Browser {
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(driver: &ChromeDriver) -> Browser {
        let http = reqwest::Client::new();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-quic", "--no-first-run", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let r: Value = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Browser { http, session: format!("{}/session/{session}", driver.url), _profile: profile }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let request = self.http.request(method.parse().unwrap(), format!("{}{path}", self.session));
        let request =
            if method == "GET" || method == "DELETE" { request } else { request.json(&body) };
        let r: Value = request.send().await.unwrap().json().await.unwrap();
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let v =
            self.cmd("POST", "/elements", json!({ "using": "css selector", "value": css })).await;
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Waits for an element and returns it.
    async fn find(&self, css: &str) -> String {
        self.until(&format!("an element {css}"), || async {
            self.find_all(css).await.into_iter().next()
        })
        .await
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd("GET", &format!("/element/{id}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for id in self.find_all(css).await {
            out.push(
                self.cmd("GET", &format!("/element/{id}/text"), Value::Null)
                    .await
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        out
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/value"), json!({ "text": text })).await;
    }

    async fn script(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Polls `check` until it gives something, for up to three minutes.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(started.elapsed() < Duration::from_secs(180), "waited 3 minutes for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.cmd("GET", "/screenshot", Value::Null).await;
        save(name, png.as_str().unwrap())
    }

    async fn element_screenshot(&self, css: &str, name: &str) -> PathBuf {
        let id = self.find(css).await;
        let png = self.cmd("GET", &format!("/element/{id}/screenshot"), Value::Null).await;
        save(name, png.as_str().unwrap())
    }

    async fn quit(&self) {
        self.cmd("DELETE", "", Value::Null).await;
    }
}

#[test]
fn a_customer_chats_in_the_browser_and_an_agent_takes_over_in_the_console() {
    let db = TestDb::sqlite();
    let served = serve(&db, &[]);
    let driver = ChromeDriver::start();
    block_on(async {
        let customer = Browser::open(&driver).await;
        customer.goto(&format!("{}/", served.base)).await;
        customer
            .until("the chat to connect", || async {
                (customer.text("#status").await == "the assistant is answering").then_some(())
            })
            .await;
        // The page counts the stream's text events as they arrive.
        customer.script(
            "window.chunks = 0; new MutationObserver(() => window.chunks++).observe(document.getElementById('log'), {subtree: true, characterData: true, childList: true});",
        ).await;
        customer.type_into("#message", "How much is The Hobbit?").await;
        customer.click("#send").await;
        let cards = customer
            .until("product cards", || async {
                let cards = customer.texts(".card").await;
                (!cards.is_empty()).then_some(cards)
            })
            .await;
        assert!(
            cards.iter().any(|c| c.contains("The Hobbit")
                && c.contains("EUR")
                && (c.contains("in stock") || c.contains("out of stock"))),
            "{cards:?}"
        );
        let answer = customer
            .until("the answer", || async {
                let texts = customer.texts(".msg.assistant .text").await;
                texts.last().filter(|t| !t.is_empty()).cloned()
            })
            .await;
        assert!(answer.contains("EUR"), "{answer}");
        let chunks = customer.script("return window.chunks").await.as_u64().unwrap();
        assert!(
            chunks >= 2,
            "the answer and its cards did not arrive as a stream ({chunks} changes)"
        );
        customer.screenshot("chat-answer.png").await;

        // A reload finds the conversation again, cards included.
        customer.goto(&format!("{}/", served.base)).await;
        customer
            .until("the restored conversation", || async {
                let users = customer.texts(".msg.user .text").await;
                let cards = customer.find_all(".card").await;
                (users.iter().any(|u| u.contains("The Hobbit")) && !cards.is_empty()).then_some(())
            })
            .await;

        customer.type_into("#message", "I want to talk to a person").await;
        customer.click("#send").await;
        customer
            .until("the handoff", || async {
                (customer.text("#status").await == "waiting for a colleague").then_some(())
            })
            .await;

        // The agent: the inbox, the conversation, takeover, an answer.
        let agent = Browser::open(&driver).await;
        agent.goto(&format!("{}/console", served.base)).await;
        agent.type_into("#key", AGENT).await;
        agent.click("#save-key").await;
        agent.click("#inbox button").await;
        agent
            .until("the handoff packet", || async {
                (!agent.find_all("#thread .packet").await.is_empty()).then_some(())
            })
            .await;
        agent
            .until("the customer's interests panel", || async {
                (!agent.text("#profile").await.is_empty()).then_some(())
            })
            .await;
        agent.click("#takeover").await;
        agent
            .until("the answer box", || async {
                let id = agent.find("#reply").await;
                let enabled =
                    agent.cmd("GET", &format!("/element/{id}/enabled"), Value::Null).await;
                (enabled == Value::Bool(true)).then_some(())
            })
            .await;
        agent.type_into("#reply", "Hello, I am Ana from the bookshop. How can I help?").await;
        agent.click("#send-reply").await;
        agent
            .until("the answer in the thread", || async {
                agent
                    .texts("#thread .msg.agent .text")
                    .await
                    .iter()
                    .any(|t| t.contains("I am Ana"))
                    .then_some(())
            })
            .await;
        // The graph explorer draws The Hobbit's neighbourhood.
        let node = agent.find("#node").await;
        agent.cmd("POST", &format!("/element/{node}/clear"), json!({})).await;
        agent.type_into("#node", "sku:9780345318589").await;
        agent.click("#draw").await;
        agent
            .until("a drawn graph", || async {
                (agent.find_all("#graph circle").await.len() > 1).then_some(())
            })
            .await;
        agent.screenshot("console-takeover.png").await;
        agent.element_screenshot("#graph", "console-graph.png").await;

        // Insight: an admin segments the shoppers, and the console shows the table; a
        // forecast the data cannot give (Book-Crossing has no dates) says why.
        let seg = json!({"k_min": 2, "k_max": 3});
        let (s, run) =
            call(&served.base, "POST", "/api/v1/insight/segments", Some(ADMIN), Some(seg)).await;
        assert_eq!(s, 200, "{run}");
        agent.click("#load-insight").await;
        let rows = agent
            .until("the segments table", || async {
                let rows = agent.texts("#segments tbody tr").await;
                (rows.len() == run["k"].as_u64().unwrap() as usize).then_some(rows)
            })
            .await;
        assert!(rows.iter().all(|r| r.split_whitespace().count() >= 3), "{rows:?}");
        agent.type_into("#forecast-of", "category:books").await;
        agent.click("#forecast").await;
        agent
            .until("the forecast's refusal", || async {
                agent.text("#status").await.contains("less than one whole week").then_some(())
            })
            .await;
        agent.element_screenshot(".insight", "console-insight.png").await;

        customer
            .until("the agent's answer on the customer's page", || async {
                customer
                    .texts(".msg.agent .text")
                    .await
                    .iter()
                    .any(|t| t.contains("I am Ana"))
                    .then_some(())
            })
            .await;
        assert_eq!(customer.text("#status").await, "a colleague is answering");
        customer.screenshot("chat-agent-answer.png").await;
        agent.quit().await;
        customer.quit().await;
    });
}

/// Writes a screenshot (base64 PNG) under `target/test-artifacts/`.
fn save(name: &str, png: &str) -> PathBuf {
    let bytes = base64::engine::general_purpose::STANDARD.decode(png).unwrap();
    let dir = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
