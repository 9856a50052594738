//! Conversations: messages, tool calls and their results, and who is answering.

use crate::{ConversationId, MessageId, Timestamp, UserId};

/// Who answers a conversation right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handoff {
    /// The assistant answers.
    Bot,
    /// The assistant handed off; waiting in the agents' inbox.
    Waiting,
    /// A support agent took it over.
    Agent,
    /// Closed.
    Closed,
}

impl Handoff {
    pub fn as_str(self) -> &'static str {
        match self {
            Handoff::Bot => "bot",
            Handoff::Waiting => "waiting",
            Handoff::Agent => "agent",
            Handoff::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Handoff> {
        Some(match s {
            "bot" => Handoff::Bot,
            "waiting" => Handoff::Waiting,
            "agent" => Handoff::Agent,
            "closed" => Handoff::Closed,
            _ => return None,
        })
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Assistant,
    Agent,
    Tool,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Agent => "agent",
            Role::Tool => "tool",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "agent" => Role::Agent,
            "tool" => Role::Tool,
            "system" => Role::System,
            _ => return None,
        })
    }
}

/// A conversation's header.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub user: UserId,
    /// `web`, `telegram`, `api`.
    pub channel: String,
    pub handoff: Handoff,
    pub agent: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A message to append. A tool call carries the tool's name and its arguments or
/// result as JSON text in `tool_payload`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub tool_name: Option<String>,
    pub tool_payload: Option<String>,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub conversation: ConversationId,
    pub role: Role,
    pub content: String,
    pub tool_name: Option<String>,
    pub tool_payload: Option<String>,
    pub created_at: Timestamp,
}
