-- The place hierarchy is small and county-wide (a reference table when sharded).
CREATE TABLE places (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    code TEXT NOT NULL,
    community_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX places_parent ON places (parent_id, id);
CREATE INDEX places_community ON places (community_id, id);

-- Community-scoped tables lead their keys and indexes with community_id, so
-- they can be distributed by community without a schema change.
CREATE TABLE households (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    compound_id TEXT NOT NULL,
    building_id TEXT NOT NULL,
    address TEXT NOT NULL,
    external_ref TEXT NOT NULL,
    member_count BIGINT NOT NULL,
    -- Rank of the care level (1 none .. 4 intensive), kept current on every change of members.
    care_level BIGINT NOT NULL,
    visit_every_days BIGINT NOT NULL,
    care_reason TEXT NOT NULL,
    -- When the household last came under care (level above none); NULL when it is not.
    care_since BIGINT,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX households_id ON households (id);
CREATE INDEX households_care ON households (community_id, care_level, id);

CREATE TABLE residents (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    name TEXT NOT NULL,
    gender TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    phone TEXT NOT NULL,
    id_number TEXT NOT NULL,
    relation TEXT NOT NULL,
    -- ',living_alone,elderly,' so one tag matches with LIKE '%,tag,%'.
    tags TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    removed_at BIGINT,
    removed_reason TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX residents_id ON residents (id);
CREATE INDEX residents_household ON residents (community_id, household_id);
-- One person lives in one household of a community at a time.
CREATE UNIQUE INDEX residents_id_number ON residents (community_id, id_number) WHERE id_number <> '' AND removed_at IS NULL;

CREATE TABLE units (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX units_name ON units (name);

CREATE TABLE cadres (
    id TEXT NOT NULL PRIMARY KEY,
    unit_id TEXT NOT NULL,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Bumped when the cadre's registrations change; its row lock orders concurrent requests.
    version BIGINT NOT NULL
);
CREATE INDEX cadres_unit ON cadres (unit_id, id);

CREATE TABLE registrations (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    cadre_id TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    activated_at BIGINT,
    ended_at BIGINT,
    end_reason TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX registrations_id ON registrations (id);
CREATE INDEX registrations_cadre ON registrations (cadre_id, state);
CREATE INDEX registrations_state ON registrations (community_id, state, id);

CREATE TABLE pairings (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    role TEXT NOT NULL,
    cadre_id TEXT NOT NULL,
    member_name TEXT NOT NULL,
    member_phone TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX pairings_id ON pairings (id);
CREATE INDEX pairings_household ON pairings (community_id, household_id);
CREATE INDEX pairings_cadre ON pairings (cadre_id);

CREATE TABLE check_ins (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    cadre_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    activity TEXT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX check_ins_at ON check_ins (community_id, at);
CREATE INDEX check_ins_cadre ON check_ins (cadre_id, at);

CREATE TABLE visits (
    community_id TEXT NOT NULL,
    id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    cadre_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (community_id, id)
);
CREATE INDEX visits_household ON visits (community_id, household_id, at);
CREATE INDEX visits_cadre ON visits (cadre_id, id);

CREATE TABLE accounts (
    id TEXT NOT NULL PRIMARY KEY,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    community_id TEXT NOT NULL,
    cadre_id TEXT NOT NULL,
    resident_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_username ON accounts (username);
CREATE INDEX accounts_community ON accounts (community_id, id);
