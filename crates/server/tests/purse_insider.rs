//! The purse book's database insider, end to end on each backend (short-code-purse.md §14,
//! attacker 7): a database administrator's real SQL `UPDATE` (clearing a block in a shadow and
//! the book header) and `INSERT` (an open debit the operator never wrote) are refused by the
//! next operation that loads them — 409 `record_tampered`, nothing posted, the records named in
//! the fraud queue, the holder not accused — and an earlier release's unsealed book is sealed
//! once at start, while one unsealed record beside sealed ones without the marker is not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::http::StatusCode;
use offpay_ledger::{AccountId, Timestamp};
use offpay_operator::{FraudFlag, ManualClock, SeededEntropy};
use offpay_purse::seal::{self, SealStage};
use offpay_purse::{Outcome, Phone, Pin, Provisioning, Purse, PurseKind};
use offpay_server::error::ApiError;
use offpay_server::{AppState, Inputs, Server};
use offpay_test_support::Backend;
use serde_json::json;

use common::{config, copy_data_dir};

const START_MS: u64 = 1_790_000_000_000;
const ACCOMPLICE: &str = "+254700000001";
const AGENT: &str = "+254700000002";

/// One start of the server over the run's one database (a SQLite file under `root`, or the
/// backend's PostgreSQL database), with data directory `root/data-<n>` (a copy of the previous
/// start's keys: a server in this process holds its directory's lock until the process ends).
struct Node {
    state: Arc<AppState>,
    token: String,
}

async fn start(root: &Path, start: usize, backend: &Backend) -> Node {
    let data = root.join(format!("data-{start}"));
    if start > 0 {
        copy_data_dir(&root.join(format!("data-{}", start - 1)), &data);
    }
    let config = config(root, &data, backend);
    let server = Server::start_with(
        config.clone(),
        Inputs {
            clock: Arc::new(ManualClock::new(Timestamp(START_MS))),
            entropy: Arc::new(SeededEntropy::from_seed(5)),
        },
    )
    .await
    .expect("the server starts");
    let token = std::fs::read_to_string(config.token_path())
        .unwrap()
        .trim()
        .to_owned();
    Node {
        state: server.state(),
        token,
    }
}

/// Runs `sql` on the run's database as its administrator would: the `sqlite3` or `psql` client,
/// beside the running server.
fn dba(root: &Path, backend: &Backend, sql: &str) {
    let status = match backend.database_url() {
        None => Command::new("sqlite3")
            .arg("-bail")
            .arg("-cmd")
            .arg(".timeout 10000")
            .arg(root.join("ledger.sqlite"))
            .arg(sql)
            .status(),
        Some(url) => Command::new("psql")
            .arg(url)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .status(),
    }
    .expect("the database's command-line client");
    assert!(status.success(), "{sql}");
}

/// SQL replacing `from` by `to` in the text of purse record `key` (bumping its version, as any
/// write would).
fn replace_sql(backend: &Backend, key: &str, from: &str, to: &str) -> String {
    let value = if backend.database_url().is_none() {
        format!("CAST(replace(CAST(value AS TEXT), '{from}', '{to}') AS BLOB)")
    } else {
        format!("convert_to(replace(convert_from(value, 'UTF8'), '{from}', '{to}'), 'UTF8')")
    };
    format!(
        "UPDATE records SET value = {value}, version = version + 1 \
         WHERE namespace = 'purse' AND key = '{key}'"
    )
}

fn text(backend: &Backend, text: &str) -> String {
    if backend.database_url().is_none() {
        format!("CAST('{text}' AS BLOB)")
    } else {
        format!("convert_to('{text}', 'UTF8')")
    }
}

impl Node {
    fn now(&self) -> offpay_ledger::Timestamp {
        self.state.now()
    }

    async fn provision(&self, number: &str, kind: PurseKind) -> Purse {
        let provisioned = self
            .state
            .rails
            .purse
            .provision(
                &self.state.ledger,
                Phone::parse(number).unwrap(),
                kind,
                self.now(),
            )
            .await
            .unwrap();
        Purse::provision(
            &Provisioning::decode(&provisioned.provisioning).unwrap(),
            Pin::parse("1234").unwrap(),
        )
    }

    /// A full sync of `purse`, or the server's error as the API answers it.
    async fn sync(&self, purse: &mut Purse) -> Result<(), ApiError> {
        let Outcome::SyncUpload { upload, .. } =
            purse.start_sync(offpay_purse::Timestamp(START_MS / 1000))
        else {
            panic!("a sync upload")
        };
        let reply = self
            .state
            .rails
            .purse
            .sync(&self.state.ledger, &upload, self.now())
            .await
            .map_err(ApiError::from)?;
        purse.apply_answer(&reply.answer).unwrap();
        Ok(())
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        self.post_as(&self.token, path, body).await
    }

    async fn post_as(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        use axum::body::Body;
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let request = axum::http::Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = offpay_server::router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    async fn balances(&self) -> Vec<i64> {
        let ids = [
            "operator:float",
            "operator:suspense",
            &format!("purse:{ACCOMPLICE}"),
            &format!("purse:{AGENT}"),
        ]
        .map(|id| AccountId::new(id).unwrap());
        self.state
            .ledger
            .read(move |store| {
                ids.iter()
                    .map(|id| Ok(store.account(id)?.map_or(0, |account| account.balance())))
                    .collect()
            })
            .await
            .unwrap()
    }

    async fn flags(&self, kind: &'static str) -> Vec<FraudFlag> {
        self.state
            .ledger
            .read(move |store| {
                Ok(store
                    .records(offpay_operator::fraud::NAMESPACE, "", None, 1000)?
                    .into_iter()
                    .filter_map(|record| serde_json::from_slice::<FraudFlag>(&record.value).ok())
                    .filter(|flag| flag.kind == kind)
                    .collect())
            })
            .await
            .unwrap()
    }

    /// The digest of the bytes stored under purse record `key`, as a fraud case shows it.
    async fn digest(&self, key: &str) -> String {
        let key = key.to_owned();
        let stored = self
            .state
            .ledger
            .read(move |store| {
                Ok(store
                    .record(offpay_purse::book::NAMESPACE, &key)?
                    .unwrap()
                    .value)
            })
            .await
            .unwrap();
        seal::stored_digest(&stored)
    }

    async fn shadow_key(&self, number: &'static str) -> String {
        let id = self
            .state
            .ledger
            .read(move |store| {
                Ok(store
                    .record(offpay_purse::book::NAMESPACE, &format!("phone/{number}"))?
                    .unwrap()
                    .value)
            })
            .await
            .unwrap();
        format!(
            "shadow/{}",
            String::from_utf8(seal::content(&id).to_vec()).unwrap()
        )
    }

    async fn marker(&self) -> Option<seal::SealedMarker> {
        let sealer = self.state.rails.purse.sealer().clone();
        let (_, stored) = self.state.ledger.read(seal::load_marker).await.unwrap();
        seal::authentic_marker(stored.as_deref(), &sealer)
    }
}

#[tokio::test]
async fn a_dbas_update_and_insert_are_refused_flagged_and_move_nothing() {
    for backend in Backend::all("purse insider") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let node = start(root, 0, &backend).await;
        let mut agent = node.provision(AGENT, PurseKind::Agent).await;
        let mut accomplice = node.provision(ACCOMPLICE, PurseKind::Customer).await;
        node.sync(&mut agent).await.unwrap();
        node.sync(&mut accomplice).await.unwrap();
        let (status, body) = node
            .post(
                &format!("/api/v1/purse/purses/{ACCOMPLICE}/block"),
                json!({ "blocked": true }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        node.sync(&mut accomplice).await.unwrap();
        assert!(accomplice.is_blocked());
        let before = node.balances().await;

        // UPDATE: the block cleared in the shadow and the header.
        let shadow = node.shadow_key(ACCOMPLICE).await;
        dba(
            root,
            &backend,
            &replace_sql(&backend, &shadow, "\"blocked\":true", "\"blocked\":false"),
        );
        dba(
            root,
            &backend,
            &replace_sql(
                &backend,
                "book",
                // The header keeps blocked phones as numbers.
                &format!("\"blocked\":[{}]", ACCOMPLICE.trim_start_matches('+')),
                "\"blocked\":[]",
            ),
        );
        let refused = node.sync(&mut accomplice).await.unwrap_err();
        assert_eq!(
            (refused.status, refused.code.as_str()),
            (StatusCode::CONFLICT, "record_tampered"),
            "{}",
            refused.message
        );
        assert!(refused.message.contains(&shadow), "{}", refused.message);
        assert!(accomplice.is_blocked(), "the DBA unblocked the purse");
        // The operator's own request over the edited records: refused alike, over HTTP.
        let (status, body) = node
            .post(
                &format!("/api/v1/purse/purses/{ACCOMPLICE}/float"),
                json!({ "amount": "200" }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "record_tampered", "{body}");
        assert_eq!(node.balances().await, before, "a refusal moved money");
        let flags = node.flags("record_tampered").await;
        let subjects: Vec<&str> = flags.iter().map(|flag| flag.subject.as_str()).collect();
        assert!(
            subjects.contains(&"book") && subjects.contains(&shadow.as_str()),
            "{subjects:?}"
        );
        assert!(flags.iter().all(|flag| flag.rail == "purse"));
        assert!(
            node.flags("record_tampered")
                .await
                .iter()
                .all(|flag| flag.subject != ACCOMPLICE),
            "the holder is accused"
        );

        // INSERT: an open debit the operator never wrote, under the agent's prefix (every sync
        // of the agent scans it).
        let key = format!("debits/{AGENT}/{ACCOMPLICE}");
        dba(
            root,
            &backend,
            &format!(
                "INSERT INTO records (namespace, key, value, version) VALUES ('purse', '{key}', {}, 1)",
                text(&backend, "[]")
            ),
        );
        let refused = node.sync(&mut agent).await.unwrap_err();
        assert_eq!(refused.code, "record_tampered", "{}", refused.message);
        assert!(refused.message.contains(&key), "{}", refused.message);
        assert!(
            node.flags("record_tampered")
                .await
                .iter()
                .any(|flag| flag.subject == key)
        );
        assert_eq!(node.balances().await, before);
    }
}

#[tokio::test]
async fn an_earlier_releases_purse_book_is_sealed_once_at_start() {
    for backend in Backend::all("purse record sealing at start") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let mut accomplice;
        {
            let node = start(root, 0, &backend).await;
            let marker = node
                .marker()
                .await
                .expect("the first start writes the marker");
            assert_eq!(marker.stage, SealStage::Done);
            accomplice = node.provision(ACCOMPLICE, PurseKind::Customer).await;
            node.sync(&mut accomplice).await.unwrap();
        }
        // An earlier release's database: every seal removed (the content after the prefix, the
        // MAC and its newline), no marker.
        let strip = |condition: &str| {
            let content = if backend.database_url().is_none() {
                "substr(value, 77)"
            } else {
                "substring(value from 77)"
            };
            format!(
                "UPDATE records SET value = {content}, version = version + 1 \
                 WHERE namespace = 'purse' AND {condition}"
            )
        };
        let sealed = if backend.database_url().is_none() {
            "CAST(substr(value, 1, 11) AS TEXT) = '#sealed-v1:'"
        } else {
            "convert_from(substring(value from 1 for 11), 'UTF8') = '#sealed-v1:'"
        };
        let no_marker =
            "DELETE FROM records WHERE namespace = 'purse' AND key = 'cfg:records-sealed'";
        dba(
            root,
            &backend,
            &strip(&format!("{sealed} AND key <> 'cfg:records-sealed'")),
        );
        dba(root, &backend, no_marker);
        {
            let node = start(root, 1, &backend).await;
            let marker = node.marker().await.expect("sealed at start");
            assert_eq!(marker.stage, SealStage::Done);
            assert!(marker.tally.missing >= 4, "{marker:?}");
            node.sync(&mut accomplice).await.unwrap();
        }
        // One shadow stripped and the marker removed: the start seals nothing, and the shadow
        // stays refused.
        let shadow = {
            let node = start(root, 2, &backend).await;
            node.shadow_key(ACCOMPLICE).await
        };
        dba(root, &backend, &strip(&format!("key = '{shadow}'")));
        dba(root, &backend, no_marker);
        let node = start(root, 3, &backend).await;
        assert!(node.marker().await.is_none());
        let refused = node.sync(&mut accomplice).await.unwrap_err();
        assert_eq!(refused.code, "record_tampered", "{}", refused.message);
        assert!(
            node.flags("record_tampered")
                .await
                .iter()
                .any(|flag| flag.subject == shadow)
        );
    }
}

const RESEAL: &str = "/api/v1/purse/records/reseal";

/// The repair path: a record a DBA re-wrote (here the same shadow with its JSON re-spaced, as a
/// restore through another tool would) is refused; the admin checks it and re-seals it, naming
/// the digest of the bytes checked, and the purse syncs again, while the `record_tampered` case
/// stays in the fraud queue. A repair of a key that is not a purse-book record, of an absent
/// one, with a malformed digest, without `force`, or of a record the DBA edited again after the
/// check, changes nothing; a role other than admin is refused.
#[tokio::test]
async fn an_admin_reseals_a_checked_record_and_nothing_else() {
    for backend in Backend::all("purse reseal") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let node = start(root, 0, &backend).await;
        let mut accomplice = node.provision(ACCOMPLICE, PurseKind::Customer).await;
        node.sync(&mut accomplice).await.unwrap();
        let shadow = node.shadow_key(ACCOMPLICE).await;
        dba(
            root,
            &backend,
            &replace_sql(&backend, &shadow, "\"blocked\":false", "\"blocked\": false"),
        );
        let refused = node.sync(&mut accomplice).await.unwrap_err();
        assert_eq!(refused.code, "record_tampered", "{}", refused.message);
        let cases = node.flags("record_tampered").await;
        assert_eq!(cases.len(), 1, "{cases:?}");
        let checked = cases[0].evidence["stored_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(checked, node.digest(&shadow).await);
        // Said plainly, with the way out, naming the bytes the case shows.
        assert!(
            refused
                .message
                .starts_with("record tampered: see fraud case")
                && refused.message.contains(&format!(
                    "offpay admin purse reseal {shadow}={checked} --force"
                )),
            "{}",
            refused.message
        );
        let book = node.digest("book").await;
        let records = |keys: &[&str]| {
            keys.iter()
                .map(|key| {
                    let digest = if *key == shadow {
                        checked.clone()
                    } else if *key == "book" {
                        book.clone()
                    } else {
                        "0123456789abcdef0123456789abcdef".to_owned()
                    };
                    json!({ "key": key, "stored_digest": digest })
                })
                .collect::<Vec<_>>()
        };

        // Refused, nothing written: without force, a key outside the book, an absent one, the
        // seal marker, an SMS part, a malformed digest, a role without the right.
        let support = {
            let (status, body) = node
                .post(
                    "/api/v1/users",
                    json!({ "name": "clerk", "role": "support" }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["token"].as_str().unwrap().to_owned()
        };
        let (status, body) = node
            .post_as(
                &support,
                RESEAL,
                json!({ "records": records(&[&shadow]), "force": true }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = node
            .post(
                RESEAL,
                json!({ "records": records(&[&shadow]), "force": false }),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("force_required")),
            "{body}"
        );
        for (records, code) in [
            (
                records(&[&shadow, "smsin/+254700000001/7"]),
                "not_a_purse_record",
            ),
            (records(&[seal::MARKER_KEY]), "not_a_purse_record"),
            (records(&["statement/1"]), "not_a_purse_record"),
            (records(&["elsewhere"]), "not_a_purse_record"),
            (records(&[&shadow, "shadow/999"]), "record_not_found"),
            (records(&[&shadow, &shadow]), "invalid_keys"),
            (records(&[]), "invalid_keys"),
            (
                vec![json!({ "key": shadow, "stored_digest": checked[..15] })],
                "invalid_digest",
            ),
        ] {
            let (status, body) = node
                .post(RESEAL, json!({ "records": records, "force": true }))
                .await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{records:?}: {body}"
            );
        }
        let refused = node.sync(&mut accomplice).await.unwrap_err();
        assert_eq!(
            refused.code, "record_tampered",
            "a refused repair re-sealed"
        );

        // The DBA edits the record again after the admin checked it: the repair naming the
        // checked bytes is refused whole (the book beside it is not touched either), nothing
        // is sealed, and the purse stays refused.
        dba(
            root,
            &backend,
            &replace_sql(
                &backend,
                &shadow,
                "\"blocked\": false",
                "\"blocked\":  false",
            ),
        );
        let (status, body) = node
            .post(
                RESEAL,
                json!({ "records": records(&[&shadow, "book"]), "force": true }),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                Some("record_changed_since_checked")
            ),
            "{body}"
        );
        assert_eq!(node.digest("book").await, book, "the book was written");
        let refused = node.sync(&mut accomplice).await.unwrap_err();
        assert_eq!(
            refused.code, "record_tampered",
            "bytes edited after the check were re-sealed"
        );
        // The new bytes raised their own case; the admin checks them and re-seals those.
        let cases = node.flags("record_tampered").await;
        assert_eq!(cases.len(), 2, "{cases:?}");
        let rechecked = node.digest(&shadow).await;
        assert!(
            cases
                .iter()
                .any(|case| case.evidence["stored_digest"] == json!(rechecked)),
            "{cases:?}"
        );
        assert!(refused.message.contains(&format!("{shadow}={rechecked}")));

        // The repair: the shadow only; the book header was never touched.
        let repair = json!({
            "records": [
                { "key": shadow, "stored_digest": rechecked },
                { "key": "book", "stored_digest": book },
            ],
            "force": true,
        });
        let (status, body) = node.post(RESEAL, repair.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["resealed"], json!([shadow]), "{body}");
        assert_eq!(body["already_sealed"], json!(["book"]), "{body}");
        node.sync(&mut accomplice).await.unwrap();
        let after = node.flags("record_tampered").await;
        assert_eq!(
            after.iter().map(|flag| &flag.subject).collect::<Vec<_>>(),
            cases.iter().map(|flag| &flag.subject).collect::<Vec<_>>(),
            "a case left the fraud queue, or a new one was raised"
        );
        // Once sealed, the stored bytes are new: the old digest no longer names them.
        let (status, body) = node.post(RESEAL, repair).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (
                StatusCode::BAD_REQUEST,
                Some("record_changed_since_checked")
            ),
            "{body}"
        );
        let sealed = node.digest(&shadow).await;
        let (status, body) = node
            .post(
                RESEAL,
                json!({ "records": [{ "key": shadow, "stored_digest": sealed }], "force": true }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["resealed"], json!([]), "{body}");
    }
}

/// The sweep of SMS assemblies: a half-received message abandoned past its 24 hours is removed,
/// one still within them is kept, and a second run finds nothing more to remove.
#[tokio::test]
async fn the_sweep_removes_abandoned_sms_parts_after_their_expiry_and_keeps_live_ones() {
    use offpay_purse::params::SMS_ASSEMBLY_SECONDS_MAX;
    use offpay_purse::sms_book::{self, PartOutcome};
    use offpay_purse::sync::SmsPart;
    for backend in Backend::all("purse sms sweep") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let node = start(root, 0, &backend).await;
        let rail = &node.state.rails.purse;
        let ledger = &node.state.ledger;
        let part = |message_id| SmsPart {
            message_id,
            index: 1,
            total: 2,
            chunk: "AAAA".to_owned(),
        };
        let expiry_ms = SMS_ASSEMBLY_SECONDS_MAX * 1000;
        let abandoned_at = node.now();
        let live_at = Timestamp(abandoned_at.0 + expiry_ms - 60_000);
        let sweep_at = Timestamp(abandoned_at.0 + expiry_ms);
        let agent = Phone::parse(AGENT).unwrap();
        let accomplice = Phone::parse(ACCOMPLICE).unwrap();
        let (outcome, ..) = rail
            .sms_part(ledger, agent, &part(7), true, abandoned_at)
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                PartOutcome::Stored {
                    received: 1,
                    total: 2
                }
            ),
            "{outcome:?}"
        );
        rail.sms_part(ledger, agent, &part(9), true, abandoned_at)
            .await
            .unwrap();
        rail.sms_part(ledger, accomplice, &part(8), true, live_at)
            .await
            .unwrap();
        let stored = || async {
            ledger
                .read(|store| {
                    Ok(store
                        .records(
                            offpay_purse::book::NAMESPACE,
                            sms_book::SMS_ASSEMBLY_PREFIX,
                            None,
                            100,
                        )?
                        .into_iter()
                        .map(|record| record.key)
                        .collect::<Vec<_>>())
                })
                .await
                .unwrap()
        };
        let abandoned = [7, 9].map(|id| sms_book::assembly_key(agent, id));
        let live = sms_book::assembly_key(accomplice, 8);
        assert_eq!(
            stored().await,
            [std::slice::from_ref(&live), &abandoned].concat()
        );

        // Just before its expiry the abandoned one is kept too.
        let early = rail
            .sweep_sms_assemblies(ledger, Timestamp(sweep_at.0 - 1))
            .await
            .unwrap();
        assert_eq!((early.removed, early.kept), (0, 3), "{early:?}");
        let swept = rail.sweep_sms_assemblies(ledger, sweep_at).await.unwrap();
        assert_eq!(
            (swept.removed, swept.kept, swept.unreadable),
            (2, 1, 0),
            "{swept:?}"
        );
        assert_eq!(stored().await, vec![live.clone()]);
        let again = rail.sweep_sms_assemblies(ledger, sweep_at).await.unwrap();
        assert_eq!((again.removed, again.kept), (0, 1), "{again:?}");
        // Past its own expiry the other one goes too.
        let last = rail
            .sweep_sms_assemblies(ledger, Timestamp(live_at.0 + expiry_ms))
            .await
            .unwrap();
        assert_eq!((last.removed, last.kept), (1, 0), "{last:?}");
        assert!(stored().await.is_empty());
    }
}
