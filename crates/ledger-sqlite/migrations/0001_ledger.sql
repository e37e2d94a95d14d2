-- offpay ledger, schema version 1 (SQLite).
CREATE TABLE ledger_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format_version INTEGER NOT NULL,
    next_sequence INTEGER NOT NULL
);
INSERT INTO ledger_state (id, format_version, next_sequence) VALUES (1, 1, 1);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    currency TEXT NOT NULL,
    exponent INTEGER NOT NULL,
    balance_min INTEGER,
    balance_max INTEGER,
    debits_pending INTEGER NOT NULL,
    debits_posted INTEGER NOT NULL,
    credits_pending INTEGER NOT NULL,
    credits_posted INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL
) WITHOUT ROWID;

-- sequence is the rowid: new transfers append at the end of the table's B-tree. An account's
-- history is the chain debit_previous / credit_previous walked back from accounts.last_sequence,
-- so no index on the account columns is needed (random inserts into such indexes dominated the
-- cost of a commit).
CREATE TABLE transfers (
    sequence INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    pending_id TEXT,
    pending_state TEXT,
    memo TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    debit_previous INTEGER NOT NULL,
    credit_previous INTEGER NOT NULL
);

CREATE TABLE records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
