-- Association rules, versioned like segments: one mining run is one version, and the
-- graph and the recommender read the newest. A rule's sides are rows of
-- association_rule_items, so deleting a product takes it out of every rule (and a rule
-- that lost a product is skipped by readers).

CREATE TABLE association_rules (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL,
    support REAL NOT NULL,
    confidence REAL NOT NULL,
    lift REAL NOT NULL,
    -- Products on both sides when stored: a rule that lost one to a deletion is skipped.
    n_items BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX association_rules_version ON association_rules (version);

CREATE TABLE association_rule_items (
    rule_id BIGINT NOT NULL REFERENCES association_rules (id) ON DELETE CASCADE,
    product_id BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    -- 0: the antecedent ("who bought these"), 1: the consequent ("also bought these").
    side BIGINT NOT NULL CHECK (side IN (0, 1)),
    PRIMARY KEY (rule_id, product_id)
);
CREATE INDEX association_rule_items_product ON association_rule_items (product_id);
