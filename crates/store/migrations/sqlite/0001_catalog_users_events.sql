-- Catalog, shoppers and behaviour events.

CREATE TABLE categories (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- A key, not an id: categories may arrive before their parents.
    parent_key TEXT
);

CREATE TABLE makers (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('author', 'brand', 'publisher')),
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (kind, key)
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT,
    maker_id BIGINT REFERENCES makers (id),
    publisher_id BIGINT REFERENCES makers (id),
    year BIGINT,
    image_url TEXT,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    currency TEXT NOT NULL,
    stock BIGINT NOT NULL,
    hidden BOOLEAN NOT NULL DEFAULT FALSE,
    attributes TEXT,
    -- Comma-separated names of generated fields ("price_cents,stock").
    synthetic_fields TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX products_maker ON products (maker_id);

CREATE TABLE product_categories (
    product_id BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category_id BIGINT NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, category_id)
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    display_name TEXT,
    location TEXT,
    age BIGINT,
    attributes TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE events (
    -- AUTOINCREMENT: a sequence number is never reused, even after deletions, so a
    -- consumer's cursor never skips or repeats an event.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    product_id BIGINT REFERENCES products (id),
    kind TEXT NOT NULL CHECK (kind IN ('view', 'click', 'add_to_cart', 'purchase', 'rating',
        'review', 'search', 'chat_message', 'recommendation_shown')),
    value DOUBLE PRECISION,
    payload TEXT,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX events_user ON events (user_id, occurred_at);
CREATE INDEX events_product ON events (product_id, occurred_at);
CREATE INDEX events_time ON events (occurred_at);

-- Where each consumer of the event stream (graph, indexes, profiles) has read up to.
CREATE TABLE consumer_cursors (
    consumer TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
