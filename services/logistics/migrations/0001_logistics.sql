-- The item catalogue is county-wide and small: a reference table when sharded.
CREATE TABLE items (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    unit_of_measure TEXT NOT NULL,
    perishable BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX items_name ON items (name);

-- Everything else is community-scoped, with community_id leading its keys.
CREATE TABLE depots (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX depots_id ON depots (id);

-- The ledger is the truth; stock_levels is its running sum, changed in the
-- same transaction by guarded updates (quantity >= what is taken), so stock
-- never goes below zero however many requests or replicas take at once.
CREATE TABLE stock_movements (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    depot_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX stock_movements_depot ON stock_movements (community_id, depot_id, item_id, id);
CREATE TABLE stock_levels (
    community_id TEXT NOT NULL,
    depot_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (community_id, depot_id, item_id)
);

CREATE TABLE group_purchases (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    organiser TEXT NOT NULL,
    items_json TEXT NOT NULL,
    closes_at BIGINT NOT NULL,
    closed BIGINT NOT NULL,
    batch_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX group_purchases_id ON group_purchases (id);
CREATE TABLE orders (
    community_id TEXT NOT NULL,
    purchase_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    lines_json TEXT NOT NULL,
    total_fen BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (community_id, purchase_id, household_id)
);

CREATE TABLE batches (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    depot_id TEXT NOT NULL,
    name TEXT NOT NULL,
    bundle_json TEXT NOT NULL,
    source TEXT NOT NULL,
    households BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX batches_id ON batches (id);
CREATE TABLE deliveries (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    care_level BIGINT NOT NULL,
    cadre_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    confirmed_by TEXT NOT NULL,
    note TEXT NOT NULL,
    delivered_at BIGINT,
    lines_json TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX deliveries_id ON deliveries (id);
CREATE INDEX deliveries_batch ON deliveries (community_id, batch_id, status);

CREATE TABLE schedules (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    depot_id TEXT NOT NULL,
    name TEXT NOT NULL,
    bundle_json TEXT NOT NULL,
    recipients_json TEXT NOT NULL,
    every_days BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);

CREATE TABLE checkpoints (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    required_staff BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX checkpoints_id ON checkpoints (id);
CREATE TABLE shifts (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    cadre_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    checked_in_at BIGINT,
    checked_out_at BIGINT,
    cancelled BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX shifts_id ON shifts (id);
CREATE INDEX shifts_checkpoint ON shifts (community_id, checkpoint_id, starts_at);
CREATE INDEX shifts_cadre ON shifts (cadre_id, starts_at);
-- One row per cadre whose lock orders concurrent assignments of their shifts.
CREATE TABLE cadre_locks (
    cadre_id TEXT NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE checkpoint_log (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    shift_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    person TEXT NOT NULL,
    temperature DOUBLE PRECISION NOT NULL,
    flagged BIGINT NOT NULL,
    at BIGINT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX checkpoint_log_checkpoint ON checkpoint_log (community_id, checkpoint_id, id);

CREATE TABLE funds_entries (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    direction TEXT NOT NULL,
    category TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    reference TEXT NOT NULL,
    approver TEXT NOT NULL,
    note TEXT NOT NULL,
    at BIGINT NOT NULL,
    reverses TEXT NOT NULL,
    reversed_by TEXT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX funds_entries_id ON funds_entries (id);
