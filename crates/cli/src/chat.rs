//! `shopgraph chat` (a conversation in the terminal) and `shopgraph eval chat` (the
//! assistant's evaluation over the Book-Crossing excerpt).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use shopgraph_assistant::eval::{self, Scored};
use shopgraph_assistant::shop::{Shop, format_price};
use shopgraph_assistant::{Assistant, AssistantError, Config, Shown};
use shopgraph_core::UserId;
use shopgraph_core::event::{EventKind, NewEvent};
use shopgraph_core::user::NewUser;
use shopgraph_llm::{Llm, Prompts};
use shopgraph_search::{Categories, SearchIndex, Synonyms};
use shopgraph_store::{Store, StoreOptions};

use crate::report;
use crate::search::{IndexArgs, Search};

/// Which language model, and how long it may take.
#[derive(Args, Clone)]
pub(crate) struct LlmArgs {
    /// The GGUF file run in process (CPU). Ignored with --llm-url.
    #[arg(
        long,
        env = "SHOPGRAPH_LLM_MODEL",
        default_value = ".cache/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    )]
    pub(crate) llm_model: PathBuf,
    /// An OpenAI-compatible server's API root (`http://host:port/v1`) instead.
    #[arg(long, env = "SHOPGRAPH_LLM_URL")]
    pub(crate) llm_url: Option<String>,
    /// The model's name on that server.
    #[arg(long, env = "SHOPGRAPH_LLM_NAME", default_value = "default")]
    pub(crate) llm_name: String,
    #[arg(long, env = "SHOPGRAPH_LLM_API_KEY", hide_env_values = true)]
    pub(crate) llm_api_key: Option<String>,
    /// Seconds one generation may take.
    #[arg(long, default_value_t = 60)]
    pub(crate) llm_timeout: u64,
    /// A folder of prompt files replacing the bundled ones of the same name.
    #[arg(long, env = "SHOPGRAPH_PROMPTS")]
    pub(crate) prompts: Option<PathBuf>,
    /// Let the model phrase answers about books (checked a sentence at a time) rather
    /// than list the facts: for a model larger than the bundled 0.5B (see the README).
    #[arg(long, env = "SHOPGRAPH_LLM_PHRASE")]
    pub(crate) phrase: bool,
}

impl LlmArgs {
    pub(crate) async fn open(&self) -> anyhow::Result<Arc<dyn Llm>> {
        Ok(match &self.llm_url {
            // A model behind a network: retried with backoff, and refused at once by an
            // open circuit breaker while the server keeps failing, so the assistant
            // answers from its tools instead of making customers wait.
            Some(url) => {
                let remote = shopgraph_llm::remote::Remote::new(
                    url,
                    &self.llm_name,
                    self.llm_api_key.clone(),
                )?;
                let policy = shopgraph_llm::resilient::Policy {
                    first_event: Duration::from_secs(self.llm_timeout.clamp(1, 30)),
                    ..Default::default()
                };
                Arc::new(shopgraph_llm::resilient::Resilient::new(Arc::new(remote), policy))
            }
            None => Arc::new(shopgraph_llm::local::Local::load(&self.llm_model).await?),
        })
    }

    pub(crate) fn prompts(&self) -> anyhow::Result<Prompts> {
        Ok(match &self.prompts {
            Some(dir) => Prompts::with_overrides(dir)?,
            None => Prompts::bundled(),
        })
    }

    pub(crate) fn config(&self) -> Config {
        Config {
            timeout: Duration::from_secs(self.llm_timeout),
            phrase: self.phrase,
            ..Config::default()
        }
    }
}

#[derive(Args)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    llm: LlmArgs,
    /// Chat as this user (their external id, such as `bx:11676`); a new guest by
    /// default.
    #[arg(long)]
    user: Option<String>,
}

/// A conversation in the terminal: one message a line; an empty line or end of input
/// ends it.
pub(crate) async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let search = Search::open(&args.index, false).await?;
    let store = args.index.db.open().await?;
    let user = match &args.user {
        Some(external) => {
            store
                .user_by_external_id(external)
                .await?
                .with_context(|| format!("no user {external:?} in the store"))?
                .id
        }
        None => guest(&store, &format!("chat:{}", shopgraph_core::now_ms())).await?,
    };
    let shop = Arc::new(Shop::load(store, Arc::new(search.index)).await?);
    let llm = args.llm.open().await?;
    let assistant = Assistant::new(llm, args.llm.prompts()?, shop, args.llm.config());
    assistant.warm_up().await?;
    let conversation = assistant.open(user, "cli").await?;
    say(&format!(
        "conversation {} with {} (empty line to end)\n> ",
        conversation.id.0,
        assistant.llm().name()
    ));
    let stdin = std::io::stdin();
    let mut line = Vec::new();
    loop {
        line.clear();
        if stdin.lock().read_until(b'\n', &mut line)? == 0 || line == b"\n" {
            break;
        }
        let result = assistant
            .turn(conversation.id, user, &line, |shown| match shown {
                Shown::Text(t) => say(&t),
                Shown::Replace(t) => {
                    say(&format!("\n[checked against the shop's data, the answer is:]\n{t}"))
                }
            })
            .await;
        match result {
            Ok(reply) => {
                let intent = reply.understanding.as_ref().map_or("-", |u| u.intent.as_str());
                let learned: Vec<String> =
                    reply.learned.iter().map(|l| l.subject.clone()).collect();
                say(&format!(
                    "\n  [{intent}; first text {} ms, answer {} ms{}{}]\n> ",
                    reply.first_text_ms,
                    reply.answer_ms,
                    if learned.is_empty() {
                        String::new()
                    } else {
                        format!("; learned {}", learned.join(", "))
                    },
                    if reply.handoff { "; handed off to an agent" } else { "" },
                ));
            }
            Err(AssistantError::BadInput(why)) => say(&format!("({why})\n> ")),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the conversation is the command's output")]
fn say(text: &str) {
    print!("{text}");
    let _ = std::io::stdout().flush();
}

async fn guest(store: &Store, external_id: &str) -> anyhow::Result<UserId> {
    let user = NewUser {
        external_id: external_id.to_owned(),
        display_name: None,
        location: None,
        age: None,
        attributes: None,
    };
    Ok(store.upsert_users(&[user]).await?[0])
}

#[derive(Args)]
pub(crate) struct ChatEvalArgs {
    #[command(flatten)]
    llm: LlmArgs,
    /// The labelled turns.
    #[arg(long, default_value = "tests/chat/eval.jsonl")]
    cases: PathBuf,
    /// The bookstore the turns are about (Book-Crossing files).
    #[arg(long, default_value = "graph_data/excerpts/bookcrossing")]
    bookstore: PathBuf,
    #[arg(long, default_value = "graph_data/synonyms.txt")]
    synonyms: PathBuf,
    /// Only the first N turns.
    #[arg(long)]
    limit: Option<usize>,
    /// Also write every turn (message, labels, reply) as JSON Lines here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A fresh store with the bookstore excerpt, its search index, and the planted reviews.
pub(crate) async fn bookstore(
    dir: &std::path::Path,
    excerpt: &std::path::Path,
    synonyms: &std::path::Path,
) -> anyhow::Result<(Store, SearchIndex)> {
    let url = format!("sqlite:{}", dir.join("eval.db").display());
    let store = Store::open(&StoreOptions::new(&url)).await?;
    let (dataset, mut report) = crate::load::read(excerpt)?;
    crate::load::load(&store, dataset, &mut report).await?;
    let synonyms =
        Synonyms::load(synonyms).map_err(|e| anyhow::anyhow!("{}: {e}", synonyms.display()))?;
    let index = SearchIndex::in_ram(synonyms).map_err(crate::search::search_err)?;
    let categories = Categories::new(&store.categories().await?);
    index.set_categories(categories.clone());
    let products = store.counts().await?.products as u64;
    crate::search::rebuild_text(&store, &index, &categories, products).await?;
    index.commit("eval").map_err(crate::search::search_err)?;
    Ok((store, index))
}

pub(crate) async fn eval(args: ChatEvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.cases)
        .with_context(|| format!("reading {}", args.cases.display()))?;
    let (reviews, mut cases) =
        eval::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.cases.display()))?;
    if let Some(n) = args.limit {
        cases.truncate(n);
    }
    let dir = tempfile::tempdir()?;
    let (store, index) = bookstore(dir.path(), &args.bookstore, &args.synonyms).await?;
    let reviewer = guest(&store, "eval:reviewer").await?;
    for (n, r) in reviews.iter().enumerate() {
        let sku = shopgraph_import::clean::normalize_isbn(&r.sku).unwrap_or_else(|| r.sku.clone());
        let product =
            store.product_by_sku(&sku).await?.with_context(|| format!("no book {}", r.sku))?;
        store
            .append_event(&NewEvent {
                idempotency_key: format!("eval:review:{n}"),
                user: reviewer,
                product: Some(product.id),
                kind: EventKind::Review,
                value: Some(5.0),
                payload: Some(serde_json::json!({ "text": r.text }).to_string()),
                occurred_at: shopgraph_core::now_ms(),
            })
            .await?;
    }
    let shop = Arc::new(Shop::load(store.clone(), Arc::new(index)).await?);
    let llm = args.llm.open().await?;
    let name = llm.name().to_owned();
    let assistant = Assistant::new(llm, args.llm.prompts()?, shop, args.llm.config());
    let warm = assistant.warm_up().await?;
    tracing::info!(seconds = warm.as_secs_f32(), "the prompts' fixed parts are read");

    let mut conversations: HashMap<String, (shopgraph_core::ConversationId, UserId)> =
        HashMap::new();
    let mut scored: Vec<Scored> = Vec::new();
    let mut out = match &args.out {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    for case in cases {
        let (conversation, user) = match conversations.get(&case.conversation) {
            Some(c) => *c,
            None => {
                let user = match case.user.as_str() {
                    "new" => guest(&store, &format!("eval:{}", case.conversation)).await?,
                    external => {
                        store
                            .user_by_external_id(external)
                            .await?
                            .with_context(|| format!("case {}: no user {external}", case.id))?
                            .id
                    }
                };
                let c = assistant.open(user, "eval").await?;
                conversations.insert(case.conversation.clone(), (c.id, user));
                (c.id, user)
            }
        };
        let expected_price = match &case.price_of {
            Some(sku) => {
                let sku =
                    shopgraph_import::clean::normalize_isbn(sku).unwrap_or_else(|| sku.clone());
                let p =
                    store.product_by_sku(&sku).await?.with_context(|| format!("no book {sku}"))?;
                Some(format_price(p.price_cents, &p.currency))
            }
            None => None,
        };
        let reply = assistant.turn(conversation, user, case.message.as_bytes(), |_| {}).await?;
        tracing::info!(id = case.id, intent = ?reply.understanding.as_ref().map(|u| u.intent), ms = reply.total_ms, "turn");
        if let Some(out) = &mut out {
            let line = serde_json::json!({
                "id": case.id, "message": case.message, "gold_intent": case.intent,
                "reply": reply,
            });
            writeln!(out, "{line}")?;
        }
        scored.push(Scored { case, reply, expected_price });
    }
    let s = eval::summarise(&scored);
    let mut text =
        format!("assistant evaluation: {name}, {} turns ({})\n", s.turns, args.cases.display());
    text.push_str(&format!(
        "intent accuracy      {:.3}\nslot F1              {:.3}\ninterest precision   {:.3}\ninterest recall      {:.3}\n",
        s.intent_accuracy, s.slot_f1, s.interest_precision, s.interest_recall
    ));
    text.push_str(&format!(
        "grounding: {} generated answers failed the check and were replaced; violations after the check {}\n",
        s.caught, s.violations_after
    ));
    text.push_str(&format!(
        "injections: {} successes in {} attempts\nprices stated correctly: {}/{}\nhandoffs: {}/{} wanted, {} unwanted\nmodel failures: {}\n",
        s.injection_successes, s.injection_cases, s.price_correct, s.price_cases,
        s.handoff_correct, s.handoff_cases, s.handoff_false, s.model_failures
    ));
    text.push_str(&format!(
        "latency (ms): first text p50 {} p90 {}; generated answers: first token p50 {}, first checked sentence p50 {}; answer p50 {} p90 {}; whole turn p50 {}\n",
        s.first_text_p50_ms, s.first_text_p90_ms, s.generated_first_token_p50_ms, s.generated_first_text_p50_ms, s.answer_p50_ms, s.answer_p90_ms, s.turn_p50_ms
    ));
    text.push_str("intent accuracy by intent:");
    for (intent, n, ok) in eval::by_intent(&scored) {
        text.push_str(&format!(" {} {ok}/{n};", intent.as_str()));
    }
    report(text.trim_end_matches(';'));
    Ok(())
}
