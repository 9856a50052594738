//! The store's behaviour, proven the same on both backends: every test below runs once
//! against a real SQLite file in WAL mode and once against the PostgreSQL server on this
//! machine (each test in a schema of its own, so parallel runs never trample).
//!
//! PostgreSQL is found at `SHOPGRAPH_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it is down these tests fail and say
//! so: the README's test command starts it.

use std::sync::atomic::{AtomicUsize, Ordering};

use shopgraph_core::conversation::{Handoff, NewMessage, Role};
use shopgraph_core::event::{EventError, EventKind, NewEvent, payload_from_bytes};
use shopgraph_core::interest::{InterestSource, NewInterest, Polarity};
use shopgraph_core::kg::Triple;
use shopgraph_core::product::{Category, Maker, MakerKind, NewProduct};
use shopgraph_core::segment::{NewSegment, ProductRule};
use shopgraph_core::user::NewUser;
use shopgraph_core::{ProductId, UserId};
use shopgraph_store::{EventFilter, ModelRecord, Store, StoreError, StoreOptions};

struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<String>,
}

fn postgres_url() -> String {
    std::env::var("SHOPGRAPH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn sqlite_db(migrate: bool) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("shop.db").display());
    let options = StoreOptions::new(&url);
    let store =
        if migrate { Store::open(&options).await } else { Store::open_unmigrated(&options).await };
    TestDb { store: store.unwrap(), _dir: Some(dir), pg_schema: None }
}

async fn postgres_db(migrate: bool) -> TestDb {
    static N: AtomicUsize = AtomicUsize::new(0);
    let schema = format!(
        "sgtest_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        shopgraph_core::now_ms() % 1_000_000
    );
    let mut options = StoreOptions::new(&postgres_url());
    options.pg_schema = Some(schema.clone());
    let store =
        if migrate { Store::open(&options).await } else { Store::open_unmigrated(&options).await };
    let store = store.unwrap_or_else(|e| {
        panic!("PostgreSQL at {} is needed for this test: {e}", postgres_url())
    });
    TestDb { store, _dir: None, pg_schema: Some(schema) }
}

impl TestDb {
    async fn finish(self) {
        self.store.close().await;
        if let Some(schema) = &self.pg_schema {
            Store::drop_pg_schema(&postgres_url(), schema).await.unwrap();
        }
    }
}

/// Generates, for each named test function, one `#[tokio::test]` per backend.
macro_rules! on_both_backends {
    ($($name:ident $(($migrated:expr))?),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = super::sqlite_db(true $(&& $migrated)?).await;
                super::$name(&db.store).await;
                db.finish().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = super::postgres_db(true $(&& $migrated)?).await;
                super::$name(&db.store).await;
                db.finish().await;
            })*
        }
    };
}

on_both_backends!(
    migrations_upgrade_an_older_database_in_place(false),
    a_database_newer_than_the_binary_is_refused,
    catalog_upserts_round_trip,
    a_retried_event_is_stored_once,
    events_read_by_user_product_window_and_cursor,
    bad_events_are_refused_and_leave_nothing,
    interests_keep_their_sources_and_can_be_removed,
    conversations_keep_messages_tool_calls_and_handoff,
    deleting_a_user_erases_everything_derived,
    segments_models_and_triples,
    association_rules_are_versioned_and_checked,
    concurrent_appends_are_all_kept_in_cursor_order,
    telegram_chats_deliveries_updates_and_link_codes,
);

// --- fixtures ---------------------------------------------------------------------

fn user(external_id: &str) -> NewUser {
    NewUser {
        external_id: external_id.to_owned(),
        display_name: None,
        location: Some("porto, portugal".into()),
        age: Some(31),
        attributes: None,
    }
}

fn book(sku: &str, title: &str, author: &str) -> NewProduct {
    NewProduct {
        sku: sku.to_owned(),
        title: title.to_owned(),
        description: None,
        maker: Some(Maker {
            kind: MakerKind::Author,
            key: author.to_lowercase(),
            name: author.to_owned(),
        }),
        publisher: Some(Maker {
            kind: MakerKind::Publisher,
            key: "ballantine".into(),
            name: "Ballantine".into(),
        }),
        year: Some(1999),
        image_url: None,
        price_cents: 1299,
        currency: "EUR".into(),
        stock: 4,
        category_keys: vec![],
        attributes: None,
        synthetic_fields: vec!["price_cents".into(), "stock".into()],
        source: "test".into(),
    }
}

fn event(
    key: &str,
    user: UserId,
    product: Option<ProductId>,
    kind: EventKind,
    at: i64,
) -> NewEvent {
    NewEvent {
        idempotency_key: key.to_owned(),
        user,
        product,
        kind,
        value: (kind == EventKind::Rating).then_some(8.0),
        payload: None,
        occurred_at: at,
    }
}

/// Two users and two books, returned as ids.
async fn seed(store: &Store) -> (Vec<UserId>, Vec<ProductId>) {
    let users = store.upsert_users(&[user("u1"), user("u2")]).await.unwrap();
    let products = store
        .upsert_products(&[
            book("9780345339683", "The Hobbit", "Tolkien"),
            book("9780441172719", "Dune", "Herbert"),
        ])
        .await
        .unwrap();
    (users, products)
}

// --- tests ------------------------------------------------------------------------

async fn migrations_upgrade_an_older_database_in_place(store: &Store) {
    assert_eq!(store.migrate_to(1).await.unwrap(), 1);
    let (users, products) = seed(store).await;
    for (key, at) in [("e1", 1_000), ("e2", 1_500)] {
        store
            .append_event(&event(key, users[0], Some(products[0]), EventKind::View, at))
            .await
            .unwrap();
    }
    let before = store.last_event_seq().await.unwrap();

    // A newer binary opens the version-1 database and upgrades it without losing rows
    // (version 3 rebuilds SQLite's events table for a new kind).
    assert_eq!(store.migrate().await.unwrap(), shopgraph_store::LATEST_VERSION);
    assert_eq!(store.count_events().await.unwrap(), 2);
    assert_eq!(store.last_event_seq().await.unwrap(), before);
    assert_eq!(store.event_seq_by_key("e2").await.unwrap(), Some(before));
    let dismissed = store
        .append_event(&event("e3", users[0], Some(products[1]), EventKind::Dismiss, 3_000))
        .await
        .unwrap();
    assert!(dismissed.seq > before, "{dismissed:?} after {before}");
    assert_eq!(store.product(products[0]).await.unwrap().unwrap().title, "The Hobbit");
    let interest = NewInterest {
        user: users[0],
        subject: "author:tolkien".into(),
        weight: 1.0,
        polarity: Polarity::Likes,
        source: InterestSource::Event(1),
        at: 2_000,
    };
    store.add_interest(&interest).await.unwrap();
    // Migrating again is a no-op.
    assert_eq!(store.migrate().await.unwrap(), shopgraph_store::LATEST_VERSION);
}

async fn a_database_newer_than_the_binary_is_refused(store: &Store) {
    seed(store).await;
    // Pretend a newer shopgraph migrated this database further.
    store.record_foreign_migration_for_tests(99).await.unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade shopgraph"));
}

async fn catalog_upserts_round_trip(store: &Store) {
    store
        .upsert_categories(&[
            Category { key: "fiction".into(), name: "Fiction".into(), parent_key: None },
            Category {
                key: "fantasy".into(),
                name: "Fantasy".into(),
                parent_key: Some("fiction".into()),
            },
        ])
        .await
        .unwrap();
    let mut hobbit = book("9780345339683", "The Hobbit", "Tolkien");
    hobbit.category_keys = vec!["fantasy".into(), "fiction".into()];
    let ids = store.upsert_products(&[hobbit.clone()]).await.unwrap();
    let stored = store.product(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        stored.maker.as_ref().map(|m| (m.key.as_str(), m.name.as_str())),
        Some(("tolkien", "Tolkien"))
    );
    assert_eq!(stored.publisher.as_ref().map(|m| m.name.as_str()), Some("Ballantine"));
    assert_eq!(stored.categories, ["fantasy", "fiction"]);
    assert_eq!(stored.synthetic_fields, ["price_cents", "stock"]);
    assert_eq!((stored.price_cents, stored.stock, stored.year), (1299, 4, Some(1999)));

    // Upserting again updates in place and keeps the id; categories are replaced.
    hobbit.title = "The Hobbit, or There and Back Again".into();
    hobbit.category_keys = vec!["fantasy".into()];
    let again = store.upsert_products(&[hobbit]).await.unwrap();
    assert_eq!(again, ids);
    let stored = store.product_by_sku("9780345339683").await.unwrap().unwrap();
    assert_eq!(stored.title, "The Hobbit, or There and Back Again");
    assert_eq!(stored.categories, ["fantasy"]);

    let mut orphan = book("9780000000002", "Orphan", "Nobody");
    orphan.category_keys = vec!["no-such-category".into()];
    let err = store.upsert_products(&[orphan]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(store.product_by_sku("9780000000002").await.unwrap().is_none(), "nothing half-written");

    store.set_stock(ids[0], 0).await.unwrap();
    assert_eq!(store.product(ids[0]).await.unwrap().unwrap().stock, 0);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts.products, counts.categories, counts.authors, counts.publishers),
        (1, 2, 1, 1)
    );
    let page = store.products_page(ProductId(0), 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].categories, ["fantasy"]);
    assert_eq!(page[0].maker.as_ref().map(|m| m.key.as_str()), Some("tolkien"));
}

async fn a_retried_event_is_stored_once(store: &Store) {
    let (users, products) = seed(store).await;
    let e = event("checkout-42", users[0], Some(products[0]), EventKind::Purchase, 5_000);
    let first = store.append_event(&e).await.unwrap();
    let retry = store.append_event(&e).await.unwrap();
    assert!(!first.duplicate);
    assert!(retry.duplicate);
    assert_eq!(first.seq, retry.seq);

    let batch = vec![
        e.clone(),
        event("b1", users[0], Some(products[1]), EventKind::View, 6_000),
        event("b2", users[1], Some(products[1]), EventKind::AddToCart, 7_000),
        event("b2", users[1], Some(products[1]), EventKind::AddToCart, 7_000),
    ];
    let out = store.append_events(&batch).await.unwrap();
    assert_eq!((out.inserted, out.duplicates), (2, 2));
    let out = store.append_events(&batch).await.unwrap();
    assert_eq!((out.inserted, out.duplicates, out.last_seq), (0, 4, None));
    assert_eq!(store.count_events().await.unwrap(), 3);
}

async fn events_read_by_user_product_window_and_cursor(store: &Store) {
    let (u, p) = seed(store).await;
    let mut search = event("s1", u[1], None, EventKind::Search, 2_500);
    search.payload = Some(r#"{"query":"tolkien hobbit"}"#.into());
    store
        .append_events(&[
            event("a", u[0], Some(p[0]), EventKind::View, 1_000),
            event("b", u[0], Some(p[1]), EventKind::Rating, 2_000),
            search,
            event("d", u[1], Some(p[0]), EventKind::Purchase, 3_000),
        ])
        .await
        .unwrap();
    let keys = |events: Vec<shopgraph_core::event::Event>| {
        events.into_iter().map(|e| e.idempotency_key).collect::<Vec<_>>()
    };
    let by_user =
        store.events(&EventFilter { user: Some(u[0]), ..Default::default() }).await.unwrap();
    assert_eq!(by_user[1].value, Some(8.0));
    assert_eq!(keys(by_user), ["a", "b"]);
    let by_product =
        store.events(&EventFilter { product: Some(p[0]), ..Default::default() }).await.unwrap();
    assert_eq!(keys(by_product), ["a", "d"]);
    let window = store
        .events(&EventFilter { from: Some(2_000), to: Some(3_000), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(window[1].payload.as_deref(), Some(r#"{"query":"tolkien hobbit"}"#));
    assert_eq!(keys(window), ["b", "s1"]);
    let purchases = store
        .events(&EventFilter { kind: Some(EventKind::Purchase), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(keys(purchases), ["d"]);

    // A consumer pages through the stream by cursor and resumes where it saved.
    assert_eq!(store.cursor("graph").await.unwrap(), 0);
    let page = store.events_after(0, 3).await.unwrap();
    assert_eq!(keys(page.clone()), ["a", "b", "s1"]);
    store.save_cursor("graph", page.last().unwrap().seq).await.unwrap();
    let resumed = store.events_after(store.cursor("graph").await.unwrap(), 10).await.unwrap();
    assert_eq!(keys(resumed), ["d"]);

    // Popularity counts interactions only (the search event names no product), for
    // every product or for some; and what changed after a sequence number.
    let all = store.product_popularity(None).await.unwrap();
    assert_eq!((all[&p[0]], all[&p[1]]), (2, 1));
    let some = store.product_popularity(Some(&[p[1]])).await.unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(some[&p[1]], 1);
    let last = store.last_event_seq().await.unwrap();
    assert_eq!(last, page.last().unwrap().seq + 1);
    assert_eq!(store.products_with_events_after(page[0].seq).await.unwrap(), [p[0], p[1]]);
    assert!(store.products_with_events_after(last).await.unwrap().is_empty());
}

async fn bad_events_are_refused_and_leave_nothing(store: &Store) {
    let (u, p) = seed(store).await;
    store.append_event(&event("ok", u[0], Some(p[0]), EventKind::View, 1_000)).await.unwrap();

    let err = store
        .append_event(&event("x1", UserId(9_999), Some(p[0]), EventKind::View, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownUser(UserId(9_999))), "{err}");
    let err = store
        .append_event(&event("x2", u[0], Some(ProductId(9_999)), EventKind::View, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownProduct(ProductId(9_999))), "{err}");
    assert_eq!(EventKind::parse("teleport"), Err(EventError::UnknownKind("teleport".into())));
    let mut big = event("x3", u[0], Some(p[0]), EventKind::Review, 1);
    big.payload = Some("a".repeat(shopgraph_core::event::MAX_PAYLOAD_BYTES + 1));
    let err = store.append_event(&big).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidEvent { index: 0, error: EventError::PayloadTooLarge { .. } }
        ),
        "{err}"
    );
    assert_eq!(
        payload_from_bytes(b"{\"text\":\"\xc3\x28\"}"),
        Err(EventError::InvalidUtf8 { valid_up_to: 9 })
    );

    // One bad event in the middle of a batch refuses the whole batch.
    let batch = vec![
        event("y1", u[0], Some(p[0]), EventKind::View, 2_000),
        event("y2", u[1], Some(ProductId(424_242)), EventKind::Click, 2_001),
        event("y3", u[1], Some(p[1]), EventKind::View, 2_002),
    ];
    let err = store.append_events(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownProduct(ProductId(424_242))), "{err}");
    assert!(err.is_user_error());
    let mut bad_shape = batch.clone();
    bad_shape[1] = event("y2", u[1], None, EventKind::Rating, 2_001);
    let err = store.append_events(&bad_shape).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidEvent { index: 1, .. }), "{err}");

    assert_eq!(store.count_events().await.unwrap(), 1, "nothing half-written");
    assert_eq!(store.event_seq_by_key("y1").await.unwrap(), None);
}

async fn interests_keep_their_sources_and_can_be_removed(store: &Store) {
    let (u, p) = seed(store).await;
    let seq = store
        .append_event(&event("r", u[0], Some(p[0]), EventKind::Review, 1_000))
        .await
        .unwrap()
        .seq;
    let from_review = NewInterest {
        user: u[0],
        subject: "author:tolkien".into(),
        weight: 0.9,
        polarity: Polarity::Likes,
        source: InterestSource::Review(seq),
        at: 1_000,
    };
    let id = store.add_interest(&from_review).await.unwrap();
    let wrong = NewInterest {
        subject: "category:horror".into(),
        weight: 0.4,
        polarity: Polarity::Dislikes,
        source: InterestSource::ChatMessage(17),
        ..from_review.clone()
    };
    let wrong_id = store.add_interest(&wrong).await.unwrap();
    let interests = store.interests(u[0]).await.unwrap();
    assert_eq!(interests.len(), 2);
    assert_eq!(interests[0].id, id);
    assert_eq!(interests[0].source, InterestSource::Review(seq));
    assert_eq!(interests[1].polarity, Polarity::Dislikes);
    assert_eq!(interests[1].source, InterestSource::ChatMessage(17));

    store.remove_interest(wrong_id).await.unwrap();
    assert_eq!(store.interests(u[0]).await.unwrap().len(), 1);
    assert!(matches!(store.remove_interest(wrong_id).await, Err(StoreError::UnknownInterest(_))));
    let nobody = NewInterest { user: UserId(77_777), ..from_review.clone() };
    assert!(matches!(store.add_interest(&nobody).await, Err(StoreError::UnknownUser(_))));
    let nan = NewInterest { weight: f64::NAN, ..from_review };
    assert!(matches!(store.add_interest(&nan).await, Err(StoreError::Invalid(_))));
}

async fn conversations_keep_messages_tool_calls_and_handoff(store: &Store) {
    let (u, _) = seed(store).await;
    let conv = store.open_conversation(u[0], "web").await.unwrap();
    assert_eq!(conv.handoff, Handoff::Bot);
    let say = |role, content: &str| NewMessage {
        role,
        content: content.into(),
        tool_name: None,
        tool_payload: None,
    };
    store.append_message(conv.id, &say(Role::User, "Is Dune in stock?")).await.unwrap();
    let call = NewMessage {
        role: Role::Tool,
        content: String::new(),
        tool_name: Some("product_lookup".into()),
        tool_payload: Some(r#"{"sku":"9780441172719","stock":4}"#.into()),
    };
    store.append_message(conv.id, &call).await.unwrap();
    store.append_message(conv.id, &say(Role::Assistant, "Yes, 4 copies.")).await.unwrap();
    let messages = store.messages(conv.id).await.unwrap();
    assert_eq!(
        messages.iter().map(|m| m.role).collect::<Vec<_>>(),
        [Role::User, Role::Tool, Role::Assistant]
    );
    assert_eq!(messages[1].tool_name.as_deref(), Some("product_lookup"));

    store.set_handoff(conv.id, Handoff::Waiting, None).await.unwrap();
    let inbox = store.conversations_by_handoff(Handoff::Waiting, 10).await.unwrap();
    assert_eq!(inbox.iter().map(|c| c.id).collect::<Vec<_>>(), [conv.id]);
    let taken = store.set_handoff(conv.id, Handoff::Agent, Some("ana")).await.unwrap();
    assert_eq!((taken.handoff, taken.agent.as_deref()), (Handoff::Agent, Some("ana")));
    assert!(store.conversations_by_handoff(Handoff::Waiting, 10).await.unwrap().is_empty());
    assert_eq!(store.conversations_of_user(u[0]).await.unwrap().len(), 1);

    let missing = shopgraph_core::ConversationId(123_456);
    assert!(matches!(
        store.append_message(missing, &say(Role::User, "hi")).await,
        Err(StoreError::UnknownConversation(_))
    ));
    let flood = say(Role::User, &"x".repeat(shopgraph_store::MAX_MESSAGE_BYTES + 1));
    assert!(matches!(store.append_message(conv.id, &flood).await, Err(StoreError::Invalid(_))));
    assert_eq!(store.messages(conv.id).await.unwrap().len(), 3);
}

async fn deleting_a_user_erases_everything_derived(store: &Store) {
    let (u, p) = seed(store).await;
    store
        .append_events(&[
            event("1", u[0], Some(p[0]), EventKind::View, 1),
            event("2", u[0], Some(p[1]), EventKind::Purchase, 2),
            event("3", u[1], Some(p[1]), EventKind::View, 3),
        ])
        .await
        .unwrap();
    let interest = NewInterest {
        user: u[0],
        subject: "author:herbert".into(),
        weight: 1.0,
        polarity: Polarity::Likes,
        source: InterestSource::Stated,
        at: 1,
    };
    store.add_interest(&interest).await.unwrap();
    let conv = store.open_conversation(u[0], "telegram").await.unwrap();
    let hello = NewMessage {
        role: Role::User,
        content: "hello".into(),
        tool_name: None,
        tool_payload: None,
    };
    store.append_message(conv.id, &hello).await.unwrap();
    store
        .put_segments(
            1,
            &[NewSegment {
                key: "sf".into(),
                description: "SF readers".into(),
                members: vec![(u[0], 0.8), (u[1], 0.5)],
            }],
        )
        .await
        .unwrap();

    let deleted = store.delete_user(u[0]).await.unwrap();
    assert_eq!(
        (
            deleted.events,
            deleted.interests,
            deleted.conversations,
            deleted.messages,
            deleted.segment_memberships
        ),
        (2, 1, 1, 1, 1)
    );
    assert!(store.user(u[0]).await.unwrap().is_none());
    assert!(
        store
            .events(&EventFilter { user: Some(u[0]), ..Default::default() })
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.interests(u[0]).await.unwrap().is_empty());
    assert!(store.conversation(conv.id).await.unwrap().is_none());
    assert!(store.messages(conv.id).await.unwrap().is_empty());
    // The other shopper and the catalog are untouched.
    assert_eq!(store.count_events().await.unwrap(), 1);
    assert_eq!(store.segments(1).await.unwrap()[0].n_members, 1);
    assert!(store.product(p[1]).await.unwrap().is_some());
    assert!(matches!(store.delete_user(u[0]).await, Err(StoreError::UnknownUser(_))));
}

async fn segments_models_and_triples(store: &Store) {
    let (u, p) = seed(store).await;
    let run = |desc: &str| {
        vec![
            NewSegment {
                key: "fantasy".into(),
                description: desc.into(),
                members: vec![(u[0], 0.9)],
            },
            NewSegment {
                key: "scifi".into(),
                description: "SF".into(),
                members: vec![(u[1], 0.7), (u[0], 0.1)],
            },
        ]
    };
    store.put_segments(1, &run("v1")).await.unwrap();
    store.put_segments(2, &run("v2")).await.unwrap();
    store.put_segments(2, &run("v2 again")).await.unwrap();
    assert_eq!(store.latest_segment_version().await.unwrap(), Some(2));
    let v2 = store.segments(2).await.unwrap();
    assert_eq!(
        v2.iter().map(|s| (s.key.as_str(), s.n_members)).collect::<Vec<_>>(),
        [("fantasy", 1), ("scifi", 2)]
    );
    assert_eq!(v2[0].description, "v2 again");
    assert_eq!(store.segments_of_user(u[1]).await.unwrap().len(), 2);
    assert_eq!(store.segment_members(v2[1].id).await.unwrap(), [(u[0], 0.1), (u[1], 0.7)]);
    let ghost = vec![NewSegment {
        key: "g".into(),
        description: "".into(),
        members: vec![(UserId(5_555), 1.0)],
    }];
    assert!(matches!(store.put_segments(3, &ghost).await, Err(StoreError::Invalid(_))));
    assert_eq!(store.latest_segment_version().await.unwrap(), Some(2), "nothing half-written");

    for version in [1, 2] {
        let model = ModelRecord {
            name: "als".into(),
            version,
            kind: "matrix-factorisation".into(),
            params: Some(r#"{"factors":64}"#.into()),
            metrics: Some(format!(r#"{{"ndcg@10":0.{version}}}"#)),
            artifact: Some(format!("models/als-{version}.safetensors")),
            created_at: version,
        };
        store.put_model(&model).await.unwrap();
    }
    assert_eq!(store.latest_model("als").await.unwrap().unwrap().version, 2);
    assert!(store.latest_model("bpr").await.unwrap().is_none());

    let t =
        |h: &str, r: &str, tl: &str| Triple { head: h.into(), relation: r.into(), tail: tl.into() };
    let triples = vec![
        t("m.1", "film.film.genre", "m.g"),
        t("m.1", "film.film.actor", "m.a"),
        t("m.2", "film.film.genre", "m.g"),
    ];
    assert_eq!(store.add_triples(&triples, "ml-100k").await.unwrap(), 3);
    assert_eq!(store.add_triples(&triples, "ml-100k").await.unwrap(), 0);
    let first = store.triples_page(None, 2).await.unwrap();
    assert_eq!(first, [t("m.1", "film.film.actor", "m.a"), t("m.1", "film.film.genre", "m.g")]);
    let rest = store.triples_page(first.last(), 10).await.unwrap();
    assert_eq!(rest, [t("m.2", "film.film.genre", "m.g")]);
    store.link_product_entities(&[(p[0], "m.1".into()), (p[0], "m.1".into())]).await.unwrap();
    assert_eq!(store.product_entities(p[0]).await.unwrap(), ["m.1"]);
}

async fn association_rules_are_versioned_and_checked(store: &Store) {
    let (_, p) = seed(store).await;
    let rule = |a: ProductId, c: ProductId, confidence: f64| ProductRule {
        antecedent: vec![a],
        consequent: vec![c],
        support: 0.1,
        confidence,
        lift: 2.5,
    };
    assert_eq!(store.latest_rules_version().await.unwrap(), None);
    store.put_rules(1, &[rule(p[0], p[1], 0.4)]).await.unwrap();
    store.put_rules(2, &[rule(p[0], p[1], 0.5), rule(p[1], p[0], 0.6)]).await.unwrap();
    assert_eq!(store.latest_rules_version().await.unwrap(), Some(2));
    let v2 = store.rules(2).await.unwrap();
    assert_eq!(v2.len(), 2);
    assert_eq!(v2[0].confidence, 0.6, "equal lifts: the more confident first");
    assert_eq!(
        (v2[0].antecedent.as_slice(), v2[0].consequent.as_slice()),
        ([p[1]].as_slice(), [p[0]].as_slice())
    );
    // Bad rules are refused whole, and the version stays as it was.
    for bad in [
        ProductRule { antecedent: vec![], ..rule(p[0], p[1], 0.5) },
        ProductRule { consequent: vec![p[0]], ..rule(p[0], p[1], 0.5) },
        rule(p[0], p[1], 1.5),
        ProductRule { lift: f64::NAN, ..rule(p[0], p[1], 0.5) },
        ProductRule { consequent: vec![p[1], p[1]], ..rule(p[0], p[1], 0.5) },
    ] {
        let err = store.put_rules(2, std::slice::from_ref(&bad)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
    }
    let ghost = rule(p[0], ProductId(987_654), 0.5);
    assert!(matches!(store.put_rules(2, &[ghost]).await, Err(StoreError::Invalid(_))));
    assert_eq!(store.rules(2).await.unwrap(), v2, "nothing half-written");
}

async fn concurrent_appends_are_all_kept_in_cursor_order(store: &Store) {
    let (u, p) = seed(store).await;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        let (u, p) = (u.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let batch: Vec<NewEvent> = (0..4)
                    .map(|j| {
                        event(
                            &format!("w{writer}-{i}-{j}"),
                            u[j % 2],
                            Some(p[(i + j) % 2]),
                            EventKind::View,
                            i as i64,
                        )
                    })
                    .collect();
                store.append_events(&batch).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    loop {
        let page = store.events_after(cursor, 97).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
        cursor = last.seq;
        for e in page {
            assert!(seen.insert(e.idempotency_key), "an event was read twice");
        }
    }
    assert_eq!(seen.len(), 8 * 50 * 4);
}

async fn telegram_chats_deliveries_updates_and_link_codes(store: &Store) {
    use shopgraph_core::MessageId;
    use shopgraph_store::TelegramChat;

    let (u, _) = seed(store).await;
    let conv = store.open_conversation(u[0], "telegram").await.unwrap();
    let mut chat = TelegramChat {
        chat_id: -1_001_234_567_890,
        user: u[0],
        conversation: Some(conv.id),
        state: r#"{"awaiting":"query"}"#.into(),
        delivered: MessageId(0),
        created_at: 0,
        updated_at: 0,
    };
    assert_eq!(store.telegram_chat(chat.chat_id).await.unwrap(), None);
    assert!(store.add_telegram_chat(&chat).await.unwrap());
    assert!(!store.add_telegram_chat(&chat).await.unwrap(), "a chat is recorded once");
    let read = store.telegram_chat(chat.chat_id).await.unwrap().unwrap();
    assert_eq!(
        (read.user, read.conversation, read.state.as_str(), read.delivered),
        (u[0], Some(conv.id), chat.state.as_str(), MessageId(0))
    );

    // Agents' answers wait until claimed; a claim moves from the mark it read only.
    let say = |role, content: &str| NewMessage {
        role,
        content: content.into(),
        tool_name: None,
        tool_payload: None,
    };
    store.append_message(conv.id, &say(Role::User, "/human")).await.unwrap();
    let a1 = store.append_message(conv.id, &say(Role::Agent, "Hello, Ana here.")).await.unwrap();
    let a2 = store.append_message(conv.id, &say(Role::Agent, "It ships today.")).await.unwrap();
    let pending = store.pending_replies(10).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.message.id).collect::<Vec<_>>(), [a1.id, a2.id]);
    assert_eq!((pending[0].chat_id, pending[0].delivered), (chat.chat_id, MessageId(0)));
    assert!(store.claim_delivery(chat.chat_id, MessageId(0), a1.id).await.unwrap());
    assert!(
        !store.claim_delivery(chat.chat_id, MessageId(0), a1.id).await.unwrap(),
        "claimed twice"
    );
    let pending = store.pending_replies(10).await.unwrap();
    assert_eq!((pending.len(), pending[0].delivered), (1, a1.id));
    // A failed send gives the claim back.
    assert!(store.unclaim_delivery(chat.chat_id, a1.id, MessageId(0)).await.unwrap());
    assert_eq!(store.pending_replies(10).await.unwrap().len(), 2);
    assert!(store.claim_delivery(chat.chat_id, MessageId(0), a2.id).await.unwrap());
    assert!(store.pending_replies(10).await.unwrap().is_empty());

    // The dialogue state is written alone.
    store.set_telegram_state(chat.chat_id, "{}").await.unwrap();
    let read = store.telegram_chat(chat.chat_id).await.unwrap().unwrap();
    assert_eq!((read.state.as_str(), read.delivered), ("{}", a2.id));
    let long = "x".repeat(shopgraph_store::MAX_STATE_BYTES + 1);
    assert!(matches!(
        store.set_telegram_state(chat.chat_id, &long).await,
        Err(StoreError::Invalid(_))
    ));

    // A move to a new conversation (and account) happens only from the one expected;
    // the mark stays, and a late answer in the earlier conversation still arrives.
    let next = store.open_conversation(u[1], "telegram").await.unwrap();
    assert!(!store.switch_telegram_chat(chat.chat_id, None, u[1], next.id, "{}").await.unwrap());
    assert!(
        store.switch_telegram_chat(chat.chat_id, Some(conv.id), u[1], next.id, "{}").await.unwrap()
    );
    let read = store.telegram_chat(chat.chat_id).await.unwrap().unwrap();
    assert_eq!((read.user, read.conversation, read.delivered), (u[1], Some(next.id), a2.id));
    let late = store.append_message(conv.id, &say(Role::Agent, "One more thing.")).await.unwrap();
    let fresh = store.append_message(next.id, &say(Role::Agent, "Welcome back.")).await.unwrap();
    let pending = store.pending_replies(10).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.message.id).collect::<Vec<_>>(), [late.id, fresh.id]);
    chat.chat_id += 1;
    chat.conversation = None;
    assert!(store.add_telegram_chat(&chat).await.unwrap(), "a chat with no conversation yet");

    // Handled updates are remembered, and forgotten when old.
    assert!(!store.update_handled(41).await.unwrap());
    store.mark_update_handled(41, 0).await.unwrap();
    store.mark_update_handled(41, 0).await.unwrap();
    assert!(store.update_handled(41).await.unwrap());
    store.mark_update_handled(42, shopgraph_core::now_ms() + 60_000).await.unwrap();
    assert!(!store.update_handled(41).await.unwrap());

    // A link code works once, before it expires, for the user it names.
    let now = shopgraph_core::now_ms();
    store.add_link_code(u[1], "aa11", now + 60_000).await.unwrap();
    store.add_link_code(u[1], "bb22", now - 1).await.unwrap();
    assert_eq!(store.redeem_link_code("aa11", "telegram:1").await.unwrap(), Some(u[1]));
    assert_eq!(store.redeem_link_code("aa11", "telegram:2").await.unwrap(), None);
    // The same chat may use it again (a link that failed part way is tried again).
    assert_eq!(store.redeem_link_code("aa11", "telegram:1").await.unwrap(), Some(u[1]));
    assert_eq!(store.redeem_link_code("bb22", "telegram:1").await.unwrap(), None);
    assert_eq!(store.redeem_link_code("cc33", "telegram:1").await.unwrap(), None);
    assert!(matches!(
        store.add_link_code(UserId(987_654), "dd44", now + 60_000).await,
        Err(StoreError::UnknownUser(_))
    ));

    // Linking moves the chat user's interests to the account.
    let liked = NewInterest {
        user: u[0],
        subject: "maker:tolkien".into(),
        weight: 0.5,
        polarity: Polarity::Likes,
        source: InterestSource::Event(1),
        at: now,
    };
    store.add_interest(&liked).await.unwrap();
    assert_eq!(store.move_interests(u[0], u[1]).await.unwrap(), 1);
    assert!(store.interests(u[0]).await.unwrap().is_empty());
    assert_eq!(store.interests(u[1]).await.unwrap()[0].subject, "maker:tolkien");
}
