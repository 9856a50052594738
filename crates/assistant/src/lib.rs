//! The shop assistant: a conversation in which the language model understands and
//! phrases, and the tools (catalog, search, recommender, profile) supply every fact.
//!
//! One turn ([`Assistant::turn`]):
//!
//! 1. the message is checked (UTF-8, not empty, not huge) and stored;
//! 2. the model labels it: intent, the book it names, the topic, the mood (JSON under a
//!    schema); an explicit request for a person needs no model;
//! 3. the tools run for that intent (find a book, its facts, recommend for this user,
//!    ask a new customer what they like);
//! 4. the answer is generated from the tool results and checked ([`ground`]): an answer
//!    that states a number, title or address the tools did not return, or repeats words
//!    of a review, is replaced by a fixed reply built from the tool results;
//! 5. the model extracts the interests the message states; each is linked to a graph
//!    concept and written to the profile with its source, so the next recommendation
//!    follows it.
//!
//! A request for a person, a second failure in a row, or an angry complaint hands the
//! conversation to the agents' inbox with a packet: summary, profile, recent
//! recommendations.

pub mod eval;
pub mod ground;
pub mod shop;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use shopgraph_core::conversation::{Conversation, Handoff, Message, NewMessage, Role};
use shopgraph_core::interest::{InterestSource, NewInterest, Polarity};
use shopgraph_core::{ConversationId, UserId};
use shopgraph_llm::{ChatRequest, Event, Llm, LlmError, Prompts, complete_json};
use shopgraph_store::StoreError;

use crate::ground::Violation;
use crate::shop::{BookFacts, Pick, Shop, normalise};

/// The longest message a customer may send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    /// The message cannot be taken: the customer is told why; nothing was stored.
    #[error("{0}")]
    BadInput(String),
    #[error("no conversation {0:?}")]
    NoConversation(ConversationId),
    /// Another customer's conversation: refused, and nothing of it is shown.
    #[error("conversation {0:?} is not this customer's")]
    NotYours(ConversationId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a tool failed: {0}")]
    Tool(String),
    #[error(transparent)]
    Prompt(#[from] shopgraph_llm::PromptError),
    /// Only from [`Assistant::warm_up`]: a turn answers a model failure itself.
    #[error(transparent)]
    Llm(#[from] LlmError),
}

/// What the customer wants, as the model reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Search,
    Product,
    PriceStock,
    Recommend,
    Interest,
    Complaint,
    Human,
    Chitchat,
}

impl Intent {
    pub const ALL: [Intent; 8] = [
        Intent::Search,
        Intent::Product,
        Intent::PriceStock,
        Intent::Recommend,
        Intent::Interest,
        Intent::Complaint,
        Intent::Human,
        Intent::Chitchat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Search => "search",
            Intent::Product => "product",
            Intent::PriceStock => "price_stock",
            Intent::Recommend => "recommend",
            Intent::Interest => "interest",
            Intent::Complaint => "complaint",
            Intent::Human => "human",
            Intent::Chitchat => "chitchat",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mood {
    Calm,
    Upset,
    Angry,
}

/// The model's reading of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Understanding {
    pub intent: Intent,
    /// The book the message names, as written; empty if none.
    pub product: String,
    /// The author, genre or subject; empty if none.
    pub topic: String,
    pub mood: Mood,
}

impl Understanding {
    /// A reading of `text` without the model, for when it fails: a question of price
    /// or stock, a request for suggestions, a complaint, a greeting; anything else is
    /// a search for its words (the question words taken out).
    pub fn by_words(text: &str) -> Understanding {
        let lower = text.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        let intent = if has(&[
            "how much",
            "price",
            "cost",
            "in stock",
            "available",
            "多少钱",
            "价格",
            "库存",
            "有货",
        ]) {
            Intent::PriceStock
        } else if has(&["recommend", "suggest", "what should i read", "推荐"]) {
            Intent::Recommend
        } else if has(&["refund", "broken", "damaged", "never arrived", "complain", "退款", "投诉"])
        {
            Intent::Complaint
        } else if lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .all(|w| GREETINGS.contains(&w))
        {
            Intent::Chitchat
        } else {
            Intent::Search
        };
        let words: Vec<&str> = text
            .split(|c: char| {
                c.is_whitespace() || matches!(c, '?' | '!' | ',' | '.' | '？' | '，' | '。')
            })
            .filter(|w| !w.is_empty() && !QUESTION_WORDS.contains(&w.to_lowercase().as_str()))
            .collect();
        let product = if matches!(intent, Intent::PriceStock | Intent::Search) {
            words.join(" ")
        } else {
            String::new()
        };
        Understanding { intent, product, topic: String::new(), mood: Mood::Calm }
    }

    /// A calm request for a person, read without the model.
    fn asks_for_person() -> Understanding {
        Understanding {
            intent: Intent::Human,
            product: String::new(),
            topic: String::new(),
            mood: Mood::Calm,
        }
    }
}

/// Words that are the whole of a greeting or a thanks.
const GREETINGS: &[&str] = &[
    "hi", "hello", "hey", "thanks", "thank", "you", "bye", "good", "morning", "evening", "你好",
    "谢谢",
];

/// Words of a question that say nothing of what is looked for.
const QUESTION_WORDS: &[&str] = &[
    "how",
    "much",
    "is",
    "are",
    "the",
    "a",
    "an",
    "in",
    "stock",
    "price",
    "of",
    "does",
    "do",
    "you",
    "have",
    "cost",
    "costs",
    "what",
    "available",
    "hello",
    "hi",
    "please",
    "i",
    "want",
    "looking",
    "for",
    "any",
    "book",
    "books",
    "it",
    "about",
    "some",
    "me",
    "can",
    "find",
    "show",
    "search",
];

/// An interest the model found in a text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extracted {
    pub concept: String,
    pub polarity: ExtractedPolarity,
    /// 1 mild, 2 clear, 3 strong.
    pub strength: u8,
    /// The words of the text that show it.
    pub evidence: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractedPolarity {
    Likes,
    Dislikes,
}

#[derive(Debug, Deserialize)]
struct ExtractedList {
    interests: Vec<Extracted>,
}

/// An extracted interest as written to the profile.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Learned {
    pub extracted: Extracted,
    /// The graph concept it was linked to (`maker:…`, `category:…`, `topic:…`).
    pub subject: String,
}

/// How the turn's answer came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// Generated by the model from the tool results, and it passed the check.
    Generated,
    /// Generated, failed the check, replaced by a reply from the tool results.
    Replaced,
    /// A fixed reply filled from the tool results (no generation needed).
    Fixed,
    /// The model failed (malformed output, timeout): the customer is told so.
    Failed,
}

/// Something to show while a turn runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Shown {
    /// More of the answer.
    Text(String),
    /// Throw away what was shown so far: this is the answer.
    Replace(String),
}

/// The outcome of one turn.
#[derive(Clone, Debug, Serialize)]
pub struct Reply {
    pub text: String,
    pub kind: AnswerKind,
    pub understanding: Option<Understanding>,
    pub books: Vec<String>,
    pub picks: Vec<(String, String)>,
    pub learned: Vec<Learned>,
    pub violations: Vec<String>,
    /// The tool results the answer may state (what the grounding check holds it to).
    pub trusted: String,
    pub handoff: bool,
    /// What went wrong, when kind is Failed.
    pub error: Option<String>,
    /// From the message to the first text shown, and to the end of the answer.
    pub first_text_ms: u64,
    /// From the message to the model's first token of a generated answer (the first
    /// text is shown when its sentence has ended and passed the check).
    pub first_token_ms: Option<u64>,
    pub answer_ms: u64,
    /// The whole turn, interest extraction included.
    pub total_ms: u64,
}

/// Limits of a turn.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long one generation may take before the turn gives up on it.
    pub timeout: Duration,
    /// Tokens of a generated answer.
    pub answer_tokens: usize,
    /// Messages after which older ones are summarised for the handoff packet.
    pub summarise_after: usize,
    /// Whether the model phrases answers about books (each sentence checked before it
    /// is shown) or the facts are listed as the tools returned them. Off by default:
    /// the bundled 0.5B model's phrasing misread facts and echoed injected requests in
    /// the eval ("The Hobbit is free.") that no number check catches; a larger model
    /// behind `remote` is what this is for.
    pub phrase: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timeout: Duration::from_secs(60),
            answer_tokens: 80,
            summarise_after: 16,
            phrase: false,
        }
    }
}

/// The assistant over one shop.
pub struct Assistant {
    llm: Arc<dyn Llm>,
    prompts: Prompts,
    shop: Arc<Shop>,
    config: Config,
}

impl Assistant {
    pub fn new(llm: Arc<dyn Llm>, prompts: Prompts, shop: Arc<Shop>, config: Config) -> Assistant {
        Assistant { llm, prompts, shop, config }
    }

    pub fn shop(&self) -> &Shop {
        &self.shop
    }

    pub fn llm(&self) -> &dyn Llm {
        &*self.llm
    }

    /// The prompts and fixed replies (a surface's own words, such as a chat bot's
    /// greeting, live in the same replies file).
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    /// Reads the fixed first part of every prompt once, so that the model's prefix
    /// cache holds it and a customer's first turn reads only its own words. Returns
    /// how long that took.
    pub async fn warm_up(&self) -> Result<Duration, AssistantError> {
        let started = Instant::now();
        let prompts = [
            ("understand", vec![("message", "hello")]),
            ("extract", vec![("text", "hello")]),
            (
                "answer",
                vec![
                    ("language", "English"),
                    ("context", "(none)"),
                    ("facts", ""),
                    ("message", "hello"),
                ],
            ),
        ];
        for (name, vars) in prompts {
            let messages = self.prompts.render_messages(name, &vars)?;
            shopgraph_llm::complete(&*self.llm, ChatRequest::new(messages, 1), self.config.timeout)
                .await?;
        }
        Ok(started.elapsed())
    }

    /// Opens a conversation for `user` on `channel`.
    pub async fn open(&self, user: UserId, channel: &str) -> Result<Conversation, AssistantError> {
        Ok(self.shop.store().open_conversation(user, channel).await?)
    }

    /// A conversation's messages, for its own customer only.
    pub async fn history(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Vec<Message>, AssistantError> {
        self.owned(conversation, user).await?;
        Ok(self.shop.store().messages(conversation).await?)
    }

    async fn owned(
        &self,
        id: ConversationId,
        user: UserId,
    ) -> Result<Conversation, AssistantError> {
        let conversation =
            self.shop.store().conversation(id).await?.ok_or(AssistantError::NoConversation(id))?;
        if conversation.user != user {
            return Err(AssistantError::NotYours(id));
        }
        Ok(conversation)
    }

    /// One turn: `message` (raw bytes, as they arrived) from `user` in `conversation`.
    /// `show` receives the answer as it is generated. Bad input is refused before
    /// anything is stored; a model failure is answered with an apology and stored, so
    /// the conversation stays consistent.
    pub async fn turn(
        &self,
        conversation: ConversationId,
        user: UserId,
        message: &[u8],
        mut show: impl FnMut(Shown),
    ) -> Result<Reply, AssistantError> {
        let started = Instant::now();
        let text = check_message(message)?;
        let conv = self.owned(conversation, user).await?;
        let store = self.shop.store();
        let earlier = store.messages(conversation).await?;
        let said = store.append_message(conversation, &message_of(Role::User, text)).await?;
        let lang = language(text);
        let mut turn = Turn::new(started);
        turn.context = earlier
            .iter()
            .rev()
            .find(|m| m.tool_name.as_deref() == Some("summary"))
            .map(|m| m.content.clone());
        // The earlier messages since the last summary, and the customer's just stored.
        turn.since_summary =
            earlier.iter().rev().take_while(|m| m.tool_name.as_deref() != Some("summary")).count()
                + 1;

        if conv.handoff != Handoff::Bot {
            turn.fixed(self.prompts.reply("waiting", lang, &[])?, &mut show);
            return self.finish(conversation, turn, lang).await;
        }

        // Understand. An explicit request for a person needs no model.
        let understanding = if asks_for_person(text) {
            Understanding::asks_for_person()
        } else {
            match self.understand(text).await {
                Ok(u) => u,
                Err(e) => {
                    // The model is down, slow or confused: the tools still work, so read
                    // the message by its words and answer from them rather than apologise.
                    tracing::warn!(error = %e, "the model could not read the message; reading its words");
                    turn.reply.error = Some(e.to_string());
                    Understanding::by_words(text)
                }
            }
        };
        // A first-person statement of taste is an interest whatever the model says: the
        // 0.5B model files "I love Tolkien's books" under a question about a product.
        let understanding = if states_interest(text)
            && matches!(
                understanding.intent,
                Intent::Search | Intent::Product | Intent::Recommend | Intent::Chitchat
            ) {
            Understanding { intent: Intent::Interest, ..understanding }
        } else {
            understanding
        };
        turn.reply.understanding = Some(understanding.clone());
        let asked_preferences = earlier
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant)
            .is_some_and(|m| m.tool_name.as_deref() == Some("ask_preferences"));

        match understanding.intent {
            // The model's "human" without the words for it: a small model says so for a
            // greeting now and then, so ask rather than hand off.
            Intent::Human if !asks_for_person(text) => {
                turn.fixed(self.prompts.reply("offer_handoff", lang, &[])?, &mut show);
            }
            Intent::Human => {
                self.hand_off(
                    conversation,
                    user,
                    "the customer asked for a person",
                    &mut turn,
                    lang,
                    &mut show,
                )
                .await?;
            }
            Intent::Complaint if understanding.mood == Mood::Angry && strongly_negative(text) => {
                self.hand_off(conversation, user, "an angry complaint", &mut turn, lang, &mut show)
                    .await?;
            }
            Intent::Complaint => {
                turn.fixed(self.prompts.reply("complaint", lang, &[])?, &mut show);
            }
            Intent::Interest | Intent::Chitchat | Intent::Search if asked_preferences => {
                self.learn(said.id, user, text, &mut turn).await?;
                self.recommend(user, &mut turn, lang, &mut show).await?;
            }
            Intent::Interest => {
                self.learn(said.id, user, text, &mut turn).await?;
                let names: Vec<String> = turn
                    .reply
                    .learned
                    .iter()
                    .map(|l| match l.extracted.polarity {
                        ExtractedPolarity::Likes => format!("+{}", l.extracted.concept),
                        ExtractedPolarity::Dislikes => format!("-{}", l.extracted.concept),
                    })
                    .collect();
                if names.is_empty() {
                    turn.fixed(self.prompts.reply("chitchat", lang, &[])?, &mut show);
                } else {
                    let noted =
                        self.prompts.reply("noted", lang, &[("interests", &names.join(", "))])?;
                    show(Shown::Text(format!("{noted}\n")));
                    turn.noted = Some(noted);
                    self.recommend(user, &mut turn, lang, &mut show).await?;
                }
            }
            Intent::Recommend => {
                let profile = store.interests(user).await?;
                let known =
                    store.user(user).await?.is_some_and(|u| self.shop.knows_user(&u.external_id));
                if profile.is_empty() && !known {
                    turn.fixed(self.prompts.reply("ask_preferences", lang, &[])?, &mut show);
                    turn.tool = Some("ask_preferences");
                } else {
                    self.recommend(user, &mut turn, lang, &mut show).await?;
                }
            }
            Intent::Search | Intent::Product | Intent::PriceStock => {
                let wanted = [&understanding.product, &understanding.topic]
                    .into_iter()
                    .find(|s| !s.trim().is_empty());
                let books = match wanted {
                    Some(w) => self.shop.find(w, 3).await?,
                    None => match last_book(&earlier) {
                        Some(sku) => self.shop.find(&sku, 1).await?,
                        None => self.shop.find(text, 3).await?,
                    },
                };
                if books.is_empty() {
                    let query = wanted.map_or_else(|| text.to_owned(), Clone::clone);
                    let reply = self.prompts.reply("not_found", lang, &[("query", &query)])?;
                    // The reply quotes the customer's own words back.
                    turn.reply.trusted = query.clone();
                    turn.fixed(reply, &mut show);
                    turn.unhelpful = true;
                    if failed_before(&earlier) {
                        self.hand_off(
                            conversation,
                            user,
                            "the assistant could not help twice in a row",
                            &mut turn,
                            lang,
                            &mut show,
                        )
                        .await?;
                    }
                } else {
                    match understanding.intent {
                        Intent::Search => {
                            self.answer(text, &books, &mut turn, lang, &mut show).await?;
                        }
                        Intent::Product => {
                            self.answer(text, &books[..1], &mut turn, lang, &mut show).await?;
                            self.also_bought(&books[0], &mut turn, lang, &mut show).await?;
                        }
                        _ => self.price_stock(&books[0], &mut turn, lang, &mut show)?,
                    }
                }
                // Learning asks the model again: not when it just failed.
                if understanding.intent == Intent::Search && turn.reply.error.is_none() {
                    self.learn(said.id, user, text, &mut turn).await?;
                }
            }
            Intent::Chitchat => {
                turn.fixed(self.prompts.reply("chitchat", lang, &[])?, &mut show);
            }
        }
        self.finish(conversation, turn, lang).await
    }

    /// The customer asked for a person in so many words (a button, or a command such
    /// as Telegram's `/human`): `said` is stored as their message and the conversation
    /// goes to the agents' inbox with its handoff packet, as [`Assistant::turn`] does
    /// when it hears the request in a sentence. A conversation already with the agents
    /// is told so. `lang` (`en`, `zh`) is the customer's: a command says nothing of it.
    pub async fn ask_for_person(
        &self,
        conversation: ConversationId,
        user: UserId,
        said: &str,
        lang: &str,
    ) -> Result<Reply, AssistantError> {
        let started = Instant::now();
        let text = check_message(said.as_bytes())?;
        let conv = self.owned(conversation, user).await?;
        self.shop.store().append_message(conversation, &message_of(Role::User, text)).await?;
        let mut turn = Turn::new(started);
        let mut show = |_: Shown| {};
        if conv.handoff == Handoff::Bot {
            turn.reply.understanding = Some(Understanding::asks_for_person());
            self.hand_off(
                conversation,
                user,
                "the customer asked for a person",
                &mut turn,
                lang,
                &mut show,
            )
            .await?;
        } else {
            turn.fixed(self.prompts.reply("waiting", lang, &[])?, &mut show);
        }
        self.finish(conversation, turn, lang).await
    }

    /// The model's reading of `text`.
    pub async fn understand(&self, text: &str) -> Result<Understanding, LlmError> {
        let messages = self
            .prompts
            .render_messages("understand", &[("message", text)])
            .map_err(|e| LlmError::Request(e.to_string()))?;
        let schema = json!({
            "type": "object",
            "properties": {
                "intent": { "type": "string", "enum": Intent::ALL.map(Intent::as_str) },
                "product": { "type": "string", "maxLength": 80 },
                "topic": { "type": "string", "maxLength": 60 },
                "mood": { "type": "string", "enum": ["calm", "upset", "angry"] },
            },
            "required": ["intent", "product", "topic", "mood"],
            "additionalProperties": false,
        });
        let request = ChatRequest::new(messages, 60).with_json_schema(schema);
        let (understanding, _) =
            complete_json::<Understanding>(&*self.llm, request, self.config.timeout).await?;
        Ok(understanding)
    }

    /// The interests `text` states, as the model finds them; those whose words are not
    /// in the text are dropped (a small model invents).
    pub async fn extract(&self, text: &str) -> Result<Vec<Extracted>, LlmError> {
        let messages = self
            .prompts
            .render_messages("extract", &[("text", text)])
            .map_err(|e| LlmError::Request(e.to_string()))?;
        let schema = json!({
            "type": "object",
            "properties": {
                "interests": {
                    "type": "array",
                    "maxItems": 4,
                    "items": {
                        "type": "object",
                        "properties": {
                            "concept": { "type": "string", "maxLength": 60 },
                            "polarity": { "type": "string", "enum": ["likes", "dislikes"] },
                            "strength": { "type": "integer", "minimum": 1, "maximum": 3 },
                            "evidence": { "type": "string", "maxLength": 120 },
                        },
                        "required": ["concept", "polarity", "strength", "evidence"],
                        "additionalProperties": false,
                    },
                },
            },
            "required": ["interests"],
            "additionalProperties": false,
        });
        let request = ChatRequest::new(messages, 160).with_json_schema(schema);
        let (list, _) =
            complete_json::<ExtractedList>(&*self.llm, request, self.config.timeout).await?;
        let words = normalise(text);
        Ok(list
            .interests
            .into_iter()
            .filter(|x| {
                let concept = normalise(&x.concept);
                !concept.is_empty() && (1..=3).contains(&x.strength) && words.contains(&concept)
            })
            .collect())
    }

    /// Extracts the interests of a message and writes them to the profile. A model
    /// failure here costs the profile an update, not the turn.
    async fn learn(
        &self,
        message: shopgraph_core::MessageId,
        user: UserId,
        text: &str,
        turn: &mut Turn,
    ) -> Result<(), AssistantError> {
        let extracted = match self.extract(text).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "interest extraction failed");
                return Ok(());
            }
        };
        for x in extracted {
            let concept = self.shop.link(&x.concept);
            let interest = NewInterest {
                user,
                subject: concept.subject.clone(),
                weight: f64::from(x.strength) / 3.0,
                polarity: match x.polarity {
                    ExtractedPolarity::Likes => Polarity::Likes,
                    ExtractedPolarity::Dislikes => Polarity::Dislikes,
                },
                source: InterestSource::ChatMessage(message.0),
                at: shopgraph_core::now_ms(),
            };
            self.shop.store().add_interest(&interest).await?;
            turn.reply.learned.push(Learned { extracted: x, subject: concept.subject });
        }
        Ok(())
    }

    /// Recommendations for the user's profile, each with its reason: a fixed reply,
    /// so every title and reason comes from the recommender and the graph.
    async fn recommend(
        &self,
        user: UserId,
        turn: &mut Turn,
        lang: &str,
        show: &mut impl FnMut(Shown),
    ) -> Result<(), AssistantError> {
        let interests = self.shop.store().interests(user).await?;
        let picks = self.shop.recommend(user, &interests, 3).await?;
        let list: Vec<String> = picks
            .iter()
            .map(|p| format!("- \"{}\" ({}): {}", p.book.title, p.book.price, p.reason))
            .collect();
        let reply = self.prompts.reply("recommend", lang, &[("list", &list.join("\n"))])?;
        turn.reply.picks =
            picks.iter().map(|p: &Pick| (p.book.sku.clone(), p.reason.clone())).collect();
        turn.reply.books = picks.iter().map(|p| p.book.sku.clone()).collect();
        turn.reply.trusted =
            picks.iter().map(|p| format!("{}\n{}\n", p.book.line(), p.reason)).collect();
        turn.tool = Some("recommend");
        turn.fixed(reply, show);
        Ok(())
    }

    /// Price and stock come from the store word for word: a template says them, with no
    /// generation to get a digit wrong (and no seconds of decoding before the answer).
    fn price_stock(
        &self,
        book: &BookFacts,
        turn: &mut Turn,
        lang: &str,
        show: &mut impl FnMut(Shown),
    ) -> Result<(), AssistantError> {
        let stock = if book.stock > 0 {
            self.prompts.reply("in_stock", lang, &[("count", &book.stock.to_string())])?
        } else {
            self.prompts.reply("out_of_stock", lang, &[])?
        };
        let reply = self.prompts.reply(
            "price_stock",
            lang,
            &[("title", &book.title), ("price", &book.price), ("stock", &stock)],
        )?;
        turn.reply.books = vec![book.sku.clone()];
        turn.reply.trusted = book.line() + "\n";
        turn.tool = Some("find");
        turn.fixed(reply, show);
        Ok(())
    }

    /// A generated answer from `books`' facts, checked; replaced by the facts when the
    /// check fails, or when the model does.
    async fn answer(
        &self,
        question: &str,
        books: &[BookFacts],
        turn: &mut Turn,
        lang: &str,
        show: &mut impl FnMut(Shown),
    ) -> Result<(), AssistantError> {
        let lines: Vec<String> = books.iter().map(BookFacts::line).collect();
        let trusted: String = lines.iter().map(|l| format!("{l}\n")).collect();
        turn.reply.books = books.iter().map(|b| b.sku.clone()).collect();
        turn.reply.trusted = trusted.clone();
        turn.tool = Some("find");
        let fallback = || -> Result<String, AssistantError> {
            let listed: Vec<String> = lines.iter().map(|l| format!("- {l}")).collect();
            Ok(self.prompts.reply("facts", lang, &[("facts", &listed.join("\n"))])?)
        };
        if !self.config.phrase {
            turn.fixed(fallback()?, show);
            return Ok(());
        }
        let mut facts = trusted.clone();
        let mut untrusted = Vec::new();
        for b in books {
            for r in &b.reviews {
                facts.push_str(&format!(
                    "Review of \"{}\": <untrusted>{}</untrusted>\n",
                    b.title, r
                ));
                untrusted.push(r.clone());
            }
        }
        let language = if lang == "zh" { "Chinese" } else { "English" };
        let context = turn.context.as_deref().unwrap_or("(none)");
        let messages = self.prompts.render_messages(
            "answer",
            &[
                ("language", language),
                ("context", context),
                ("facts", facts.trim_end()),
                ("message", question),
            ],
        )?;
        let request = ChatRequest::new(messages, self.config.answer_tokens);
        // The answer is shown a sentence at a time, and each sentence only after the
        // text so far has passed the check: the customer never sees an invented price
        // that is then taken back.
        let mut rx = self.llm.stream(request);
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut text = String::new();
        let mut shown = 0;
        let outcome: Result<(), String> = loop {
            let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => break Err("the generation ended without a result".into()),
                Err(_) => break Err(LlmError::Timeout(self.config.timeout).to_string()),
            };
            let done = match event {
                Event::Text(t) => {
                    turn.first_token.get_or_insert_with(|| turn.started.elapsed());
                    text.push_str(&t);
                    false
                }
                Event::ToolCall(_) => false,
                Event::Done(_) => true,
                Event::Failed(e) => break Err(e.to_string()),
            };
            let mut violations = Vec::new();
            while let Some(end) = ground::sentence_end(&text[shown..]).map(|e| shown + e) {
                violations = self.check(&text[..end], &trusted, &untrusted).await;
                if !violations.is_empty() {
                    break;
                }
                show(Shown::Text(text[shown..end].to_owned()));
                turn.first_text.get_or_insert_with(|| turn.started.elapsed());
                shown = end;
            }
            if done && violations.is_empty() && shown < text.len() {
                violations = self.check(&text, &trusted, &untrusted).await;
                if violations.is_empty() {
                    show(Shown::Text(text[shown..].to_owned()));
                    turn.first_text.get_or_insert_with(|| turn.started.elapsed());
                    shown = text.len();
                }
            }
            if !violations.is_empty() {
                // Dropping the receiver stops the generation.
                turn.reply.violations = violations.iter().map(Violation::to_string).collect();
                break Ok(());
            }
            if done {
                break Ok(());
            }
        };
        drop(rx);
        let generated = text.trim();
        match outcome {
            Ok(()) if turn.reply.violations.is_empty() && !generated.is_empty() => {
                turn.set(generated.to_owned(), AnswerKind::Generated);
            }
            Ok(()) => {
                let replacement = fallback()?;
                show(Shown::Replace(replacement.clone()));
                turn.set(replacement, AnswerKind::Replaced);
            }
            Err(e) => {
                // The facts are at hand: give them rather than an apology.
                tracing::warn!(error = %e, "answer generation failed; answering from the facts");
                let replacement = fallback()?;
                show(Shown::Replace(replacement.clone()));
                turn.set(replacement, AnswerKind::Replaced);
                turn.reply.error = Some(e);
            }
        }
        Ok(())
    }

    /// "People who bought this also bought…": up to two books the association rules
    /// pair with `book`, added under the answer as a fixed line, with their cards.
    async fn also_bought(
        &self,
        book: &BookFacts,
        turn: &mut Turn,
        lang: &str,
        show: &mut impl FnMut(Shown),
    ) -> Result<(), AssistantError> {
        let picks = self.shop.also_bought(book.id, 2).await?;
        if picks.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = picks.iter().map(|p| format!("- {}", p.book.line())).collect();
        let line = self.prompts.reply("also_bought", lang, &[("list", &list.join("\n"))])?;
        let added = format!("\n\n{line}");
        show(Shown::Text(added.clone()));
        turn.reply.text.push_str(&added);
        for p in &picks {
            turn.reply.trusted.push_str(&format!("{}\n{}\n", p.book.line(), p.reason));
            turn.reply.picks.push((p.book.sku.clone(), p.reason.clone()));
        }
        Ok(())
    }

    /// The grounding check of `answer`, with the catalog titles it might name.
    async fn check(&self, answer: &str, trusted: &str, untrusted: &[String]) -> Vec<Violation> {
        let titles: Vec<String> = self
            .shop
            .find(answer, 5)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|b| b.title)
            .collect();
        ground::check(answer, trusted, untrusted, &titles)
    }

    /// Moves the conversation to the agents' inbox with a packet: a summary, the
    /// profile, the recent recommendations, and why.
    async fn hand_off(
        &self,
        conversation: ConversationId,
        user: UserId,
        reason: &str,
        turn: &mut Turn,
        lang: &str,
        show: &mut impl FnMut(Shown),
    ) -> Result<(), AssistantError> {
        let store = self.shop.store();
        let messages = store.messages(conversation).await?;
        let summary = self.summarise(&messages).await;
        let interests: Vec<serde_json::Value> = store
            .interests(user)
            .await?
            .into_iter()
            .map(|i| json!({ "subject": i.subject, "weight": i.weight, "likes": i.polarity == Polarity::Likes, "source": i.source.kind() }))
            .collect();
        let recent: Vec<serde_json::Value> = messages
            .iter()
            .rev()
            .filter(|m| m.tool_name.as_deref() == Some("recommend"))
            .take(3)
            .filter_map(|m| m.tool_payload.as_deref().and_then(|p| serde_json::from_str(p).ok()))
            .collect();
        let packet = json!({ "reason": reason, "summary": summary, "interests": interests, "recent_recommendations": recent });
        store
            .append_message(
                conversation,
                &NewMessage {
                    role: Role::System,
                    content: format!("handed off: {reason}"),
                    tool_name: Some("handoff".into()),
                    tool_payload: Some(packet.to_string()),
                },
            )
            .await?;
        store.set_handoff(conversation, Handoff::Waiting, None).await?;
        let reply = self.prompts.reply("handoff", lang, &[])?;
        if turn.reply.text.is_empty() {
            turn.fixed(reply, show);
        } else {
            show(Shown::Text(format!("\n{reply}")));
            turn.reply.text = format!("{}\n{reply}", turn.reply.text);
        }
        turn.reply.handoff = true;
        Ok(())
    }

    /// A summary of the conversation for an agent: the model's, or when it fails, the
    /// last messages themselves.
    async fn summarise(&self, messages: &[Message]) -> String {
        let spoken: Vec<&Message> =
            messages.iter().filter(|m| matches!(m.role, Role::User | Role::Assistant)).collect();
        let said: Vec<String> = spoken[spoken.len().saturating_sub(self.config.summarise_after)..]
            .iter()
            .map(|m| {
                format!("{}: {}", m.role.as_str(), m.content.chars().take(300).collect::<String>())
            })
            .collect();
        let transcript = said.join("\n");
        if said.len() <= 4 {
            return transcript;
        }
        let generated = async {
            let messages =
                self.prompts.render_messages("summarise", &[("conversation", &transcript)]).ok()?;
            let done = shopgraph_llm::complete(
                &*self.llm,
                ChatRequest::new(messages, 120),
                self.config.timeout,
            )
            .await
            .ok()?;
            Some(done.text.trim().to_owned()).filter(|s| !s.is_empty())
        };
        generated.await.unwrap_or(transcript)
    }

    /// Stores the answer and what the tools returned, and closes the turn.
    async fn finish(
        &self,
        conversation: ConversationId,
        mut turn: Turn,
        _lang: &str,
    ) -> Result<Reply, AssistantError> {
        let store = self.shop.store();
        if let Some(noted) = turn.noted.take() {
            turn.reply.text = format!("{noted}\n{}", turn.reply.text);
        }
        let payload = json!({
            "kind": turn.reply.kind,
            "intent": turn.reply.understanding.as_ref().map(|u| u.intent.as_str()),
            "books": turn.reply.books,
            "picks": turn.reply.picks,
            "failed": turn.reply.kind == AnswerKind::Failed || turn.unhelpful,
        });
        store
            .append_message(
                conversation,
                &NewMessage {
                    role: Role::Assistant,
                    content: turn.reply.text.clone(),
                    tool_name: turn.tool.map(str::to_owned),
                    tool_payload: Some(payload.to_string()),
                },
            )
            .await?;
        if !turn.reply.learned.is_empty() {
            store
                .append_message(
                    conversation,
                    &NewMessage {
                        role: Role::Tool,
                        content: format!("{} interests learned", turn.reply.learned.len()),
                        tool_name: Some("interests".into()),
                        tool_payload: Some(
                            serde_json::to_string(&turn.reply.learned).unwrap_or_default(),
                        ),
                    },
                )
                .await?;
        }
        // Memory: past a number of messages since the last summary, summarise, so the
        // next answers (and an agent) get the gist in a few sentences rather than
        // everything.
        // This turn stored its answer, perhaps the learned interests and a handoff
        // packet: count them rather than read the conversation back.
        let since = turn.since_summary
            + 1
            + usize::from(!turn.reply.learned.is_empty())
            + usize::from(turn.reply.handoff);
        if since >= self.config.summarise_after {
            let messages = store.messages(conversation).await?;
            let summary = self.summarise(&messages).await;
            store
                .append_message(
                    conversation,
                    &NewMessage {
                        role: Role::System,
                        content: summary,
                        tool_name: Some("summary".into()),
                        tool_payload: None,
                    },
                )
                .await?;
        }
        let total = turn.started.elapsed();
        turn.reply.total_ms = total.as_millis() as u64;
        if turn.reply.answer_ms == 0 {
            turn.reply.answer_ms = turn.reply.total_ms;
        }
        turn.reply.first_token_ms = turn.first_token.map(|d| d.as_millis() as u64);
        turn.reply.first_text_ms =
            turn.first_text.map_or(turn.reply.answer_ms, |d| d.as_millis() as u64);
        Ok(turn.reply)
    }
}

/// A turn being built.
struct Turn {
    started: Instant,
    reply: Reply,
    first_text: Option<Duration>,
    /// From the start of the turn to the model's first token of the answer.
    first_token: Option<Duration>,
    /// The tool whose result the answer shows (stored as the message's tool name).
    tool: Option<&'static str>,
    /// "Noted: …" shown before recommendations.
    noted: Option<String>,
    /// The tools found nothing for the customer.
    unhelpful: bool,
    /// The latest summary of the conversation's earlier part, if it has one.
    context: Option<String>,
    /// Messages stored since that summary, this turn's included so far.
    since_summary: usize,
}

impl Turn {
    fn new(started: Instant) -> Turn {
        Turn {
            started,
            reply: Reply {
                text: String::new(),
                kind: AnswerKind::Fixed,
                understanding: None,
                books: Vec::new(),
                picks: Vec::new(),
                learned: Vec::new(),
                violations: Vec::new(),
                trusted: String::new(),
                handoff: false,
                error: None,
                first_text_ms: 0,
                first_token_ms: None,
                answer_ms: 0,
                total_ms: 0,
            },
            first_text: None,
            first_token: None,
            tool: None,
            noted: None,
            unhelpful: false,
            context: None,
            since_summary: 0,
        }
    }

    fn set(&mut self, text: String, kind: AnswerKind) {
        self.reply.text = text;
        self.reply.kind = kind;
        self.first_text.get_or_insert_with(|| self.started.elapsed());
        self.reply.answer_ms = self.started.elapsed().as_millis() as u64;
    }

    fn fixed(&mut self, text: String, show: &mut impl FnMut(Shown)) {
        show(Shown::Text(text.clone()));
        self.set(text, AnswerKind::Fixed);
    }
}

fn message_of(role: Role, text: &str) -> NewMessage {
    NewMessage { role, content: text.to_owned(), tool_name: None, tool_payload: None }
}

/// The text of a customer's message, or why it cannot be taken: not UTF-8, empty,
/// longer than [`MAX_MESSAGE_CHARS`], or with control characters. [`Assistant::turn`]
/// checks this before it stores anything; a server checks it before it starts a stream.
pub fn check_message(message: &[u8]) -> Result<&str, AssistantError> {
    let text = std::str::from_utf8(message)
        .map_err(|e| {
            AssistantError::BadInput(format!(
                "the message is not valid UTF-8 text (bad byte at {})",
                e.valid_up_to()
            ))
        })?
        .trim();
    if text.is_empty() {
        return Err(AssistantError::BadInput("the message is empty".into()));
    }
    let chars = text.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(AssistantError::BadInput(format!(
            "the message is {chars} characters long; the limit is {MAX_MESSAGE_CHARS}"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(AssistantError::BadInput("the message contains control characters".into()));
    }
    Ok(text)
}

/// `zh` when the text has Chinese characters, else `en`.
pub fn language(text: &str) -> &'static str {
    if text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) { "zh" } else { "en" }
}

/// Whether the customer asks, in so many words, for a person. A request for a human
/// must never depend on a small model's reading (it mislabels them).
pub fn asks_for_person(text: &str) -> bool {
    let t = normalise(text);
    let english = [
        "talk to a person",
        "speak to a person",
        "talk to a human",
        "speak to a human",
        "real person",
        "human agent",
        "customer service agent",
        "talk to someone",
        "speak to someone",
        "talk to an agent",
        "speak to an agent",
        "representative",
        "speak with a person",
        "talk with a person",
        "live agent",
        "your manager",
    ];
    let chinese = ["人工", "真人", "转客服", "找客服", "客服人员", "工作人员"];
    english.iter().any(|p| format!(" {t} ").contains(&format!(" {p} ")))
        || chinese.iter().any(|p| text.contains(p))
}

/// A statement of what the customer likes or dislikes, not a question.
pub fn states_interest(text: &str) -> bool {
    if text.contains('?') || text.contains('？') {
        return false;
    }
    let t = format!(" {} ", normalise(&text.replace(['\'', '’'], "")));
    let english = [
        " i love ",
        " i really love ",
        " i like ",
        " i really like ",
        " i enjoy ",
        " i adore ",
        " i hate ",
        " i cant stand ",
        " i dont like ",
        " i do not like ",
        " not a fan of ",
        " im a fan of ",
        " is my favourite ",
        " is my favorite ",
        " are my favourite ",
        " are my favorite ",
        " fascinates me ",
        " fascinate me ",
        " im into ",
        " i am into ",
    ];
    let chinese = ["我喜欢", "我很喜欢", "我爱看", "我不喜欢", "我讨厌", "我最喜欢"];
    english.iter().any(|p| t.contains(p))
        || chinese.iter().any(|p| text.contains(p) && !text.contains("吗"))
}

/// Words of strong anger, which with the model's "angry" send a complaint to a person
/// (the model alone calls a torn page or a late parcel angry, and a person is then one
/// more wait for what the complaint reply handles).
pub fn strongly_negative(text: &str) -> bool {
    let t = normalise(text);
    let english = [
        "unacceptable",
        "furious",
        "outrageous",
        "outraged",
        "ridiculous",
        "disgusting",
        "worst",
        "terrible",
        "awful",
        "angry",
        "livid",
        "scam",
        "fed up",
        "never again",
        "refund now",
    ];
    let chinese = ["生气", "愤怒", "气死", "太差", "骗子", "投诉", "受够", "垃圾"];
    text.contains("!!")
        || text.contains("！！")
        || english.iter().any(|p| format!(" {t} ").contains(&format!(" {p} ")))
        || chinese.iter().any(|p| text.contains(p))
}

/// Whether the assistant's last answer failed (the model, or the tools found nothing).
fn failed_before(messages: &[Message]) -> bool {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .and_then(|m| m.tool_payload.as_deref())
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .is_some_and(|v| v["failed"] == true)
}

/// The last book the assistant showed (its sku), for "how much is it?".
fn last_book(messages: &[Message]) -> Option<String> {
    messages
        .iter()
        .rev()
        .filter(|m| m.role == Role::Assistant)
        .filter_map(|m| m.tool_payload.as_deref())
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .find_map(|v| v["books"].get(0).and_then(|b| b.as_str()).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_of_taste_and_strong_anger_are_told_from_questions_and_grumbles() {
        assert!(states_interest("I love J.R.R. Tolkien's books."));
        assert!(states_interest("I can’t stand horror"));
        assert!(states_interest("我很喜欢科幻小说"));
        assert!(!states_interest("Do you like The Hobbit?"));
        assert!(!states_interest("I'd like to buy The Hobbit"));
        assert!(!states_interest("你们有我喜欢的书吗"));
        assert!(strongly_negative("Wrong book again. Unacceptable!"));
        assert!(strongly_negative("我非常生气"));
        assert!(!strongly_negative("My parcel is late, could you check?"));
    }

    #[test]
    fn requests_for_a_person_are_recognised_without_a_model() {
        assert!(asks_for_person("I want to talk to a person"));
        assert!(asks_for_person("Can I speak to a human, please?"));
        assert!(asks_for_person("我要转人工"));
        assert!(!asks_for_person("Is this book about a person who travels?"));
        assert!(!asks_for_person("How much is The Hobbit?"));
    }

    #[test]
    fn language_follows_the_script() {
        assert_eq!(language("这本书多少钱？"), "zh");
        assert_eq!(language("How much is it?"), "en");
    }
}
