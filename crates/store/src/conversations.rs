//! Conversations: messages, tool calls and their results, and handoff to agents.

use shopgraph_core::conversation::{Conversation, Handoff, Message, NewMessage, Role};
use shopgraph_core::{ConversationId, MessageId, UserId};
use sqlx::Row;

use crate::{Result, Store, StoreError, on_pool, write_tx};

/// Longest message, in bytes: well above any chat message, far below a flood.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

macro_rules! conversation_from_row {
    ($row:expr) => {{
        let row = $row;
        let handoff: String = row.try_get("handoff")?;
        Conversation {
            id: ConversationId(row.try_get("id")?),
            user: UserId(row.try_get("user_id")?),
            channel: row.try_get("channel")?,
            handoff: Handoff::parse(&handoff)
                .ok_or_else(|| StoreError::Corrupt(format!("handoff {handoff}")))?,
            agent: row.try_get("agent")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

const CONVERSATION_COLUMNS: &str = "id, user_id, channel, handoff, agent, created_at, updated_at";

impl Store {
    /// Starts a conversation answered by the assistant.
    pub async fn open_conversation(&self, user: UserId, channel: &str) -> Result<Conversation> {
        if self.user(user).await?.is_none() {
            return Err(StoreError::UnknownUser(user));
        }
        let now = shopgraph_core::now_ms();
        let id: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "INSERT INTO conversations (user_id, channel, handoff, created_at, updated_at) \
                 VALUES ($1, $2, 'bot', $3, $3) RETURNING id",
            )
            .bind(user.0)
            .bind(channel)
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        self.conversation(ConversationId(id))
            .await?
            .ok_or(StoreError::UnknownConversation(ConversationId(id)))
    }

    pub async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1");
        on_pool!(self, |pool| {
            Ok(match sqlx::query(&sql).bind(id.0).fetch_optional(pool).await? {
                Some(row) => Some(conversation_from_row!(&row)),
                None => None,
            })
        })
    }

    /// Conversations in one handoff state, oldest activity first (the agents' inbox).
    pub async fn conversations_by_handoff(
        &self,
        handoff: Handoff,
        limit: u32,
    ) -> Result<Vec<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE handoff = $1 ORDER BY updated_at, id LIMIT $2"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(handoff.as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(conversation_from_row!(row));
            }
            Ok(out)
        })
    }

    /// A user's conversations, newest first.
    pub async fn conversations_of_user(&self, user: UserId) -> Result<Vec<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE user_id = $1 ORDER BY updated_at DESC, id DESC"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql).bind(user.0).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(conversation_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Appends a message (or a tool call or result) and touches the conversation.
    pub async fn append_message(
        &self,
        conversation: ConversationId,
        message: &NewMessage,
    ) -> Result<Message> {
        if message.content.len() > MAX_MESSAGE_BYTES {
            return Err(StoreError::Invalid(format!(
                "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                message.content.len()
            )));
        }
        let now = shopgraph_core::now_ms();
        let id = write_tx!(self, |tx| {
            let touched = sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(conversation.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if touched == 0 {
                return Err(StoreError::UnknownConversation(conversation));
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO messages (conversation_id, role, content, tool_name, tool_payload, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(conversation.0)
            .bind(message.role.as_str())
            .bind(message.content.as_str())
            .bind(message.tool_name.as_deref())
            .bind(message.tool_payload.as_deref())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            Ok::<_, StoreError>(id)
        })?;
        Ok(Message {
            id: MessageId(id),
            conversation,
            role: message.role,
            content: message.content.clone(),
            tool_name: message.tool_name.clone(),
            tool_payload: message.tool_payload.clone(),
            created_at: now,
        })
    }

    /// A conversation's messages, in order.
    pub async fn messages(&self, conversation: ConversationId) -> Result<Vec<Message>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT id, conversation_id, role, content, tool_name, tool_payload, created_at \
                 FROM messages WHERE conversation_id = $1 ORDER BY id",
            )
            .bind(conversation.0)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let role: String = row.try_get("role")?;
                out.push(Message {
                    id: MessageId(row.try_get("id")?),
                    conversation: ConversationId(row.try_get("conversation_id")?),
                    role: Role::parse(&role)
                        .ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
                    content: row.try_get("content")?,
                    tool_name: row.try_get("tool_name")?,
                    tool_payload: row.try_get("tool_payload")?,
                    created_at: row.try_get("created_at")?,
                });
            }
            Ok(out)
        })
    }

    /// Moves a conversation between the assistant, the inbox, an agent and closed.
    pub async fn set_handoff(
        &self,
        conversation: ConversationId,
        handoff: Handoff,
        agent: Option<&str>,
    ) -> Result<Conversation> {
        let changed = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE conversations SET handoff = $1, agent = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(handoff.as_str())
            .bind(agent)
            .bind(shopgraph_core::now_ms())
            .bind(conversation.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 0 {
            return Err(StoreError::UnknownConversation(conversation));
        }
        self.conversation(conversation).await?.ok_or(StoreError::UnknownConversation(conversation))
    }
}
