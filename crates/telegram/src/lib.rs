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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shopgraph_server::{AppState, Platform, TelegramConfig};
use teloxide::dispatching::{Dispatcher, UpdateHandler};
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::prelude::Requester;
use teloxide::types::BotCommand;
use teloxide::update_listeners::UpdateListener;
use teloxide::update_listeners::webhooks::{Options, axum_to_router};
use teloxide::{Bot, RequestError, dptree};

pub use crate::bot::{BotError, Ctx};
use crate::send::{Limits, Outbox};

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("telegram: {what} {given:?} is not a URL: {why}")]
    BadUrl { what: &'static str, given: String, why: String },
    #[error("telegram: webhook mode needs telegram.webhook_url in the config")]
    NoWebhookUrl,
    #[error("telegram: the webhook secret must be 1 to 256 of A-Z a-z 0-9 _ -")]
    BadSecret,
    #[error("telegram: setting the webhook: {0}")]
    SetWebhook(RequestError),
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

/// Webhook mode: tells the Bot API where to post (`telegram.webhook_url`) and returns
/// the route that takes the posts, to be merged into the server's router, and the
/// updates it receives, for [`run`]. Posts without the secret are refused.
pub async fn webhook(
    bot: &Bot,
    config: &TelegramConfig,
    listening: SocketAddr,
) -> Result<(impl UpdateListener<Err = Infallible> + use<>, axum::Router), TelegramError> {
    let given = config.webhook_url.as_deref().ok_or(TelegramError::NoWebhookUrl)?;
    let mut options = Options::new(listening, url("the webhook address", given)?);
    if let Some(secret) = &config.webhook_secret {
        let ok = (1..=256).contains(&secret.len())
            && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(TelegramError::BadSecret);
        }
        options = options.secret_token(secret.clone());
    } else {
        // Drawn here, so it is in the options both for setWebhook and for the route.
        options.get_or_gen_secret_token();
    }
    let (listener, _stopped, router) =
        axum_to_router(bot.clone(), options).await.map_err(TelegramError::SetWebhook)?;
    Ok((listener, router))
}

/// Runs the bot with long polling until the process ends.
pub async fn run_polling(state: Arc<AppState>, bot: Bot, config: TelegramConfig) {
    let platform = wait_for_platform(&state).await;
    let ctx = start(platform, &bot, &config).await;
    let listener = teloxide::update_listeners::polling_default(bot.clone()).await;
    dispatcher(bot, ctx)
        .dispatch_with_listener(
            listener,
            LoggingErrorHandler::with_custom_text("telegram: receiving updates"),
        )
        .await;
}

/// Runs the bot on the updates a [`webhook`] receives, until the process ends.
pub async fn run_webhook(
    state: Arc<AppState>,
    bot: Bot,
    config: TelegramConfig,
    listener: impl UpdateListener<Err = Infallible> + Send,
) {
    let platform = wait_for_platform(&state).await;
    let ctx = start(platform, &bot, &config).await;
    dispatcher(bot, ctx)
        .dispatch_with_listener(
            listener,
            LoggingErrorHandler::with_custom_text("telegram: receiving updates"),
        )
        .await;
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
    let mut wait = Duration::from_secs(1);
    loop {
        match bot.get_me().await {
            Ok(me) => {
                tracing::info!(bot = %me.username(), "telegram: the bot is running");
                break;
            }
            Err(e) => {
                tracing::warn!(
                    "telegram: the Bot API did not answer getMe ({e}); trying again in {wait:?}"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
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

fn dispatcher(
    bot: Bot,
    ctx: Arc<Ctx>,
) -> Dispatcher<Bot, BotError, teloxide::dispatching::DefaultKey> {
    let handler: UpdateHandler<BotError> = dptree::entry().endpoint(bot::handle);
    Dispatcher::builder(bot, handler)
        .dependencies(dptree::deps![ctx])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text("telegram: an update failed"))
        .build()
}
