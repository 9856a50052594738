//! Telegram's side of the store: which shop user and conversation each chat is, where
//! its dialogue stands, which agent answers have reached it, which updates were already
//! handled, and the one-time codes that link a chat to an existing account.
//!
//! Everything a bot needs to pick up where it was after a restart lives here, not in
//! the bot's memory.

use shopgraph_core::conversation::Message;
use shopgraph_core::{ConversationId, MessageId, Timestamp, UserId};
use sqlx::Row;

use crate::{Result, Store, StoreError, on_pool, write_tx};

/// A Telegram chat as the shop knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct TelegramChat {
    pub chat_id: i64,
    pub user: UserId,
    /// The conversation the chat's messages go to; none before the first.
    pub conversation: Option<ConversationId>,
    /// The bot's dialogue state (its own JSON).
    pub state: String,
    /// The last agent message sent to the chat.
    pub delivered: MessageId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An agent's answer not yet sent to the chat of its conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingReply {
    pub chat_id: i64,
    /// The chat's delivery mark when it was read (see [`Store::claim_delivery`]).
    pub delivered: MessageId,
    pub message: Message,
}

/// Longest dialogue state, in bytes.
pub const MAX_STATE_BYTES: usize = 4 * 1024;

/// Adds a conversation to those whose agents' answers reach the chat, inside the
/// caller's transaction.
macro_rules! remember_conversation {
    ($tx:ident, $chat_id:expr, $conversation:expr) => {
        sqlx::query(
            "INSERT INTO telegram_conversations (conversation_id, chat_id) VALUES ($1, $2) \
             ON CONFLICT (conversation_id) DO NOTHING",
        )
        .bind($conversation.0)
        .bind($chat_id)
        .execute(&mut *$tx)
        .await?;
    };
}

const CHAT_COLUMNS: &str =
    "chat_id, user_id, conversation_id, state, delivered_message_id, created_at, updated_at";

impl Store {
    pub async fn telegram_chat(&self, chat_id: i64) -> Result<Option<TelegramChat>> {
        let sql = format!("SELECT {CHAT_COLUMNS} FROM telegram_chats WHERE chat_id = $1");
        on_pool!(self, |pool| {
            let Some(row) = sqlx::query(&sql).bind(chat_id).fetch_optional(pool).await? else {
                return Ok(None);
            };
            Ok(Some(TelegramChat {
                chat_id: row.try_get("chat_id")?,
                user: UserId(row.try_get("user_id")?),
                conversation: row.try_get::<Option<i64>, _>("conversation_id")?.map(ConversationId),
                state: row.try_get("state")?,
                delivered: MessageId(row.try_get("delivered_message_id")?),
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            }))
        })
    }

    /// Records a chat met for the first time, with its first conversation; false (and
    /// nothing written) when another process recorded it first: read it back then.
    pub async fn add_telegram_chat(&self, chat: &TelegramChat) -> Result<bool> {
        check_state(&chat.state)?;
        let now = shopgraph_core::now_ms();
        write_tx!(self, |tx| {
            let added = sqlx::query(
                "INSERT INTO telegram_chats (chat_id, user_id, conversation_id, state, delivered_message_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (chat_id) DO NOTHING",
            )
            .bind(chat.chat_id)
            .bind(chat.user.0)
            .bind(chat.conversation.map(|c| c.0))
            .bind(chat.state.as_str())
            .bind(chat.delivered.0)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if added && let Some(conversation) = chat.conversation {
                remember_conversation!(tx, chat.chat_id, conversation);
            }
            Ok::<_, StoreError>(added)
        })
    }

    /// Writes where a chat's dialogue stands, and nothing else.
    pub async fn set_telegram_state(&self, chat_id: i64, state: &str) -> Result<()> {
        check_state(state)?;
        on_pool!(self, |pool| {
            sqlx::query("UPDATE telegram_chats SET state = $1, updated_at = $2 WHERE chat_id = $3")
                .bind(state)
                .bind(shopgraph_core::now_ms())
                .bind(chat_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Moves a chat to a new conversation (and user, when it is linked to an account),
    /// with a new dialogue state, if it is still in `expected`; false when another
    /// process moved it first (read it back then). The delivery mark stays: the earlier
    /// conversations' answers still reach the chat.
    pub async fn switch_telegram_chat(
        &self,
        chat_id: i64,
        expected: Option<ConversationId>,
        user: UserId,
        conversation: ConversationId,
        state: &str,
    ) -> Result<bool> {
        check_state(state)?;
        let now = shopgraph_core::now_ms();
        write_tx!(self, |tx| {
            let moved = sqlx::query(
                "UPDATE telegram_chats SET user_id = $1, conversation_id = $2, state = $3, updated_at = $4 \
                 WHERE chat_id = $5 AND conversation_id IS NOT DISTINCT FROM $6",
            )
            .bind(user.0)
            .bind(conversation.0)
            .bind(state)
            .bind(now)
            .bind(chat_id)
            .bind(expected.map(|c| c.0))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if moved {
                remember_conversation!(tx, chat_id, conversation);
            }
            Ok::<_, StoreError>(moved)
        })
    }

    /// Agents' answers, in any conversation a chat has had, that have not been sent to
    /// it, oldest first.
    pub async fn pending_replies(&self, limit: u32) -> Result<Vec<PendingReply>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT c.chat_id, c.delivered_message_id, m.id, m.conversation_id, m.role, m.content, m.tool_name, m.tool_payload, m.created_at \
                 FROM telegram_conversations t \
                 JOIN telegram_chats c ON c.chat_id = t.chat_id \
                 JOIN messages m ON m.conversation_id = t.conversation_id \
                 WHERE m.role = 'agent' AND m.id > c.delivered_message_id ORDER BY m.id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(PendingReply {
                    chat_id: row.try_get("chat_id")?,
                    delivered: MessageId(row.try_get("delivered_message_id")?),
                    message: Message {
                        id: MessageId(row.try_get("id")?),
                        conversation: ConversationId(row.try_get("conversation_id")?),
                        role: shopgraph_core::conversation::Role::Agent,
                        content: row.try_get("content")?,
                        tool_name: row.try_get("tool_name")?,
                        tool_payload: row.try_get("tool_payload")?,
                        created_at: row.try_get("created_at")?,
                    },
                });
            }
            Ok(out)
        })
    }

    /// Moves a chat's delivery mark from `from` to `to`; false when another sender (a
    /// second replica) moved it first. A sender claims a message before sending it and
    /// gives it back ([`Store::unclaim_delivery`]) when the send failed.
    pub async fn claim_delivery(
        &self,
        chat_id: i64,
        from: MessageId,
        to: MessageId,
    ) -> Result<bool> {
        let moved = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE telegram_chats SET delivered_message_id = $1 \
                 WHERE chat_id = $2 AND delivered_message_id = $3",
            )
            .bind(to.0)
            .bind(chat_id)
            .bind(from.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(moved == 1)
    }

    /// Undoes a [`Store::claim_delivery`] whose send failed, so the answer is sent later.
    pub async fn unclaim_delivery(
        &self,
        chat_id: i64,
        claimed: MessageId,
        back_to: MessageId,
    ) -> Result<bool> {
        self.claim_delivery(chat_id, claimed, back_to).await
    }

    /// Whether an update was already handled.
    pub async fn update_handled(&self, update_id: i64) -> Result<bool> {
        on_pool!(self, |pool| {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT update_id FROM telegram_updates WHERE update_id = $1")
                    .bind(update_id)
                    .fetch_optional(pool)
                    .await?;
            Ok(found.is_some())
        })
    }

    /// Records that an update was handled, and forgets those handled before `forget_before`
    /// (Telegram resends an update for a day at most).
    pub async fn mark_update_handled(
        &self,
        update_id: i64,
        forget_before: Timestamp,
    ) -> Result<()> {
        let now = shopgraph_core::now_ms();
        write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO telegram_updates (update_id, handled_at) VALUES ($1, $2) \
                 ON CONFLICT (update_id) DO NOTHING",
            )
            .bind(update_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM telegram_updates WHERE handled_at < $1")
                .bind(forget_before)
                .execute(&mut *tx)
                .await?;
            Ok::<_, StoreError>(())
        })
    }

    /// Stores a link code (its SHA-256, in hex) for `user`, valid until `expires_at`.
    pub async fn add_link_code(
        &self,
        user: UserId,
        code_sha256: &str,
        expires_at: Timestamp,
    ) -> Result<()> {
        if self.user(user).await?.is_none() {
            return Err(StoreError::UnknownUser(user));
        }
        let now = shopgraph_core::now_ms();
        write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO link_codes (code_sha256, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(code_sha256)
            .bind(user.0)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            // Codes a day past their end are of no use to anyone.
            sqlx::query("DELETE FROM link_codes WHERE expires_at < $1")
                .bind(now - 24 * 3600 * 1000)
                .execute(&mut *tx)
                .await?;
            Ok::<_, StoreError>(())
        })
    }

    /// Uses a link code: the user it names, when it exists, has not expired and was not
    /// used by anyone but `used_by` (who may try again after a failure part way);
    /// `None` otherwise.
    pub async fn redeem_link_code(
        &self,
        code_sha256: &str,
        used_by: &str,
    ) -> Result<Option<UserId>> {
        let now = shopgraph_core::now_ms();
        on_pool!(self, |pool| {
            let user: Option<i64> = sqlx::query_scalar(
                "UPDATE link_codes SET used_at = $1, used_by = $2 \
                 WHERE code_sha256 = $3 AND (used_at IS NULL OR used_by = $2) AND expires_at > $1 \
                 RETURNING user_id",
            )
            .bind(now)
            .bind(used_by)
            .bind(code_sha256)
            .fetch_optional(pool)
            .await?;
            Ok(user.map(UserId))
        })
    }

    /// Moves `from`'s interests to `to` (a chat's own user linked to a shop account):
    /// the profile follows the customer. Returns how many moved.
    pub async fn move_interests(&self, from: UserId, to: UserId) -> Result<u64> {
        if self.user(to).await?.is_none() {
            return Err(StoreError::UnknownUser(to));
        }
        on_pool!(self, |pool| {
            Ok(sqlx::query("UPDATE interests SET user_id = $1 WHERE user_id = $2")
                .bind(to.0)
                .bind(from.0)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }
}

fn check_state(state: &str) -> Result<()> {
    if state.len() > MAX_STATE_BYTES {
        return Err(StoreError::Invalid(format!(
            "dialogue state is {} bytes; the limit is {MAX_STATE_BYTES}",
            state.len()
        )));
    }
    Ok(())
}
