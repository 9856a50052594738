//! What the bot does with each update: commands, free text for the assistant, button
//! taps, and the input it cannot take (stickers, photos, edits, group chats).
//!
//! Every chat is a shop user (`telegram:CHAT`, or the account a link code named) with
//! a conversation and a dialogue state in the store, so a restarted bot carries on
//! where it was. An update is marked handled once it has been answered; Telegram's
//! redelivery of one the bot already answered is skipped.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use shopgraph_assistant::shop::{BookFacts, Pick};
use shopgraph_assistant::{AssistantError, Shown, language};
use shopgraph_core::conversation::{Handoff, NewMessage, Role};
use shopgraph_core::event::{EventKind, NewEvent};
use shopgraph_core::interest::{Interest, InterestSource, NewInterest, Polarity};
use shopgraph_core::product::Product;
use shopgraph_core::user::NewUser;
use shopgraph_core::{ConversationId, MessageId, ProductId, UserId};
use shopgraph_server::Platform;
use shopgraph_store::{Store, StoreError, TelegramChat};
use teloxide::payloads::AnswerCallbackQuerySetters;
use teloxide::prelude::Requester;
use teloxide::types::{
    CallbackQuery, ChatAction, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, Me, Message,
    Update, UpdateKind, User,
};

use crate::send::{Outbox, SendError};

/// How long a handled update is remembered: Telegram keeps an unconfirmed update for
/// a day.
const REMEMBER_UPDATES_MS: i64 = 2 * 24 * 3600 * 1000;
/// Books shown for one search, one list, or under one answer.
const SHOWN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Assistant(#[from] AssistantError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Prompt(#[from] shopgraph_llm::PromptError),
}

/// What the handlers share.
pub struct Ctx {
    pub platform: Arc<Platform>,
    pub out: Outbox,
}

impl Ctx {
    fn store(&self) -> &Store {
        &self.platform.store
    }

    /// One of the bot's fixed replies (prompts/replies.txt, `tg_…`).
    fn words(&self, key: &str, lang: &str, vars: &[(&str, &str)]) -> Result<String, BotError> {
        Ok(self.platform.tools().assistant.prompts().reply(key, lang, vars)?)
    }

    async fn say(
        &self,
        chat: i64,
        key: &str,
        lang: &str,
        vars: &[(&str, &str)],
    ) -> Result<String, BotError> {
        let text = self.words(key, lang, vars)?;
        self.out.send(chat, &text, None).await?;
        Ok(text)
    }
}

/// Where a chat's dialogue stands between messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "awaiting")]
enum Dialogue {
    /// Free text goes to the assistant.
    #[default]
    Chatting,
    /// `/search` without words: the next message is the query.
    Query,
    /// `/link` without a code: the next message is the code.
    Code,
}

/// A chat with its shop user and open conversation.
struct Chat {
    row: TelegramChat,
    dialogue: Dialogue,
}

impl Chat {
    /// The chat as stored; a state this bot cannot read is taken as chatting.
    fn of(row: TelegramChat) -> Chat {
        Chat { dialogue: serde_json::from_str(&row.state).unwrap_or_default(), row }
    }

    fn id(&self) -> i64 {
        self.row.chat_id
    }

    fn user(&self) -> UserId {
        self.row.user
    }

    fn conversation(&self) -> ConversationId {
        self.row.conversation.expect("an opened chat has a conversation")
    }

    async fn set(&mut self, store: &Store, dialogue: Dialogue) -> Result<(), StoreError> {
        if self.dialogue != dialogue {
            self.dialogue = dialogue;
            self.row.state = state_json(dialogue);
            store.set_telegram_state(self.id(), &self.row.state).await?;
        }
        Ok(())
    }
}

fn state_json(d: Dialogue) -> String {
    serde_json::to_string(&d).expect("a dialogue state serialises")
}

/// The chat's row, made on first contact (a new shop user `telegram:CHAT`), with a
/// conversation to write to: a new one when it has none or an agent closed it. When
/// another process (a second replica) makes or moves the chat at the same moment, its
/// row wins and is read back.
async fn open_chat(ctx: &Ctx, chat_id: i64, from: Option<&User>) -> Result<Chat, BotError> {
    let store = ctx.store();
    let row = match store.telegram_chat(chat_id).await? {
        Some(row) => row,
        None => {
            let user = NewUser {
                external_id: format!("telegram:{chat_id}"),
                display_name: from.map(User::full_name),
                location: None,
                age: None,
                attributes: from
                    .and_then(|u| u.username.as_ref())
                    .map(|name| json!({ "telegram_username": name }).to_string()),
            };
            let id = store.upsert_users(&[user]).await?[0];
            if let Some(u) = store.user(id).await? {
                ctx.platform.graph.write().unwrap_or_else(|e| e.into_inner()).upsert_user(&u);
            }
            let conversation = ctx.platform.tools().assistant.open(id, "telegram").await?;
            let now = shopgraph_core::now_ms();
            let row = TelegramChat {
                chat_id,
                user: id,
                conversation: Some(conversation.id),
                state: state_json(Dialogue::Chatting),
                delivered: MessageId(0),
                created_at: now,
                updated_at: now,
            };
            if store.add_telegram_chat(&row).await? { row } else { reread(store, chat_id).await? }
        }
    };
    let mut chat = Chat::of(row);
    let open = match chat.row.conversation {
        Some(id) => store
            .conversation(id)
            .await?
            .is_some_and(|c| c.user == chat.user() && c.handoff != Handoff::Closed),
        None => false,
    };
    if !open {
        let conversation = ctx.platform.tools().assistant.open(chat.user(), "telegram").await?;
        let chatting = state_json(Dialogue::Chatting);
        let expected = chat.row.conversation;
        if !store
            .switch_telegram_chat(chat_id, expected, chat.user(), conversation.id, &chatting)
            .await?
        {
            return Ok(Chat::of(reread(store, chat_id).await?));
        }
        chat.row.conversation = Some(conversation.id);
        chat.row.state = chatting;
        chat.dialogue = Dialogue::Chatting;
    }
    Ok(chat)
}

async fn reread(store: &Store, chat_id: i64) -> Result<TelegramChat, BotError> {
    store.telegram_chat(chat_id).await?.ok_or_else(|| {
        BotError::Store(StoreError::Invalid(format!("telegram chat {chat_id} vanished")))
    })
}

/// The language for the bot's own words: Chinese for a customer whose Telegram speaks
/// it, English otherwise.
fn lang_of(user: Option<&User>) -> &'static str {
    match user.and_then(|u| u.language_code.as_deref()) {
        Some(code) if code.starts_with("zh") => "zh",
        _ => "en",
    }
}

/// Handles one update, once.
pub async fn handle(update: Update, me: Me, ctx: Arc<Ctx>) -> Result<(), BotError> {
    let id = i64::from(update.id.0);
    if ctx.store().update_handled(id).await? {
        tracing::debug!(update = id, "telegram: an update handled before, skipped");
        return Ok(());
    }
    let result = match &update.kind {
        UpdateKind::Message(m) => {
            // Events made from a message are keyed by the bot, the chat and the message:
            // unique for good, where update ids start again at random after a quiet week.
            let origin = format!("telegram:{}:{}:{}", me.id.0, m.chat.id.0, m.id.0);
            on_message(&ctx, &me, m, &origin).await
        }
        UpdateKind::EditedMessage(m) => on_edit(&ctx, m).await,
        UpdateKind::CallbackQuery(q) => {
            let origin = format!("telegram:{}:tap:{}", me.id.0, q.id.0);
            on_tap(&ctx, q, &origin).await
        }
        UpdateKind::Error(value) => {
            tracing::warn!(update = id, "telegram: an update the bot cannot read: {value}");
            Ok(())
        }
        // Channel posts, polls, reactions, members joining: nothing for a shop assistant.
        _ => Ok(()),
    };
    // Said here and not passed on: the update was answered as far as it could be, and
    // handling it again would say the same thing twice.
    if let Err(e) = &result {
        tracing::warn!(update = id, "telegram: handling an update: {e}");
    }
    ctx.store().mark_update_handled(id, shopgraph_core::now_ms() - REMEMBER_UPDATES_MS).await?;
    Ok(())
}

async fn on_message(ctx: &Ctx, me: &Me, m: &Message, origin: &str) -> Result<(), BotError> {
    let chat_id = m.chat.id.0;
    let from = m.from.as_ref();
    // The assistant works in private chats. In a group, a command gets a pointer there;
    // the group's own conversation is not the bot's to answer.
    if !m.chat.is_private() {
        if m.text().is_some_and(|t| t.starts_with('/')) {
            ctx.say(chat_id, "tg_private_only", lang_of(from), &[]).await?;
        }
        return Ok(());
    }
    // A photo's caption is read as its text; a sticker, a voice note or a photo
    // without words is not something the assistant can read.
    let Some(text) = m.text().or_else(|| m.caption()) else {
        ctx.say(chat_id, "tg_text_only", lang_of(from), &[]).await?;
        return Ok(());
    };
    let lang = if language(text) == "zh" { "zh" } else { lang_of(from) };
    if let Some((command, args)) = teloxide::utils::command::parse_command(text, me.username()) {
        let command = command.to_lowercase();
        let arg = args.join(" ");
        return on_command(ctx, chat_id, from, &command, arg.trim(), text, lang, origin).await;
    }
    let mut chat = open_chat(ctx, chat_id, from).await?;
    match chat.dialogue {
        Dialogue::Query => {
            chat.set(ctx.store(), Dialogue::Chatting).await?;
            search(ctx, &chat, text, text, lang, origin).await
        }
        Dialogue::Code => {
            chat.set(ctx.store(), Dialogue::Chatting).await?;
            link(ctx, chat, text, from, lang).await
        }
        Dialogue::Chatting => converse(ctx, &chat, text, lang).await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn on_command(
    ctx: &Ctx,
    chat_id: i64,
    from: Option<&User>,
    command: &str,
    arg: &str,
    said: &str,
    lang: &str,
    origin: &str,
) -> Result<(), BotError> {
    let mut chat = open_chat(ctx, chat_id, from).await?;
    // A command ends whatever the chat was waiting for.
    chat.set(ctx.store(), Dialogue::Chatting).await?;
    match command {
        // `t.me/BOT?start=CODE` arrives as `/start CODE`.
        "start" if shopgraph_server::auth::looks_like_link_code(arg) => {
            link(ctx, chat, arg, from, lang).await
        }
        "start" => start(ctx, &chat, from, said, lang).await,
        "help" => {
            let text = ctx.say(chat_id, "tg_help", lang, &[]).await?;
            record(ctx, &chat, said, &text, "help", json!({})).await
        }
        "search" if arg.is_empty() => {
            chat.set(ctx.store(), Dialogue::Query).await?;
            let text = ctx.say(chat_id, "tg_search_what", lang, &[]).await?;
            record(ctx, &chat, said, &text, "search", json!({})).await
        }
        "search" => search(ctx, &chat, arg, said, lang, origin).await,
        "recommend" => recommend(ctx, &chat, said, lang, origin).await,
        "human" => {
            let reply = ctx
                .platform
                .tools()
                .assistant
                .ask_for_person(chat.conversation(), chat.user(), said, lang)
                .await?;
            ctx.out.send(chat_id, &reply.text, None).await?;
            Ok(())
        }
        "link" if arg.is_empty() => {
            chat.set(ctx.store(), Dialogue::Code).await?;
            ctx.say(chat_id, "tg_link_what", lang, &[]).await?;
            Ok(())
        }
        "link" => link(ctx, chat, arg, from, lang).await,
        _ => {
            ctx.say(chat_id, "tg_unknown_command", lang, &[]).await?;
            Ok(())
        }
    }
}

/// Stores a command and the bot's answer in the conversation, so agents see the
/// whole exchange.
async fn record(
    ctx: &Ctx,
    chat: &Chat,
    said: &str,
    answered: &str,
    tool: &str,
    payload: serde_json::Value,
) -> Result<(), BotError> {
    let store = ctx.store();
    let said = NewMessage {
        role: Role::User,
        content: said.to_owned(),
        tool_name: None,
        tool_payload: None,
    };
    store.append_message(chat.conversation(), &said).await?;
    let answer = NewMessage {
        role: Role::Assistant,
        content: answered.to_owned(),
        tool_name: Some(tool.to_owned()),
        tool_payload: Some(payload.to_string()),
    };
    store.append_message(chat.conversation(), &answer).await?;
    Ok(())
}

/// `/start`: a greeting, and for a customer the shop knows nothing about yet, the
/// preference questions. Stored as the assistant's question, so the assistant reads
/// the answer as preferences (even after a restart).
async fn start(
    ctx: &Ctx,
    chat: &Chat,
    from: Option<&User>,
    said: &str,
    lang: &str,
) -> Result<(), BotError> {
    let store = ctx.store();
    let name = from.map_or_else(|| "there".to_owned(), |u| u.first_name.clone());
    let mut text = ctx.words("tg_welcome", lang, &[("name", &name)])?;
    let tools = ctx.platform.tools();
    let known = match store.user(chat.user()).await? {
        Some(u) => tools.shop.knows_user(&u.external_id),
        None => false,
    };
    let ask = !known && store.interests(chat.user()).await?.is_empty();
    if ask {
        text = format!("{text}\n\n{}", ctx.words("ask_preferences", lang, &[])?);
    }
    ctx.out.send(chat.id(), &text, None).await?;
    let tool = if ask { "ask_preferences" } else { "welcome" };
    record(ctx, chat, said, &text, tool, json!({})).await
}

/// A search: the books, each with its buttons, and a search event.
async fn search(
    ctx: &Ctx,
    chat: &Chat,
    query: &str,
    said: &str,
    lang: &str,
    origin: &str,
) -> Result<(), BotError> {
    let query = query.trim();
    if let Err(e) = shopgraph_assistant::check_message(query.as_bytes()) {
        ctx.say(chat.id(), "tg_bad_message", lang, &[("reason", &e.to_string())]).await?;
        return Ok(());
    }
    let tools = ctx.platform.tools();
    let books = tools.shop.find(query, SHOWN).await?;
    ctx.store()
        .append_event(&NewEvent {
            idempotency_key: format!("{origin}:search"),
            user: chat.user(),
            product: None,
            kind: EventKind::Search,
            value: None,
            payload: Some(json!({ "query": query, "channel": "telegram" }).to_string()),
            occurred_at: shopgraph_core::now_ms(),
        })
        .await?;
    if books.is_empty() {
        let text = ctx.say(chat.id(), "not_found", lang, &[("query", query)]).await?;
        return record(ctx, chat, said, &text, "search", json!({ "books": [] })).await;
    }
    let intro = ctx.say(chat.id(), "tg_search_found", lang, &[("query", query)]).await?;
    let picks: Vec<Pick> =
        books.into_iter().map(|book| Pick { book, reason: String::new() }).collect();
    show_books(ctx, chat.id(), &picks, lang).await?;
    let skus: Vec<&str> = picks.iter().map(|p| p.book.sku.as_str()).collect();
    let text = listed(&intro, &picks);
    record(ctx, chat, said, &text, "search", json!({ "books": skus })).await
}

/// `/recommend`: the customer's list (history and interests), each book with why, and
/// a `recommendation_shown` event for each.
async fn recommend(
    ctx: &Ctx,
    chat: &Chat,
    said: &str,
    lang: &str,
    origin: &str,
) -> Result<(), BotError> {
    let store = ctx.store();
    let interests = store.interests(chat.user()).await?;
    let picks = ctx.platform.tools().shop.recommend(chat.user(), &interests, SHOWN).await?;
    if picks.is_empty() {
        let text = ctx.say(chat.id(), "tg_recommend_none", lang, &[]).await?;
        return record(ctx, chat, said, &text, "recommend", json!({ "picks": [] })).await;
    }
    let now = shopgraph_core::now_ms();
    let shown: Vec<NewEvent> = picks
        .iter()
        .enumerate()
        .map(|(i, p)| NewEvent {
            idempotency_key: format!("{origin}:shown:{i}"),
            user: chat.user(),
            product: Some(p.book.id),
            kind: EventKind::RecommendationShown,
            value: None,
            payload: Some(json!({ "list": "telegram", "position": i }).to_string()),
            occurred_at: now,
        })
        .collect();
    store.append_events(&shown).await?;
    let intro = ctx.say(chat.id(), "tg_recommend_intro", lang, &[]).await?;
    show_books(ctx, chat.id(), &picks, lang).await?;
    let text = listed(&intro, &picks);
    let payload: Vec<_> =
        picks.iter().map(|p| json!({ "sku": p.book.sku, "reason": p.reason })).collect();
    record(ctx, chat, said, &text, "recommend", json!({ "picks": payload })).await
}

/// The intro and the titles, as the conversation keeps a list.
fn listed(intro: &str, picks: &[Pick]) -> String {
    let mut text = intro.to_owned();
    for p in picks {
        text.push_str("\n- ");
        text.push_str(&p.book.title);
    }
    text
}

/// Free text: a turn of the assistant, and the books it answered about.
async fn converse(ctx: &Ctx, chat: &Chat, text: &str, lang: &str) -> Result<(), BotError> {
    if let Err(e) = shopgraph_assistant::check_message(text.as_bytes()) {
        ctx.say(chat.id(), "tg_bad_message", lang, &[("reason", &e.to_string())]).await?;
        return Ok(());
    }
    // "typing…" while the model works; a failure here costs nothing.
    if let Err(e) = ctx.out.bot().send_chat_action(ChatId(chat.id()), ChatAction::Typing).await {
        tracing::debug!("telegram: typing: {e}");
    }
    let tools = ctx.platform.tools();
    let reply = match tools
        .assistant
        .turn(chat.conversation(), chat.user(), text.as_bytes(), |_: Shown| {})
        .await
    {
        Ok(reply) => reply,
        Err(AssistantError::BadInput(why)) => {
            ctx.say(chat.id(), "tg_bad_message", lang, &[("reason", &why)]).await?;
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(chat = chat.id(), "telegram: a chat turn failed: {e}");
            ctx.say(chat.id(), "error", lang, &[]).await?;
            return Ok(());
        }
    };
    ctx.out.send(chat.id(), &reply.text, None).await?;
    let mut picks = Vec::new();
    for sku in reply.books.iter().take(SHOWN) {
        let Some(product) = ctx.store().product_by_sku(sku).await? else { continue };
        let reason = reply.picks.iter().find(|(s, _)| s == sku).map_or("", |(_, why)| why);
        picks.push(Pick { book: BookFacts::of(&product), reason: reason.to_owned() });
    }
    show_books(ctx, chat.id(), &picks, lang).await
}

/// Each book as its own message with the three buttons under it.
async fn show_books(ctx: &Ctx, chat: i64, picks: &[Pick], lang: &str) -> Result<(), BotError> {
    for pick in picks {
        let text = book_text(ctx, &pick.book, &pick.reason, lang)?;
        ctx.out.send(chat, &text, Some(buttons(ctx, pick.book.id, lang)?)).await?;
    }
    Ok(())
}

fn book_text(ctx: &Ctx, book: &BookFacts, reason: &str, lang: &str) -> Result<String, BotError> {
    let mut lines = vec![book.title.clone()];
    if let Some(author) = &book.author {
        let by = ctx.words("tg_by", lang, &[("author", author)])?;
        lines.push(match book.year {
            Some(year) => format!("{by} ({year})"),
            None => by,
        });
    }
    let stock = if book.stock > 0 {
        ctx.words("in_stock", lang, &[("count", &book.stock.to_string())])?
    } else {
        ctx.words("out_of_stock", lang, &[])?
    };
    lines.push(format!("{} · {stock}", book.price));
    if !reason.is_empty() {
        lines.push(ctx.words("tg_why", lang, &[("reason", reason)])?);
    }
    Ok(lines.join("\n"))
}

/// What a button under a book does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tap {
    More(ProductId),
    NotInterested(ProductId),
    Details(ProductId),
}

impl Tap {
    /// `more:ID`, `not:ID` or `info:ID` (Telegram allows 64 bytes of callback data; a
    /// product id always fits where a shop's SKU might not).
    fn data(self) -> String {
        match self {
            Tap::More(p) => format!("more:{}", p.0),
            Tap::NotInterested(p) => format!("not:{}", p.0),
            Tap::Details(p) => format!("info:{}", p.0),
        }
    }

    fn parse(data: &str) -> Option<Tap> {
        let (action, id) = data.split_once(':')?;
        let id = ProductId(id.parse().ok().filter(|&n: &i64| n > 0)?);
        match action {
            "more" => Some(Tap::More(id)),
            "not" => Some(Tap::NotInterested(id)),
            "info" => Some(Tap::Details(id)),
            _ => None,
        }
    }

    fn product(self) -> ProductId {
        match self {
            Tap::More(p) | Tap::NotInterested(p) | Tap::Details(p) => p,
        }
    }
}

fn buttons(ctx: &Ctx, product: ProductId, lang: &str) -> Result<InlineKeyboardMarkup, BotError> {
    let button = |key: &str, tap: Tap| -> Result<InlineKeyboardButton, BotError> {
        Ok(InlineKeyboardButton::callback(ctx.words(key, lang, &[])?, tap.data()))
    };
    Ok(InlineKeyboardMarkup::new([
        vec![
            button("tg_button_more", Tap::More(product))?,
            button("tg_button_not", Tap::NotInterested(product))?,
        ],
        vec![button("tg_button_info", Tap::Details(product))?],
    ]))
}

/// A button tap: a behaviour event, the profile updated, and the answer.
async fn on_tap(ctx: &Ctx, q: &CallbackQuery, origin: &str) -> Result<(), BotError> {
    let lang = lang_of(Some(&q.from));
    let chat_id = q.message.as_ref().map_or(q.from.id.0 as i64, |m| m.chat().id.0);
    let tap = q.data.as_deref().and_then(Tap::parse);
    let product = match tap {
        Some(tap) => ctx.store().product(tap.product()).await?,
        None => None,
    };
    // Always answered, so the button stops spinning; an unknown or stale button says so.
    let notice = match (tap, &product) {
        (None, _) => Some(ctx.words("tg_button_unknown", lang, &[])?),
        (Some(_), None) => Some(ctx.words("tg_gone", lang, &[])?),
        _ => None,
    };
    let mut answer = ctx.out.bot().answer_callback_query(q.id.clone());
    if let Some(text) = &notice {
        answer = answer.text(text.clone());
    }
    if let Err(e) = answer.await {
        tracing::debug!("telegram: answering a button tap: {e}");
    }
    let (Some(tap), Some(product)) = (tap, product) else {
        tracing::info!(data = ?q.data, "telegram: a tap on an unknown button");
        return Ok(());
    };
    let chat = open_chat(ctx, chat_id, Some(&q.from)).await?;
    let (kind, action) = match tap {
        Tap::More(_) => (EventKind::Click, "more_like_this"),
        Tap::NotInterested(_) => (EventKind::Dismiss, "not_interested"),
        Tap::Details(_) => (EventKind::View, "details"),
    };
    let event = ctx
        .store()
        .append_event(&NewEvent {
            idempotency_key: origin.to_owned(),
            user: chat.user(),
            product: Some(product.id),
            kind,
            value: None,
            payload: Some(json!({ "channel": "telegram", "action": action }).to_string()),
            occurred_at: shopgraph_core::now_ms(),
        })
        .await?;
    ctx.platform.catch_up_graph().await?;
    let said = format!("[{action}] {}", product.title);
    match tap {
        Tap::More(_) => more_like(ctx, &chat, &product, event.seq, &said, lang).await,
        Tap::NotInterested(_) => {
            let subject = format!("product:{}", product.sku);
            learn(ctx, chat.user(), &subject, Polarity::Dislikes, 1.0, event.seq).await?;
            let text =
                ctx.say(chat.id(), "tg_dismissed", lang, &[("title", &product.title)]).await?;
            record(ctx, &chat, &said, &text, "dismiss", json!({ "sku": product.sku })).await
        }
        Tap::Details(_) => {
            let facts = ctx.platform.tools().shop.facts(&product).await?;
            let mut text = book_text(ctx, &facts, "", lang)?;
            if let Some(publisher) = &facts.publisher {
                text.push('\n');
                text.push_str(publisher);
            }
            for review in facts.reviews.iter().take(2) {
                text.push_str("\n\n“");
                text.push_str(review);
                text.push('”');
            }
            ctx.out.send(chat.id(), &text, Some(buttons(ctx, product.id, lang)?)).await?;
            record(ctx, &chat, &said, &text, "details", json!({ "sku": product.sku })).await
        }
    }
}

/// "More like this": the book's author becomes a (mild) liked interest, and books chosen
/// by the same shoppers, or else by the same author, are shown.
async fn more_like(
    ctx: &Ctx,
    chat: &Chat,
    product: &Product,
    seq: i64,
    said: &str,
    lang: &str,
) -> Result<(), BotError> {
    let tools = ctx.platform.tools();
    let facts = BookFacts::of(product);
    if let Some(author) = &facts.author {
        let concept = tools.shop.link(author);
        if !concept.subject.starts_with("topic:") {
            learn(ctx, chat.user(), &concept.subject, Polarity::Likes, 0.5, seq).await?;
        }
    }
    let mut picks = tools.shop.together(product.id, SHOWN).await?;
    if picks.is_empty()
        && let Some(author) = &facts.author
    {
        let reason = ctx.words("tg_also_by", lang, &[("author", author)])?;
        picks = tools
            .shop
            .find(author, SHOWN + 1)
            .await?
            .into_iter()
            .filter(|b| b.id != product.id && b.stock > 0)
            .take(SHOWN)
            .map(|book| Pick { book, reason: reason.clone() })
            .collect();
    }
    if picks.is_empty() {
        let text = ctx.say(chat.id(), "tg_more_none", lang, &[("title", &product.title)]).await?;
        return record(ctx, chat, said, &text, "more_like_this", json!({ "picks": [] })).await;
    }
    let intro = ctx.say(chat.id(), "tg_more_like", lang, &[("title", &product.title)]).await?;
    show_books(ctx, chat.id(), &picks, lang).await?;
    let skus: Vec<&str> = picks.iter().map(|p| p.book.sku.as_str()).collect();
    record(ctx, chat, said, &listed(&intro, &picks), "more_like_this", json!({ "picks": skus }))
        .await
}

/// An interest learned from a tap, with the tap's event as its source, in the store
/// and the graph.
async fn learn(
    ctx: &Ctx,
    user: UserId,
    subject: &str,
    polarity: Polarity,
    weight: f64,
    seq: i64,
) -> Result<(), BotError> {
    let at = shopgraph_core::now_ms();
    let source = InterestSource::Event(seq);
    let new = NewInterest {
        user,
        subject: subject.to_owned(),
        weight,
        polarity,
        source: source.clone(),
        at,
    };
    let id = ctx.store().add_interest(&new).await?;
    let interest = Interest { id, user, subject: subject.to_owned(), weight, polarity, source, at };
    ctx.platform.graph.write().unwrap_or_else(|e| e.into_inner()).add_interest(&interest);
    Ok(())
}

/// Links the chat to the shop account a one-time code names: the chat's messages go to
/// that customer from now on, with the interests the chat had gathered.
async fn link(
    ctx: &Ctx,
    mut chat: Chat,
    code: &str,
    from: Option<&User>,
    lang: &str,
) -> Result<(), BotError> {
    let store = ctx.store();
    let hash = shopgraph_server::auth::link_code_sha256(code);
    let by = format!("telegram:{}", chat.id());
    let Some(account) = store.redeem_link_code(&hash, &by).await? else {
        ctx.say(chat.id(), "tg_link_failed", lang, &[]).await?;
        return Ok(());
    };
    // The interests the chat gathered as its own user follow it; an account's profile
    // (a chat linked before, now linked to another) stays where it is.
    let before = chat.user();
    let own = store.user(before).await?.is_some_and(|u| u.external_id == by);
    if before != account && own {
        store.move_interests(before, account).await?;
        let moved = store.interests(account).await?;
        let mut graph = ctx.platform.graph.write().unwrap_or_else(|e| e.into_inner());
        for interest in &moved {
            graph.add_interest(interest);
        }
    }
    let conversation = ctx.platform.tools().assistant.open(account, "telegram").await?;
    let chatting = state_json(Dialogue::Chatting);
    // Moved from the conversation this process read; if another moved the chat
    // meanwhile, from the one it is in now.
    let mut expected = chat.row.conversation;
    while !store
        .switch_telegram_chat(chat.id(), expected, account, conversation.id, &chatting)
        .await?
    {
        expected = reread(store, chat.id()).await?.conversation;
    }
    chat.row.user = account;
    chat.row.conversation = Some(conversation.id);
    chat.row.state = chatting;
    let name = match store.user(account).await? {
        Some(u) => u.display_name.unwrap_or_else(|| {
            from.map_or_else(|| u.external_id.clone(), |f| f.first_name.clone())
        }),
        None => account.0.to_string(),
    };
    tracing::info!(chat = chat.id(), user = account.0, "telegram: a chat linked to an account");
    let text = ctx.say(chat.id(), "tg_linked", lang, &[("name", &name)]).await?;
    record(ctx, &chat, "/link", &text, "link", json!({})).await
}

/// An edited message: answering the new text as well would answer twice, so say so.
async fn on_edit(ctx: &Ctx, m: &Message) -> Result<(), BotError> {
    if m.chat.is_private() {
        ctx.say(m.chat.id.0, "tg_edited", lang_of(m.from.as_ref()), &[]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_round_trip_and_anything_else_is_refused() {
        for tap in [
            Tap::More(ProductId(7)),
            Tap::NotInterested(ProductId(7)),
            Tap::Details(ProductId(123_456_789)),
        ] {
            assert_eq!(Tap::parse(&tap.data()), Some(tap));
            assert!(tap.data().len() <= 64);
        }
        for bad in ["", "more", "more:", "more:x", "more:-3", "more:0", "buy:7", ":7", "more:7:8"] {
            assert_eq!(Tap::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dialogue_states_read_back_and_an_unknown_one_is_chatting() {
        for d in [Dialogue::Chatting, Dialogue::Query, Dialogue::Code] {
            assert_eq!(serde_json::from_str::<Dialogue>(&state_json(d)).unwrap(), d);
        }
        assert_eq!(
            serde_json::from_str::<Dialogue>("{\"awaiting\":\"x\"}").unwrap_or_default(),
            Dialogue::Chatting
        );
    }
}
