-- offpay ledger, schema version 1 (PostgreSQL).
--
-- Plain types only (TEXT, BIGINT, INTEGER, BYTEA) so that the schema carries over to YugabyteDB,
-- Citus and CockroachDB. Ids and record keys are compared byte by byte (COLLATE "C"), as in
-- SQLite: listing order and prefix scans must not depend on the database's locale, and the
-- B-tree indexes then serve `LIKE 'prefix%'` directly. (CockroachDB already orders strings
-- byte by byte and refuses a column-level COLLATE "C": a CockroachDB variant of this file drops
-- those clauses and changes nothing else.)
--
-- Sequence numbers come from ledger_state.next_sequence, handed out under that row's lock, not
-- from a SERIAL/IDENTITY column: sequences are gap-free and in commit order on every engine.
CREATE TABLE ledger_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format_version INTEGER NOT NULL,
    next_sequence BIGINT NOT NULL
);
INSERT INTO ledger_state (id, format_version, next_sequence) VALUES (1, 1, 1);

-- Every group commit rewrites the accounts it touches. With room left on each page (fillfactor),
-- PostgreSQL writes the new row version beside the old one and skips the index (a HOT update):
-- measured at about a third of the cost of the update with full pages. Engines that do not use
-- heap pages (CockroachDB, YugabyteDB) accept the setting and ignore it.
CREATE TABLE accounts (
    id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    currency TEXT NOT NULL,
    exponent INTEGER NOT NULL,
    balance_min BIGINT,
    balance_max BIGINT,
    debits_pending BIGINT NOT NULL,
    debits_posted BIGINT NOT NULL,
    credits_pending BIGINT NOT NULL,
    credits_posted BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_sequence BIGINT NOT NULL
) WITH (fillfactor = 70);

-- An account's history is the chain debit_previous / credit_previous walked back from
-- accounts.last_sequence (a recursive query), so transfers need no index on their account
-- columns: such indexes took most of a group commit's time.

CREATE TABLE transfers (
    sequence BIGINT PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    debit_account TEXT COLLATE "C" NOT NULL,
    credit_account TEXT COLLATE "C" NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    pending_id TEXT COLLATE "C",
    pending_state TEXT,
    memo TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    debit_previous BIGINT NOT NULL,
    credit_previous BIGINT NOT NULL
);

CREATE TABLE records (
    namespace TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (namespace, key)
);
