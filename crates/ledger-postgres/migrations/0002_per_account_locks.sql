-- offpay ledger, schema version 2 (PostgreSQL): no row that every committer locks.
--
-- Version 1 handed out sequence numbers from ledger_state.next_sequence under that row's lock,
-- which serialised every group commit on the database, from every server process, even when
-- their accounts had nothing in common. From version 2 a group locks only the rows it touches
-- (its accounts, in id order, and the records it writes) and then draws its transfers' sequence
-- numbers from a database sequence. Drawn after the locks, a transfer's number is larger than
-- that of every transfer committed before it on the same accounts, which is what an account's
-- history needs; numbers on unrelated accounts are not in commit order and may have gaps (a
-- group that rolls back does not give its numbers back).
--
-- CACHE 1 (the default) matters: a session that cached numbers ahead could hand out a number
-- smaller than one another session already used on the same account.
CREATE SEQUENCE transfer_sequence AS BIGINT MINVALUE 1 NO CYCLE CACHE 1;
SELECT setval('transfer_sequence', next_sequence, false) FROM ledger_state;
ALTER TABLE ledger_state DROP COLUMN next_sequence;
