//! The Telegram bot end to end: the real `shopgraph serve`, its real teloxide dispatcher
//! and the real model, against a Bot API server on 127.0.0.1 that this test plays
//! (`TELOXIDE_API_URL` points the bot at it). The test sends updates as Telegram would
//! and reads what the bot sends back, and reads the store to see what was recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shopgraph_core::event::EventKind;
use shopgraph_store::EventFilter;

use crate::server::{AGENT, STOREFRONT, call, isbn13, serve, serve_again};
use crate::support::{TestDb, block_on};

const TOKEN: &str = "123456:TEST-token";
const BOT_ID: i64 = 4242;

/// A message the bot sent (or tried to).
#[derive(Clone, Debug)]
struct Sent {
    chat: i64,
    text: String,
    markup: Value,
    at: Instant,
}

#[derive(Default)]
struct Fake {
    /// Updates not yet confirmed by the bot (Telegram keeps them until an offset passes).
    updates: Vec<Value>,
    /// Every update ever queued.
    pushed: Vec<Value>,
    /// The ids of the updates given to the bot, once per time given.
    given: Vec<i64>,
    next_update: i64,
    next_message: i64,
    sent: Vec<Sent>,
    /// Every method called: (lower-case name, body).
    calls: Vec<(String, Value)>,
    /// Answers to give instead of the normal one: (method, status, body).
    scripted: VecDeque<(String, u16, Value)>,
    /// Messages refused by a scripted answer: (method, text, when).
    refused: Vec<(String, String, Instant)>,
}

/// The fake Bot API: `POST /bot{TOKEN}/{Method}`.
#[derive(Clone)]
struct BotApi {
    fake: Arc<Mutex<Fake>>,
    base: String,
    /// Wakes a waiting getUpdates when an update (or a scripted answer) is queued.
    wake: Arc<tokio::sync::Notify>,
    /// Every message sent, as it is sent (for the benchmark's timings).
    sends: tokio::sync::broadcast::Sender<Sent>,
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, json!({ "ok": true, "result": result }).to_string()).into_response()
}

fn bot_user() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "Shop", "username": "shop_test_bot" })
}

async fn bot_api(
    State(api): State<BotApi>,
    Path((bot, method)): Path<(String, String)>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        let body = json!({ "ok": false, "error_code": 401, "description": "Unauthorized" });
        return (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
    }
    let method = method.to_lowercase();
    // Multipart bodies (setWebhook's) are kept as their text.
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    // getUpdates waits for updates (long polling), a second at most here.
    if method == "getupdates" {
        let offset = body["offset"].as_i64().unwrap_or(0);
        let waited = Instant::now();
        api.fake.lock().unwrap().calls.push((method.clone(), body.clone()));
        loop {
            let woken = api.wake.notified();
            let scripted = {
                let mut f = api.fake.lock().unwrap();
                if f.scripted.front().is_some_and(|(m, _, _)| *m == method) {
                    f.scripted.pop_front()
                } else {
                    f.updates.retain(|u| u["update_id"].as_i64().unwrap() >= offset);
                    if !f.updates.is_empty() || waited.elapsed() > Duration::from_secs(1) {
                        let ids: Vec<i64> =
                            f.updates.iter().map(|u| u["update_id"].as_i64().unwrap()).collect();
                        f.given.extend(ids);
                        return ok(Value::Array(f.updates.clone()));
                    }
                    None
                }
            };
            if let Some((_, status, body)) = scripted {
                return (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    let mut f = api.fake.lock().unwrap();
    f.calls.push((method.clone(), body.clone()));
    if f.scripted.front().is_some_and(|(m, _, _)| *m == method) {
        let (_, status, answer) = f.scripted.pop_front().unwrap();
        let text = body["text"].as_str().unwrap_or_default().to_owned();
        f.refused.push((method, text, Instant::now()));
        return (StatusCode::from_u16(status).unwrap(), answer.to_string()).into_response();
    }
    match method.as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Shop", "username": "shop_test_bot",
            "can_join_groups": false, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "getwebhookinfo" => {
            ok(json!({ "url": "", "has_custom_certificate": false, "pending_update_count": 0 }))
        }
        "sendmessage" => {
            f.next_message += 1;
            let chat = body["chat_id"].as_i64().expect("chat_id is a number");
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            let sent = Sent {
                chat,
                text: text.clone(),
                markup: body["reply_markup"].clone(),
                at: Instant::now(),
            };
            let _ = api.sends.send(sent.clone());
            f.sent.push(sent);
            ok(json!({
                "message_id": f.next_message, "date": 1_700_000_000,
                "chat": { "id": chat, "type": "private", "first_name": "Ann" },
                "from": bot_user(), "text": text
            }))
        }
        _ => ok(json!(true)),
    }
}

impl BotApi {
    fn start() -> BotApi {
        let fake = Arc::new(Mutex::new(Fake { next_update: 100, ..Fake::default() }));
        let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let api = BotApi {
            fake,
            base,
            wake: Arc::default(),
            sends: tokio::sync::broadcast::channel(100_000).0,
        };
        let router = Router::new()
            .route("/{bot}/{method}", axum::routing::post(bot_api))
            .with_state(api.clone());
        block_on(async {
            tokio::spawn(async move { axum::serve(listener, router).await });
        });
        api
    }

    /// Queues an update (its id is added) and returns the id.
    fn push(&self, mut update: Value) -> i64 {
        let mut f = self.fake.lock().unwrap();
        f.next_update += 1;
        update["update_id"] = json!(f.next_update);
        f.pushed.push(update.clone());
        f.updates.push(update);
        self.wake.notify_one();
        f.next_update
    }

    /// Queues an update again with its own id, as Telegram does with one the bot did
    /// not confirm.
    fn push_again(&self, id: i64) {
        let mut f = self.fake.lock().unwrap();
        let update = f.pushed.iter().find(|u| u["update_id"] == id).expect("pushed before").clone();
        f.updates.push(update);
        self.wake.notify_one();
    }

    fn script(&self, method: &str, status: u16, body: Value) {
        self.fake.lock().unwrap().scripted.push_back((method.to_lowercase(), status, body));
        self.wake.notify_one();
    }

    fn sent_count(&self) -> usize {
        self.fake.lock().unwrap().sent.len()
    }

    fn sent_since(&self, since: usize, chat: i64) -> Vec<Sent> {
        let f = self.fake.lock().unwrap();
        f.sent[since.min(f.sent.len())..].iter().filter(|s| s.chat == chat).cloned().collect()
    }

    fn calls(&self, method: &str) -> Vec<Value> {
        let f = self.fake.lock().unwrap();
        f.calls.iter().filter(|(m, _)| m == method).map(|(_, b)| b.clone()).collect()
    }

    /// Waits until the bot has sent `chat`, since `since`, a message that `want`
    /// accepts; returns everything it sent the chat since then, up to that message.
    #[track_caller]
    fn wait_for(&self, since: usize, chat: i64, want: impl Fn(&str) -> bool) -> Vec<Sent> {
        self.wait_for_sent(since, chat, |s| want(&s.text))
    }

    #[track_caller]
    fn wait_for_sent(&self, since: usize, chat: i64, want: impl Fn(&Sent) -> bool) -> Vec<Sent> {
        let started = Instant::now();
        loop {
            let sent = self.sent_since(since, chat);
            if let Some(at) = sent.iter().position(&want) {
                return sent[..=at].to_vec();
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the bot never sent chat {chat} what was wanted; it sent: {:#?}",
                sent.iter().map(|s| &s.text).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the bot is polling (its dispatcher is running).
    fn wait_polling(&self) {
        let started = Instant::now();
        while self.calls("getupdates").is_empty() {
            assert!(started.elapsed() < Duration::from_secs(600), "the bot never polled");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn user(chat: i64) -> Value {
    json!({ "id": chat, "is_bot": false, "first_name": "Ann", "language_code": "en" })
}

fn private(chat: i64) -> Value {
    json!({ "id": chat, "type": "private", "first_name": "Ann" })
}

fn message(chat: i64, fields: Value) -> Value {
    let mut m = json!({ "message_id": 1, "date": 1_700_000_000, "chat": private(chat), "from": user(chat) });
    for (k, v) in fields.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn text(chat: i64, text: &str) -> Value {
    json!({ "message": message(chat, json!({ "text": text })) })
}

fn tap(chat: i64, id: &str, data: &str) -> Value {
    json!({ "callback_query": {
        "id": id, "from": user(chat), "chat_instance": "ci", "data": data,
        "message": message(chat, json!({ "text": "a book", "from": bot_user() }))
    }})
}

/// The callback data of the buttons under a message.
fn buttons(sent: &Sent) -> Vec<String> {
    sent.markup["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|b| b["callback_data"].as_str().unwrap().to_owned())
        .collect()
}

fn config_file(dir: &std::path::Path, telegram: &str) -> String {
    let path = dir.join("shopgraph.toml");
    std::fs::write(
        &path,
        format!(
            "refit_secs = 0\n[telegram]\nchat_rate = 20.0\nchat_burst = 20\ndelivery_ms = 200\nsend_attempts = 3\n{telegram}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn events_of(db: &TestDb, external: &str) -> Vec<shopgraph_core::event::Event> {
    let store = db.store();
    block_on(async {
        let user = store.user_by_external_id(external).await.unwrap().expect("the chat's user");
        store.events(&EventFilter { user: Some(user.id), ..EventFilter::default() }).await.unwrap()
    })
}

#[test]
fn the_bot_answers_from_the_catalog_records_taps_hands_off_and_resumes_after_a_restart() {
    for db in TestDb::both() {
        converse_tap_hand_off_restart_link(&db);
    }
}

fn converse_tap_hand_off_restart_link(db: &TestDb) {
    let api = BotApi::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let env = [
        ("TELOXIDE_TOKEN", TOKEN),
        ("TELOXIDE_API_URL", api.base.as_str()),
        ("SHOPGRAPH_CONFIG", config.as_str()),
    ];
    let served = serve(db, &env);
    api.wait_polling();
    // Another bot polling with the same token: the Bot API refuses this one's poll once
    // (409); it polls again and goes on.
    api.script(
        "GetUpdates",
        409,
        json!({ "ok": false, "error_code": 409,
                "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running" }),
    );
    let ann = 5001;
    let store = db.store();

    // /start: a greeting and, for a new customer, the preference questions.
    let cy = 5004;
    let mark = api.sent_count();
    api.push(text(cy, "/start"));
    let hello = api.wait_for(mark, cy, |t| t.contains("Hello, Ann"));
    assert!(hello.last().unwrap().text.contains("What kinds of books"), "{hello:?}");

    // A product question, answered with the catalog's own price, and the book under it
    // with its buttons.
    let hobbit = isbn13("0345318587");
    let book = block_on(store.product_by_sku(&hobbit)).unwrap().unwrap();
    let price = shopgraph_assistant::shop::format_price(book.price_cents, &book.currency);
    let mark = api.sent_count();
    api.push(text(ann, "How much is The Hobbit?"));
    let answer = api.wait_for(mark, ann, |t| t.contains("Hobbit") && t.contains(&price));
    assert!(answer.last().unwrap().markup.is_null(), "the answer first, then the book");
    let cards = api.wait_for_sent(mark, ann, |s| !s.markup.is_null());
    let card = cards.last().unwrap();
    assert!(card.text.contains(&book.title) && card.text.contains(&price), "{card:?}");
    let data = buttons(card);
    assert_eq!(
        data,
        [
            format!("more:{}", book.id.0),
            format!("not:{}", book.id.0),
            format!("info:{}", book.id.0)
        ],
        "{card:?}"
    );

    // Taps are behaviour events and change the profile.
    let mark = api.sent_count();
    api.push(tap(ann, "cb-more", &data[0]));
    api.wait_for(mark, ann, |t| t.starts_with("More like") || t.contains("nothing close"));
    let mark = api.sent_count();
    api.push(tap(ann, "cb-info", &data[2]));
    api.wait_for(mark, ann, |t| t.contains(&price) && t.contains(&book.title));
    let mark = api.sent_count();
    api.push(tap(ann, "cb-not", &data[1]));
    api.wait_for(mark, ann, |t| t.contains("will not suggest"));
    let external = format!("telegram:{ann}");
    let events = events_of(db, &external);
    let tapped: Vec<(EventKind, Option<i64>)> = events
        .iter()
        .filter(|e| e.payload.as_deref().is_some_and(|p| p.contains("\"action\"")))
        .map(|e| (e.kind, e.product.map(|p| p.0)))
        .collect();
    assert_eq!(
        tapped,
        [
            (EventKind::Click, Some(book.id.0)),
            (EventKind::View, Some(book.id.0)),
            (EventKind::Dismiss, Some(book.id.0))
        ],
        "{events:?}"
    );
    let customer = block_on(store.user_by_external_id(&external)).unwrap().unwrap();
    let interests = block_on(store.interests(customer.id)).unwrap();
    assert!(
        interests.iter().any(|i| i.subject == format!("product:{hobbit}")
            && i.polarity == shopgraph_core::interest::Polarity::Dislikes),
        "{interests:?}"
    );
    // A dismissed book is not recommended again.
    let mark = api.sent_count();
    api.push(text(ann, "/recommend"));
    let listed = api.wait_for(mark, ann, |t| t.starts_with("Picked for you"));
    std::thread::sleep(Duration::from_secs(2));
    let listed = [listed, api.sent_since(mark, ann)].concat();
    assert!(listed.iter().all(|s| !s.text.contains(&book.title)), "{listed:?}");
    assert!(events_of(db, &external).iter().any(|e| e.kind == EventKind::RecommendationShown));

    // A button nobody made: answered, and nothing recorded.
    let before = events_of(db, &external).len();
    api.push(tap(ann, "cb-bogus", "buy:everything"));
    let started = Instant::now();
    while !api.calls("answercallbackquery").iter().any(|c| {
        c["callback_query_id"] == "cb-bogus"
            && c["text"].as_str().is_some_and(|t| t.contains("no longer works"))
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            api.calls("answercallbackquery")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(events_of(db, &external).len(), before);

    // /human: the conversation goes to the agents' inbox; an agent's answer reaches
    // the chat.
    let mark = api.sent_count();
    api.push(text(ann, "/human"));
    api.wait_for(mark, ann, |t| t.contains("colleague"));
    let base = served.base.clone();
    let conversation = block_on(async {
        let (s, inbox) =
            call(&base, "GET", "/api/v1/agent/conversations?state=waiting", Some(AGENT), None)
                .await;
        assert_eq!(s, 200, "{inbox}");
        inbox
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["customer"] == external.as_str())
            .unwrap_or_else(|| panic!("no Telegram conversation in {inbox}"))["id"]
            .as_i64()
            .unwrap()
    });
    let mark = api.sent_count();
    block_on(async {
        let path = |what: &str| format!("/api/v1/agent/conversations/{conversation}/{what}");
        let (s, _) = call(&base, "POST", &path("takeover"), Some(AGENT), None).await;
        assert_eq!(s, 200);
        let (s, _) = call(
            &base,
            "POST",
            &path("messages"),
            Some(AGENT),
            Some(json!({ "text": "Hello Ann, this is Ana. Your order ships today." })),
        )
        .await;
        assert_eq!(s, 200);
    });
    let delivered = api.wait_for(mark, ann, |t| t.contains("Your order ships today"));
    assert!(delivered.last().unwrap().text.starts_with("ana"), "{delivered:?}");

    // Input the bot cannot take is answered in words, and the bot keeps going.
    let mark = api.sent_count();
    let sticker = json!({ "file_id": "CAAC", "file_unique_id": "AgAD", "file_size": 100,
        "width": 512, "height": 512, "type": "regular", "is_animated": false,
        "is_video": false, "emoji": "👍" });
    api.push(json!({ "message": message(ann, json!({ "sticker": sticker })) }));
    api.wait_for(mark, ann, |t| t.contains("only read text"));
    let mark = api.sent_count();
    let photo = json!([{ "file_id": "P1", "file_unique_id": "U1", "width": 90, "height": 90, "file_size": 900 }]);
    api.push(json!({ "message": message(ann, json!({ "photo": photo })) }));
    api.wait_for(mark, ann, |t| t.contains("only read text"));
    let mark = api.sent_count();
    api.push(json!({ "edited_message": message(ann, json!({ "text": "How much is Dune?", "edit_date": 1_700_000_100 })) }));
    api.wait_for(mark, ann, |t| t.contains("not edits"));
    let mark = api.sent_count();
    api.push(text(ann, &"very long question ".repeat(300)));
    api.wait_for(mark, ann, |t| {
        t.contains("could not read that message") && t.contains("limit is 2000")
    });
    let mark = api.sent_count();
    api.push(text(ann, "/frobnicate"));
    api.wait_for(mark, ann, |t| t.contains("do not know that command"));
    // In a group the bot leaves chatter alone and points a command to a private chat.
    let group = |text: &str| {
        json!({ "message": { "message_id": 9, "date": 1_700_000_000,
            "chat": { "id": -100_777, "type": "group", "title": "Book club" },
            "from": user(ann), "text": text } })
    };
    let mark = api.sent_count();
    api.push(group("anyone read Dune?"));
    api.push(group("/search dune"));
    let said = api.wait_for(mark, -100_777, |t| t.contains("private chat"));
    assert_eq!(said.len(), 1, "{said:?}");

    // The Bot API answers 429 with retry_after: the bot waits that long and sends again.
    api.script(
        "SendMessage",
        429,
        json!({ "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2",
                "parameters": { "retry_after": 2 } }),
    );
    let mark = api.sent_count();
    api.push(text(ann, "/help"));
    let help = api.wait_for(mark, ann, |t| t.contains("/search"));
    let refused_at = {
        let f = api.fake.lock().unwrap();
        let (_, refused_text, at) = f.refused.last().expect("the 429 was given").clone();
        assert!(refused_text.contains("/search"), "{refused_text}");
        at
    };
    let waited = help.last().unwrap().at.duration_since(refused_at);
    assert!(waited >= Duration::from_secs(2), "sent again after {waited:?}, not after retry_after");
    // An error the Bot API gives for good loses that message only.
    api.script(
        "SendMessage",
        400,
        json!({ "ok": false, "error_code": 400, "description": "Bad Request: message is too long" }),
    );
    api.push(text(ann, "/help"));
    let mark = api.sent_count();
    api.push(text(ann, "/search tolkien"));
    api.wait_for(mark, ann, |t| t.contains("Here is what I found for \"tolkien\""));

    // A restart in the middle of a dialogue: /search without words waits for them; the
    // bot is killed; the words that come after the restart are read as the query.
    let mark = api.sent_count();
    let asked_for_words = api.push(text(ann, "/search"));
    api.wait_for(mark, ann, |t| t.contains("What are you looking for"));
    let chat_before = block_on(store.telegram_chat(ann)).unwrap().unwrap();
    assert!(chat_before.state.contains("query"), "{chat_before:?}");
    drop(served); // SIGKILL
    // Telegram sends an update again when the bot stopped before confirming it: this
    // one was answered before the kill, so it must not be answered again.
    api.push_again(asked_for_words);
    let polls = api.calls("getupdates").len();
    let served = serve_again(db, &env);
    let started = Instant::now();
    while api.calls("getupdates").len() == polls {
        assert!(started.elapsed() < Duration::from_secs(600), "the restarted bot never polled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mark = api.sent_count();
    api.push(text(ann, "hobbit"));
    let found = api.wait_for(mark, ann, |t| t.contains("Here is what I found for \"hobbit\""));
    let again = api.wait_for(mark, ann, |t| t.contains(&book.title));
    assert!(!found.is_empty() && !again.is_empty());
    let chat_after = block_on(store.telegram_chat(ann)).unwrap().unwrap();
    assert_eq!(chat_after.conversation, chat_before.conversation, "the same conversation goes on");
    // Updates the killed bot had answered but not confirmed were not answered twice.
    let asked = api
        .sent_since(0, ann)
        .iter()
        .filter(|s| s.text.contains("What are you looking for"))
        .count();
    let given = api.fake.lock().unwrap().given.iter().filter(|&&id| id == asked_for_words).count();
    assert_eq!((asked, given), (1, 2), "answered once, though given twice");

    // A web account linked with a one-time code: the chat's messages are that
    // customer's from then on.
    let code = block_on(async {
        let (s, code) =
            call(&served.base, "POST", "/api/v1/users/bx:11676/link-code", Some(STOREFRONT), None)
                .await;
        assert_eq!(s, 200, "{code}");
        code["code"].as_str().unwrap().to_owned()
    });
    let bob = 5002;
    let mark = api.sent_count();
    api.push(text(bob, &format!("/link {}", code.to_lowercase())));
    api.wait_for(mark, bob, |t| t.contains("connected to your shop account"));
    let linked = block_on(store.telegram_chat(bob)).unwrap().unwrap();
    let account = block_on(store.user_by_external_id("bx:11676")).unwrap().unwrap();
    assert_eq!(linked.user, account.id);
    let eve = 5003;
    let mark = api.sent_count();
    api.push(text(eve, &format!("/start {code}")));
    api.wait_for(mark, eve, |t| t.contains("code does not work"));
    drop(served);
}

#[test]
fn webhook_mode_takes_updates_on_the_servers_own_port_with_the_secret_only() {
    let db = TestDb::sqlite();
    let api = BotApi::start();
    let dir = tempfile::tempdir().unwrap();
    // Without a secret (replicas behind one address must share it) serve refuses to start.
    let no_secret = config_file(
        dir.path(),
        "mode = \"webhook\"\nwebhook_url = \"https://shop.test/telegram/hook-7f3a\"\n",
    );
    let out = crate::support::shopgraph()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(db.args())
        .envs([("TELOXIDE_TOKEN", TOKEN), ("SHOPGRAPH_CONFIG", no_secret.as_str())])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("webhook_secret"), "{said}");

    let config = config_file(
        dir.path(),
        "mode = \"webhook\"\nwebhook_url = \"https://shop.test/telegram/hook-7f3a\"\nwebhook_secret = \"s3cret-Token_1\"\n",
    );
    let env = [
        ("TELOXIDE_TOKEN", TOKEN),
        ("TELOXIDE_API_URL", api.base.as_str()),
        ("SHOPGRAPH_CONFIG", config.as_str()),
    ];
    let served = serve(&db, &env);
    let started = Instant::now();
    while api.calls("setwebhook").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the webhook was never set");
        std::thread::sleep(Duration::from_millis(100));
    }
    let set = api.calls("setwebhook");
    assert_eq!(set.len(), 1, "{set:?}");
    let sent = set[0].to_string();
    assert!(
        sent.contains("https://shop.test/telegram/hook-7f3a") && sent.contains("s3cret-Token_1"),
        "{sent}"
    );
    let ann = 6001;
    let update = json!({ "update_id": 1, "message": message(ann, json!({ "text": "/help" })) });
    let post = |secret: Option<&str>| {
        let base = served.base.clone();
        let update = update.to_string();
        block_on(async move {
            let client = reqwest::Client::new();
            let mut request = client
                .post(format!("{base}/telegram/hook-7f3a"))
                .header("content-type", "application/json")
                .body(update);
            if let Some(s) = secret {
                request = request.header("X-Telegram-Bot-Api-Secret-Token", s);
            }
            request.send().await.unwrap().status().as_u16()
        })
    };
    assert_eq!(post(None), 401);
    assert_eq!(post(Some("wrong")), 401);
    let mark = api.sent_count();
    assert_eq!(post(Some("s3cret-Token_1")), 200);
    api.wait_for(mark, ann, |t| t.contains("/recommend"));
    // Telegram sends an update again when it did not hear back in time: answered once.
    assert_eq!(post(Some("s3cret-Token_1")), 200);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api.sent_since(mark, ann).len(), 1);
    assert!(api.calls("getupdates").is_empty(), "webhook mode does not poll");
    drop(served);
}

/// The prompt-injection suite through the bot and through the web chat of one server:
/// planted reviews and hostile messages change no price and make the assistant say
/// nothing the suite forbids.
#[test]
fn the_injection_suite_through_the_bot_and_the_web_chat() {
    let db = TestDb::sqlite();
    let api = BotApi::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let env = [
        ("TELOXIDE_TOKEN", TOKEN),
        ("TELOXIDE_API_URL", api.base.as_str()),
        ("SHOPGRAPH_CONFIG", config.as_str()),
    ];
    let served = serve(&db, &env);
    api.wait_polling();
    let store = db.store();
    block_on(crate::injection::plant_reviews(&served.base));
    let cases = crate::injection::cases();
    assert!(cases.len() >= 5, "{cases:?}");

    let mut failures = block_on(crate::injection::through_web(&served.base, &store));
    for (i, case) in cases.iter().enumerate() {
        // A chat of its own each, as a new customer.
        let chat = 7100 + i as i64;
        let mark = api.sent_count();
        api.push(text(chat, &case.message));
        // The answer is the first message; the cards under it come after.
        let first = api.wait_for(mark, chat, |_| true);
        std::thread::sleep(Duration::from_millis(500));
        let said: Vec<String> = api.sent_since(mark, chat).into_iter().map(|s| s.text).collect();
        let price = block_on(crate::injection::price_of(&store, case));
        let answer = &first.last().unwrap().text;
        failures.extend(crate::injection::judge(case, answer, price.as_deref()));
        failures.extend(crate::injection::judge(
            &crate::injection::Case { price_of: None, ..case.clone() },
            &said.join("\n"),
            None,
        ));
    }
    assert!(failures.is_empty(), "the injection suite failed:\n{}", failures.join("\n"));
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[allow(clippy::print_stdout, reason = "a benchmark's figures are its output")]
fn summary(what: &str, mut took: Vec<Duration>, elapsed: Duration) -> f64 {
    took.sort();
    let rate = took.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{what}: {} in {:.1} s: {rate:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        took.len(),
        elapsed.as_secs_f64(),
        percentile(&took, 0.5),
        percentile(&took, 0.99)
    );
    rate
}

/// A measurement, not a test (`scripts/bench-telegram.sh`): searches through the bot for
/// 10 seconds, 32 chats each sending its next `/search` once the last was answered,
/// against the same queries through the HTTP search API from 32 clients for as long,
/// the peer in this run.
/// The bot's time runs from the update being queued to its first reply (the books
/// follow as messages of their own); it includes the long poll's hand-over, the
/// store's writes (the search event, the conversation, the update marked handled) and
/// every message sent to the Bot API.
#[test]
#[ignore = "a benchmark: scripts/bench-telegram.sh"]
#[allow(clippy::print_stdout, reason = "a benchmark's figures are its output")]
fn bench_search_through_the_bot_and_through_the_api() {
    const CLIENTS: i64 = 32;
    const FOR: Duration = Duration::from_secs(10);
    let db = TestDb::sqlite();
    let api = BotApi::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    // No rate limits here: what is measured is the bot's own work.
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("chat_rate = 20.0", "chat_rate = 100000.0")
        .replace("chat_burst = 20", "chat_burst = 100000\nglobal_rate = 100000.0")
        + "\n[rate_limit]\nper_key = 0\n";
    std::fs::write(&config, config_text).unwrap();
    let env = [
        ("TELOXIDE_TOKEN", TOKEN),
        ("TELOXIDE_API_URL", api.base.as_str()),
        ("SHOPGRAPH_CONFIG", config.as_str()),
    ];
    let served = serve(&db, &env);
    api.wait_polling();
    let store = db.store();
    let titles: Vec<String> = block_on(store.products_page(shopgraph_core::ProductId(0), 200))
        .unwrap()
        .into_iter()
        .map(|p| p.title.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    let titles = Arc::new(titles);
    let query =
        move |client: i64, i: usize| titles[(client as usize * 7 + i * 13) % titles.len()].clone();

    let bot = block_on(async {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let api = api.clone();
            let query = query.clone();
            let mut sends = api.sends.subscribe();
            tasks.push(tokio::spawn(async move {
                let chat = 9_000 + client;
                let mut took = Vec::new();
                for i in 0.. {
                    if started.elapsed() > FOR {
                        break;
                    }
                    let asked = Instant::now();
                    api.push(text(chat, &format!("/search {}", query(client, i))));
                    loop {
                        let sent = sends.recv().await.expect("the fake Bot API is up");
                        if sent.chat == chat
                            && (sent.text.starts_with("Here is what I found")
                                || sent.text.starts_with("I could not find"))
                        {
                            took.push(sent.at.duration_since(asked));
                            break;
                        }
                    }
                }
                took
            }));
        }
        let mut took = Vec::new();
        for t in tasks {
            took.extend(t.await.unwrap());
        }
        (took, started.elapsed())
    });
    let sent = api.sent_count();

    let base = served.base.clone();
    let peer = block_on(async {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, base, query) = (client.clone(), base.clone(), query.clone());
            tasks.push(tokio::spawn(async move {
                let mut took = Vec::new();
                for i in 0.. {
                    if started.elapsed() > FOR {
                        break;
                    }
                    let asked = Instant::now();
                    let q: String = query(c, i)
                        .bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect();
                    let response = client
                        .get(format!("{base}/api/v1/search?q={q}&n=5"))
                        .bearer_auth(STOREFRONT)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status().as_u16(), 200);
                    response.bytes().await.unwrap();
                    took.push(asked.elapsed());
                }
                took
            }));
        }
        let mut took = Vec::new();
        for t in tasks {
            took.extend(t.await.unwrap());
        }
        (took, started.elapsed())
    });
    let answered = bot.0.len();
    let bot_rate = summary("telegram /search, to the first reply", bot.0, bot.1);
    println!(
        "  {sent} messages sent to the Bot API ({:.1} per search)",
        sent as f64 / answered as f64
    );
    let api_rate = summary("peer: GET /api/v1/search, the same queries", peer.0, peer.1);
    println!(
        "ratio: the bot answers {:.2}x the searches a second of the HTTP API",
        bot_rate / api_rate
    );
    let resident = std::fs::read_to_string(format!("/proc/{}/status", served.pid()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(str::to_owned)
        .unwrap_or_default();
    println!("server {resident}");
}
