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

-- A new event kind, 'dismiss'. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt with the same rows, indexes and sequence (a seq is never reused,
-- even one whose event was deleted).
CREATE TABLE events_new (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    product_id BIGINT REFERENCES products (id),
    kind TEXT NOT NULL CHECK (kind IN ('view', 'click', 'add_to_cart', 'purchase', 'rating',
        'review', 'search', 'chat_message', 'recommendation_shown', 'dismiss')),
    value DOUBLE PRECISION,
    payload TEXT,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
INSERT INTO events_new (seq, idempotency_key, user_id, product_id, kind, value, payload, occurred_at, recorded_at)
    SELECT seq, idempotency_key, user_id, product_id, kind, value, payload, occurred_at, recorded_at FROM events;
DELETE FROM sqlite_sequence WHERE name = 'events_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events_new', seq FROM sqlite_sequence WHERE name = 'events';
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_user ON events (user_id, occurred_at);
CREATE INDEX events_product ON events (product_id, occurred_at);
CREATE INDEX events_time ON events (occurred_at);
