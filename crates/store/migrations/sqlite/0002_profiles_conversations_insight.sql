-- Profiles (interests with their sources), conversations, segments, model metadata and
-- imported knowledge-graph triples.

CREATE TABLE interests (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    polarity BIGINT NOT NULL CHECK (polarity IN (-1, 1)),
    source_kind TEXT NOT NULL CHECK (source_kind IN ('event', 'review', 'chat', 'stated', 'agent')),
    source_ref TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX interests_user ON interests (user_id);
CREATE INDEX interests_subject ON interests (subject);

CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    handoff TEXT NOT NULL CHECK (handoff IN ('bot', 'waiting', 'agent', 'closed')),
    agent TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_user ON conversations (user_id);
CREATE INDEX conversations_handoff ON conversations (handoff, updated_at);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'agent', 'tool', 'system')),
    content TEXT NOT NULL,
    tool_name TEXT,
    tool_payload TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (version, key)
);

CREATE TABLE segment_members (
    segment_id BIGINT NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    score DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (segment_id, user_id)
);
CREATE INDEX segment_members_user ON segment_members (user_id);

CREATE TABLE models (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT,
    metrics TEXT,
    artifact TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE kg_triples (
    head TEXT NOT NULL,
    relation TEXT NOT NULL,
    tail TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (head, relation, tail)
);
CREATE INDEX kg_triples_tail ON kg_triples (tail);

CREATE TABLE product_entities (
    product_id BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    entity TEXT NOT NULL,
    PRIMARY KEY (product_id, entity)
);
CREATE INDEX product_entities_entity ON product_entities (entity);
