//! Agents' answers to Telegram chats. An agent answers a handed-off conversation in the
//! console (the agent API stores the message); this loop finds answers in Telegram
//! chats' conversations that have not been sent and sends them.
//!
//! Each answer is claimed in the store before it is sent (the chat's delivery mark
//! moves), so two bots on one database never send it twice; a send that failed for a
//! passing reason gives the claim back, and the next round tries again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use shopgraph_assistant::language;
use shopgraph_core::MessageId;

use crate::bot::{BotError, Ctx};
use crate::send::SendError;

/// Answers read per round.
const BATCH: u32 = 100;

/// Delivers answers every `every`, for as long as the bot runs.
pub async fn run(ctx: std::sync::Arc<Ctx>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = deliver(&ctx).await {
            tracing::warn!("telegram: delivering agents' answers: {e}");
        }
    }
}

/// One round; returns how many answers were sent.
pub async fn deliver(ctx: &Ctx) -> Result<usize, BotError> {
    let store = &ctx.platform.store;
    let pending = store.pending_replies(BATCH).await?;
    let mut marks: HashMap<i64, MessageId> = HashMap::new();
    let mut stalled: HashSet<i64> = HashSet::new();
    let mut sent = 0;
    for reply in pending {
        let chat = reply.chat_id;
        if stalled.contains(&chat) {
            continue;
        }
        let from = marks.get(&chat).copied().unwrap_or(reply.delivered);
        // Everything that can fail before the claim, so a claim is only ever held by a
        // send in progress.
        let agent = store
            .conversation(reply.message.conversation)
            .await?
            .and_then(|c| c.agent)
            .unwrap_or_else(|| "Support".to_owned());
        let content = &reply.message.content;
        let text = ctx.platform.tools().assistant.prompts().reply(
            "tg_agent",
            language(content),
            &[("agent", &agent), ("text", content)],
        )?;
        if !store.claim_delivery(chat, from, reply.message.id).await? {
            // Another sender has it.
            stalled.insert(chat);
            continue;
        }
        match ctx.out.send(chat, &text, None).await {
            Ok(()) => {
                marks.insert(chat, reply.message.id);
                sent += 1;
            }
            // Refused for good (the customer blocked the bot, the chat is gone): trying
            // again would fail the same way, so it stays claimed.
            Err(e @ SendError::Refused(_)) => {
                tracing::warn!(
                    chat,
                    message = reply.message.id.0,
                    "telegram: an agent's answer was refused: {e}"
                );
                marks.insert(chat, reply.message.id);
            }
            Err(e @ SendError::GaveUp { .. }) => {
                tracing::warn!(
                    chat,
                    message = reply.message.id.0,
                    "telegram: an agent's answer will be tried again: {e}"
                );
                stalled.insert(chat);
                // If the store fails here too, the claim is given back by nothing: say so.
                if let Err(e) = store.unclaim_delivery(chat, reply.message.id, from).await {
                    tracing::error!(
                        chat,
                        message = reply.message.id.0,
                        "telegram: an agent's answer was not sent and could not be given back for another try: {e}"
                    );
                }
            }
        }
    }
    Ok(sent)
}
