//! The shop assistant on Telegram: the same assistant, recommendations and hand-off
//! to a person as the web chat, for customers who would rather stay in Telegram.
//!
//! - [`bot`]: what each update does: `/start` (a greeting and, for a new customer,
//!   the preference questions), `/search`, `/recommend`, `/human`, `/link`, `/help`,
//!   free text for the assistant, and books as messages with buttons (more like this,
//!   not interested, details) whose taps are behaviour events and update the profile;
//! - [`deliver`]: agents' answers from the console, sent to the customer's chat;
//! - [`send`]: Telegram's limits: long answers split, about one message a second per
//!   chat, and "retry after" honoured.
//!
//! The bot runs in `shopgraph serve` over the same platform as the HTTP APIs, with
//! long polling by default or a webhook route on the same axum server. Its state (the
//! chat's user, conversation and dialogue, what was delivered, which updates were
//! handled) is in the store, so a restart resumes every dialogue where it was.

pub mod bot;
pub mod deliver;
pub mod send;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::Stream;

use shopgraph_server::{AppState, Platform, TelegramConfig};
use teloxide::dispatching::{DefaultKey, Dispatcher, UpdateHandler};
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::payloads::SetWebhookSetters;
use teloxide::prelude::Requester;
use teloxide::stop::{StopToken, mk_stop_token};
use teloxide::types::BotCommand;
use teloxide::types::Update;
use teloxide::update_listeners::{StatefulListener, UpdateListener};
use teloxide::{Bot, dptree};
use tokio::sync::{Mutex, mpsc};

pub use crate::bot::{BotError, Ctx};
use crate::send::{Limits, Outbox};

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("telegram: {what} {given:?} is not a URL: {why}")]
    BadUrl { what: &'static str, given: String, why: String },
    #[error("telegram: webhook mode needs telegram.webhook_url in the config")]
    NoWebhookUrl,
    #[error(
        "telegram: webhook mode needs telegram.webhook_secret: 1 to 256 of A-Z a-z 0-9 _ -, the same for every replica"
    )]
    BadSecret,
}

fn url(what: &'static str, given: &str) -> Result<url::Url, TelegramError> {
    given.parse().map_err(|e: url::ParseError| TelegramError::BadUrl {
        what,
        given: given.to_owned(),
        why: e.to_string(),
    })
}

/// The bot's client of the Bot API at `config.api_url` (Telegram's own when none).
pub fn bot(token: &str, config: &TelegramConfig) -> Result<Bot, TelegramError> {
    let mut bot = Bot::new(token);
    if let Some(api) = &config.api_url {
        bot = bot.set_api_url(url("the Bot API address", api)?);
    }
    Ok(bot)
}

/// Webhook mode's updates: what the route took and the dispatcher has yet to read.
pub struct Webhook {
    url: url::Url,
    secret: String,
    updates: Arc<Mutex<mpsc::UnboundedReceiver<Update>>>,
}

struct Route {
    secret: String,
    updates: mpsc::UnboundedSender<Update>,
}

/// Webhook mode: the route that takes Telegram's posts at the path of
/// `telegram.webhook_url`, to be merged into the server's router, and the updates it
/// takes, for [`run_webhook`] (which also tells the Bot API where to post). Posts
/// without the secret (`telegram.webhook_secret`, required: replicas behind one
/// address must share it) are refused with 401.
pub fn webhook(config: &TelegramConfig) -> Result<(Webhook, axum::Router), TelegramError> {
    let given = config.webhook_url.as_deref().ok_or(TelegramError::NoWebhookUrl)?;
    let url = url("the webhook address", given)?;
    let secret = config.webhook_secret.clone().ok_or(TelegramError::BadSecret)?;
    let ok = (1..=256).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(TelegramError::BadSecret);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let route = Arc::new(Route { secret: secret.clone(), updates: tx });
    let router =
        axum::Router::new().route(url.path(), axum::routing::post(take_update)).with_state(route);
    Ok((Webhook { url, secret, updates: Arc::new(Mutex::new(rx)) }, router))
}

async fn take_update(
    State(route): State<Arc<Route>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let given = headers.get("x-telegram-bot-api-secret-token").map_or(&b""[..], |v| v.as_bytes());
    if !same_secret(given, route.secret.as_bytes()) {
        return StatusCode::UNAUTHORIZED;
    }
    match serde_json::from_slice::<Update>(&body) {
        Ok(update) => match route.updates.send(update) {
            Ok(()) => StatusCode::OK,
            // The bot has stopped: Telegram keeps the update and posts it again.
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(e) => {
            tracing::warn!("telegram: a webhook post that is not an update: {e}");
            StatusCode::BAD_REQUEST
        }
    }
}

/// Compares without stopping at the first difference, so the time taken says nothing
/// of how much of a guess was right.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len() && given.iter().zip(secret).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// Runs the bot with long polling until the process ends. One process per bot token:
/// Telegram refuses a second poller (409), and webhook mode is for replicas.
pub async fn run_polling(state: Arc<AppState>, bot: Bot, config: TelegramConfig) {
    let platform = wait_for_platform(&state).await;
    let ctx = start(platform, &bot, &config).await;
    let polling = bot.clone();
    keep_dispatching(dispatcher(bot, ctx), || {
        teloxide::update_listeners::polling_default(polling.clone())
    })
    .await;
}

/// Tells the Bot API where to post (until it agrees) and runs the bot on the updates
/// the [`webhook`] route takes, until the process ends.
pub async fn run_webhook(state: Arc<AppState>, bot: Bot, config: TelegramConfig, webhook: Webhook) {
    let setting = bot.clone();
    let (url, secret) = (webhook.url.clone(), webhook.secret.clone());
    tokio::spawn(async move {
        let mut backoff = Backoff::new();
        while let Err(e) = setting.set_webhook(url.clone()).secret_token(secret.clone()).await {
            backoff.pause("setting the webhook", e).await;
        }
        tracing::info!(%url, "telegram: the webhook is set");
    });
    let platform = wait_for_platform(&state).await;
    let ctx = start(platform, &bot, &config).await;
    let updates = webhook.updates;
    keep_dispatching(dispatcher(bot, ctx), || std::future::ready(updates_of(Arc::clone(&updates))))
        .await;
}

/// Dispatches until the process ends. teloxide's dispatcher asks for `getMe` before it
/// starts and gives up if that fails: it is started again, on a new listener, after a
/// pause, rather than leaving the server up with no bot.
async fn keep_dispatching<L, F>(
    mut dispatcher: Dispatcher<Bot, BotError, DefaultKey>,
    mut listener: impl FnMut() -> F,
) where
    F: Future<Output = L>,
    L: UpdateListener + Send,
    L::Err: std::fmt::Debug,
{
    let mut backoff = Backoff::new();
    loop {
        let started = dispatcher
            .try_dispatch_with_listener(
                listener().await,
                LoggingErrorHandler::with_custom_text("telegram: receiving updates"),
            )
            .await;
        match started {
            Ok(()) => return,
            Err(e) => backoff.pause("the dispatcher could not start", e).await,
        }
    }
}

/// Pauses between tries of a call to the Bot API: 1 s, doubling, at most a minute.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_secs(1))
    }

    async fn pause(&mut self, what: &str, error: impl std::fmt::Display) {
        tracing::warn!("telegram: {what} ({error}); trying again in {:?}", self.0);
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(60));
    }
}

/// A listener over the webhook's updates. The receiver outlives it, so a dispatcher
/// that failed to start is given a new one and no update is lost.
fn updates_of(
    updates: Arc<Mutex<mpsc::UnboundedReceiver<Update>>>,
) -> impl UpdateListener<Err = Infallible> + Send {
    type Updates = Pin<Box<dyn Stream<Item = Result<Update, Infallible>> + Send>>;
    let stream: Updates = Box::pin(futures_util::stream::unfold(updates, |rx| async move {
        let next = rx.lock().await.recv().await;
        next.map(|update| (Ok(update), rx))
    }));
    let (token, _flag) = mk_stop_token();
    StatefulListener::new((stream, token), first, |state: &mut (Updates, StopToken)| {
        state.1.clone()
    })
}

fn first<A, B>(pair: &mut (A, B)) -> &mut A {
    &mut pair.0
}

async fn wait_for_platform(state: &AppState) -> Arc<Platform> {
    loop {
        if let Some(p) = state.loaded() {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks the token (until the Bot API answers), lists the commands in Telegram's
/// menu, and starts delivering agents' answers.
async fn start(platform: Arc<Platform>, bot: &Bot, config: &TelegramConfig) -> Arc<Ctx> {
    let mut backoff = Backoff::new();
    loop {
        match bot.get_me().await {
            Ok(me) => {
                tracing::info!(bot = %me.username(), "telegram: the bot is running");
                break;
            }
            Err(e) => backoff.pause("the Bot API did not answer getMe", e).await,
        }
    }
    let limits = Limits {
        chat_rate: config.chat_rate,
        chat_burst: config.chat_burst,
        global_rate: config.global_rate,
        attempts: config.send_attempts,
    };
    let ctx = Arc::new(Ctx { platform, out: Outbox::new(bot.clone(), limits) });
    let prompts = ctx.platform.tools().assistant.prompts().clone();
    let commands: Vec<BotCommand> = ["search", "recommend", "human", "link", "help"]
        .into_iter()
        .filter_map(|c| {
            let about = prompts.reply(&format!("tg_command_{c}"), "en", &[]).ok()?;
            Some(BotCommand::new(c, about))
        })
        .collect();
    if let Err(e) = bot.set_my_commands(commands).await {
        tracing::warn!("telegram: listing the commands: {e}");
    }
    tokio::spawn(deliver::run(Arc::clone(&ctx), Duration::from_millis(config.delivery_ms.max(50))));
    ctx
}

fn dispatcher(bot: Bot, ctx: Arc<Ctx>) -> Dispatcher<Bot, BotError, DefaultKey> {
    let handler: UpdateHandler<BotError> = dptree::entry().endpoint(bot::handle);
    Dispatcher::builder(bot, handler)
        .dependencies(dptree::deps![ctx])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text("telegram: an update failed"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_must_match_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret"] {
            assert!(!same_secret(wrong, b"s3cret"));
        }
    }

    #[test]
    fn webhook_mode_needs_an_address_and_a_shared_secret() {
        let mut config = TelegramConfig::default();
        assert!(matches!(webhook(&config), Err(TelegramError::NoWebhookUrl)));
        config.webhook_url = Some("https://shop.test/telegram/update".into());
        assert!(matches!(webhook(&config), Err(TelegramError::BadSecret)));
        config.webhook_secret = Some("has spaces".into());
        assert!(matches!(webhook(&config), Err(TelegramError::BadSecret)));
        config.webhook_secret = Some("s3cret-Token_1".into());
        assert!(webhook(&config).is_ok());
        config.webhook_url = Some("not a url".into());
        assert!(matches!(webhook(&config), Err(TelegramError::BadUrl { .. })));
    }
}
