-- Telegram chats and the "not interested" event.

-- Which shop user and conversation each Telegram chat is, where its dialogue stands
-- (`state`, the bot's own JSON), and the last agent message delivered to it (message
-- ids only grow, so one mark serves every conversation the chat has had).
CREATE TABLE telegram_chats (
    chat_id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id BIGINT REFERENCES conversations (id) ON DELETE SET NULL,
    state TEXT NOT NULL,
    delivered_message_id BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX telegram_chats_user ON telegram_chats (user_id);
CREATE INDEX telegram_chats_conversation ON telegram_chats (conversation_id);

-- Every conversation a chat has had: an agent's answer in an earlier one (closed, or
-- left when the chat was linked to an account) still reaches the chat.
CREATE TABLE telegram_conversations (
    conversation_id BIGINT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    chat_id BIGINT NOT NULL REFERENCES telegram_chats (chat_id) ON DELETE CASCADE
);
CREATE INDEX telegram_conversations_chat ON telegram_conversations (chat_id);

-- Updates already handled: Telegram sends an update again when the bot stopped before
-- confirming it, and the bot answers each once.
CREATE TABLE telegram_updates (
    update_id BIGINT PRIMARY KEY,
    handled_at BIGINT NOT NULL
);
CREATE INDEX telegram_updates_time ON telegram_updates (handled_at);

-- One-time codes that link a chat (Telegram) to an existing shop account: only their
-- SHA-256 is kept; each is used once, before it expires.
CREATE TABLE link_codes (
    code_sha256 TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_by TEXT
);
CREATE INDEX link_codes_user ON link_codes (user_id);

-- A new event kind, 'dismiss'.
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('view', 'click',
    'add_to_cart', 'purchase', 'rating', 'review', 'search', 'chat_message',
    'recommendation_shown', 'dismiss'));
