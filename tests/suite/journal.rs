//! The journal on disk: order, chain, tampering, crash snapshot, retention, size limit, dedupe, state.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use shopfloor_agent::audit::verify::verify;
use shopfloor_agent::journal::{
    Appended, Journal, JournalError, JournalOptions, NewRecord, StateUpdate, Store,
};
use shopfloor_agent::records::model::GaugeCalibration;
use shopfloor_agent::records::{
    FieldProvenance, Inspection, QualityRecord, RecordContext, RecordKind, TriggerProvenance,
};

use crate::support::{assert_schema_valid_text, tempdir};

fn ctx() -> RecordContext {
    RecordContext {
        gateway_id: "plant1-cell4-gw01".into(),
        config_sha256: "c0ffee".repeat(10) + "c0ff",
    }
}

/// An inspection record with full provenance, as the record rules will make them.
pub(crate) fn inspection(serial: &str, value: f64) -> QualityRecord {
    let mut r = QualityRecord::new(&ctx(), RecordKind::Inspection);
    r.subject.serial = Some(serial.into());
    r.subject.work_order = Some("WO-1001".into());
    r.subject.operation = Some("0040".into());
    r.inspection = Some(Inspection {
        characteristic: Some("OD-1".into()),
        value: Some(value),
        unit: Some("mm".into()),
        nominal: Some(25.0),
        lower_limit: Some(24.98),
        upper_limit: Some(25.02),
        result: Some("pass".into()),
        gauge_id: Some("MIC-0042".into()),
        inspector: None,
        gauge_calibration: Some(GaugeCalibration {
            status: "valid".into(),
            due_at: Some("2027-02-01".into()),
            record_id: None,
        }),
    });
    r.provenance.rule = Some("od_check".into());
    r.provenance.trigger = Some(TriggerProvenance {
        source: "cell4_plc".into(),
        tag: Some("part_complete".into()),
        value: json!(true),
        source_timestamp: Some(shopfloor_agent::time::now_rfc3339()),
    });
    let mut fields = BTreeMap::new();
    fields.insert(
        "inspection.value".to_string(),
        FieldProvenance {
            source: "gauge1".into(),
            protocol: "modbus".into(),
            endpoint: Some("10.1.4.30:502".into()),
            address: Some("unit=1 holding=100 f32 cdab".into()),
            raw: json!([16840, 1234]),
            source_timestamp: None,
            server_timestamp: None,
            received_at: shopfloor_agent::time::now_rfc3339(),
            quality: "good".into(),
            status: None,
        },
    );
    r.provenance.fields = fields;
    r
}

fn open(dir: &Path, tweak: impl FnOnce(&mut JournalOptions)) -> Journal {
    let mut opts = JournalOptions::new(dir);
    tweak(&mut opts);
    Journal::open(opts, ctx()).expect("open journal")
}

fn all_rows(dir: &Path) -> Vec<shopfloor_agent::journal::JournalRow> {
    Store::open_ro(dir)
        .expect("open ro")
        .read_after(i64::MIN, usize::MAX >> 1)
        .expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_gap_free_seqs_and_a_valid_chain() {
    let dir = tempdir();
    let journal = open(dir.path(), |_| {});
    let mut tasks = Vec::new();
    for t in 0..8 {
        let j = journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                let r = inspection(&format!("SN-{t}-{i}"), 25.0 + f64::from(i) / 1000.0);
                let out = j.append(vec![NewRecord::new(r)]).await.expect("append");
                seqs.push(out[0].seq());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.expect("task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one producer's records keep their order"
        );
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (1..=400).collect::<Vec<i64>>());
    journal.close().await;

    let rows = all_rows(dir.path());
    assert_eq!(rows.len(), 400);
    for r in &rows {
        assert_schema_valid_text(&r.body);
    }
    let report = verify(&Store::open_ro(dir.path()).expect("ro")).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 400);
    assert_eq!(report.head_hash, rows[399].hash);
    // prev_hash is the row before's hash, also for the first row of a read that starts mid-journal.
    assert_eq!(rows[0].prev_hash, shopfloor_agent::journal::chain::GENESIS);
    assert!(rows.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    let page = Store::open_ro(dir.path())
        .expect("ro")
        .read_range(149, 400, 10)
        .expect("page");
    assert_eq!(page.len(), 10);
    assert_eq!(page[0].seq, 150);
    assert_eq!(page[0].prev_hash, rows[148].hash);
    assert_eq!(page, rows[149..159].to_vec());
}

/// Writes a journal as schema 5 laid it out (id, captured_at and prev_hash columns, hex hashes).
fn schema5_journal(dir: &Path, n: usize) -> Vec<(String, String)> {
    use shopfloor_agent::journal::{chain, schema};
    let conn = rusqlite::Connection::open(dir.join("journal.sqlite")).expect("open");
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .expect("wal");
    for sql in &schema::MIGRATIONS[..5] {
        conn.execute_batch(sql).expect("old schema");
    }
    conn.pragma_update(None, "user_version", 5)
        .expect("version");
    let mut prev = chain::GENESIS.to_string();
    let mut out = Vec::new();
    for i in 0..n {
        let r = NewRecord::new(inspection(&format!("SN-{i}"), 25.0));
        let hash = chain::chain_hash(&prev, r.canonical.as_bytes());
        conn.execute(
            "INSERT INTO records (seq, id, kind, captured_at, appended_at, dedupe_key, body, prev_hash, hash)
             VALUES (?1, ?2, 'inspection', ?3, 1763720130123, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                i as i64 + 1,
                r.id.to_string(),
                shopfloor_agent::time::now_rfc3339(),
                format!("key-{i}"),
                r.canonical,
                prev,
                hash
            ],
        )
        .expect("old row");
        out.push((r.id.to_string(), hash.clone()));
        prev = hash;
    }
    out
}

#[tokio::test]
async fn a_schema_5_journal_is_read_as_it_is_and_migrated_with_its_chain_intact() {
    let dir = tempdir();
    let old = schema5_journal(dir.path(), 25);

    // Read-only tools (verify, status) read the old layout without changing it.
    let report = verify(&Store::open_ro(dir.path()).expect("ro")).expect("verify old");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.head_hash, old[24].1);

    // The agent migrates it: same ids, hashes and prev_hashes, dedupe keys still count, and the
    // chain grows on from the old head.
    let journal = open(dir.path(), |_| {});
    let again = NewRecord::new(inspection("SN-3", 25.0)).with_dedupe_key("key-3");
    assert_eq!(
        journal.append(vec![again]).await.expect("dup"),
        vec![Appended::Duplicate { seq: 4 }]
    );
    journal
        .append(vec![NewRecord::new(inspection("SN-new", 25.0))])
        .await
        .expect("append");
    journal.close().await;
    let store = Store::open_ro(dir.path()).expect("ro");
    let version: i64 = crate::support::journal_sql(&store)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, shopfloor_agent::journal::schema::current_version());
    let rows = all_rows(dir.path());
    assert_eq!(rows.len(), 26);
    for (row, (id, hash)) in rows.iter().zip(&old) {
        assert_eq!((&row.id, &row.hash), (id, hash));
    }
    assert_eq!(rows[25].prev_hash, old[24].1);
    let report = verify(&store).expect("verify migrated");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 26);
}

fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("journal.sqlite")).expect("open");
    conn.execute_batch("DROP TRIGGER IF EXISTS records_append_only")
        .expect("drop trigger");
    conn.execute_batch(sql).expect("tamper");
}

async fn journal_with(dir: &Path, n: usize) {
    let journal = open(dir, |_| {});
    let records = (0..n)
        .map(|i| NewRecord::new(inspection(&format!("SN-{i}"), 25.001)))
        .collect();
    journal.append(records).await.expect("append");
    journal.close().await;
}

#[tokio::test]
async fn updating_a_body_is_refused_and_tampering_is_found_at_that_seq() {
    let dir = tempdir();
    journal_with(dir.path(), 60).await;

    // The schema refuses updates outright...
    let conn = rusqlite::Connection::open(dir.path().join("journal.sqlite")).expect("open");
    let err = conn
        .execute("UPDATE records SET body = '{}' WHERE seq = 5", [])
        .expect_err("update must be refused");
    assert!(err.to_string().contains("append-only"), "{err}");
    drop(conn);

    // ...and whoever drops the trigger to change a value is caught at that seq.
    tamper(
        dir.path(),
        "UPDATE records SET body = replace(body, '25.001', '25.019') WHERE seq = 37",
    );
    let report = verify(&Store::open_ro(dir.path()).expect("ro")).expect("verify");
    let problem = report.problem.expect("tampering must be detected");
    assert_eq!(problem.seq, 37);
    assert!(problem.what.contains("altered"), "{}", problem.what);
    assert_eq!(report.checked, 36);
}

#[tokio::test]
async fn a_deleted_row_or_a_rewritten_hash_is_found() {
    let dir = tempdir();
    journal_with(dir.path(), 30).await;
    tamper(dir.path(), "DELETE FROM records WHERE seq = 12");
    let p = verify(&Store::open_ro(dir.path()).expect("ro"))
        .expect("verify")
        .problem
        .expect("deletion detected");
    assert_eq!(p.seq, 13);
    assert!(p.what.contains("missing"), "{}", p.what);

    let dir = tempdir();
    journal_with(dir.path(), 30).await;
    // A forger who edits a body and stores a made-up hash is caught at that row...
    tamper(
        dir.path(),
        "UPDATE records SET body = replace(body, 'SN-20', 'SN-99'), hash = zeroblob(32) WHERE seq = 21",
    );
    let p = verify(&Store::open_ro(dir.path()).expect("ro"))
        .expect("verify")
        .problem
        .expect("detected");
    assert_eq!(p.seq, 21);

    // ...and one who recomputes that row's hash correctly still breaks the link to the next row.
    let dir = tempdir();
    journal_with(dir.path(), 30).await;
    let conn = rusqlite::Connection::open(dir.path().join("journal.sqlite")).expect("open");
    let prev: Vec<u8> = conn
        .query_row("SELECT hash FROM records WHERE seq = 20", [], |r| r.get(0))
        .expect("seq 20");
    let body: String = conn
        .query_row("SELECT body FROM records WHERE seq = 21", [], |r| r.get(0))
        .expect("seq 21");
    let forged = body.replace("SN-20", "SN-99");
    assert_ne!(forged, body);
    let hash = shopfloor_agent::journal::chain::chain_hash_raw(
        &prev.try_into().expect("32 bytes"),
        forged.as_bytes(),
    );
    conn.execute_batch("DROP TRIGGER records_append_only")
        .expect("drop trigger");
    conn.execute(
        "UPDATE records SET body = ?1, hash = ?2 WHERE seq = 21",
        rusqlite::params![forged, &hash[..]],
    )
    .expect("forge");
    drop(conn);
    let p = verify(&Store::open_ro(dir.path()).expect("ro"))
        .expect("verify")
        .problem
        .expect("detected");
    assert_eq!(p.seq, 22, "{}", p.what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_while_running_holds_every_acknowledged_record() {
    // Copying the database and WAL at an arbitrary moment is what the disk holds after a crash.
    let dir = tempdir();
    let journal = open(dir.path(), |_| {});
    let mut acked = Vec::new();
    for i in 0..200 {
        let r = inspection(&format!("SN-{i}"), 25.0);
        let id = r.id.to_string();
        journal
            .append(vec![NewRecord::new(r)])
            .await
            .expect("append");
        acked.push(id);
    }
    let snap = tempdir();
    for name in ["journal.sqlite", "journal.sqlite-wal"] {
        std::fs::copy(dir.path().join(name), snap.path().join(name)).expect("copy");
    }
    // The running journal keeps going; the snapshot is opened as after a power cut.
    let reopened = open(snap.path(), |_| {});
    assert!(
        !reopened.startup().previous_clean,
        "an uncleanly closed journal is noticed"
    );
    assert_eq!(reopened.startup().last_seq, 200);
    reopened.close().await;
    let ids: Vec<String> = all_rows(snap.path()).into_iter().map(|r| r.id).collect();
    assert_eq!(ids, acked);
    assert!(verify(&Store::open_ro(snap.path()).expect("ro"))
        .expect("verify")
        .ok());
    journal.close().await;
}

#[tokio::test]
async fn retention_prunes_only_delivered_old_rows_and_the_chain_still_verifies() {
    let dir = tempdir();
    let journal = open(dir.path(), |o| {
        o.retention_days = 0; // everything is "old"
        o.sinks = vec!["qms".into(), "audit".into()];
    });
    journal.register_sink("qms").await.expect("register");
    journal.register_sink("audit").await.expect("register");
    let records = (0..100)
        .map(|i| NewRecord::new(inspection(&format!("SN-{i}"), 25.0)))
        .collect();
    journal.append(records).await.expect("append");
    journal.ack("qms", 80).await.expect("ack");
    journal.ack("audit", 60).await.expect("ack");
    // A dead letter at seq 50 holds retention back so it can still be re-sent.
    journal
        .dead_letter("qms", 50, "x", "HTTP 400")
        .await
        .expect("dead letter");
    crate::support::past_this_millisecond().await;
    let out = journal.prune().await.expect("prune");
    assert_eq!(
        out.pruned, 49,
        "only what every sink acknowledged, up to the open dead letter"
    );
    assert_eq!(out.checkpoint_seq, Some(49));

    let more = (0..10)
        .map(|i| NewRecord::new(inspection(&format!("SN-late-{i}"), 25.0)))
        .collect();
    journal.append(more).await.expect("append after prune");
    journal.close().await;

    let rows = all_rows(dir.path());
    assert_eq!(rows.first().map(|r| r.seq), Some(50));
    assert_eq!(rows.last().map(|r| r.seq), Some(110));
    let report = verify(&Store::open_ro(dir.path()).expect("ro")).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checkpoint.as_ref().map(|c| c.0), Some(49));
    assert_eq!(report.checked, 61);
    assert_eq!(
        Some(&rows[0].prev_hash),
        report.checkpoint.as_ref().map(|c| &c.1),
        "the first row after a prune chains from the checkpoint"
    );

    // Tampering after a prune is still found.
    tamper(
        dir.path(),
        "UPDATE records SET body = replace(body, 'SN-60', 'SN-6O') WHERE seq = 61",
    );
    let p = verify(&Store::open_ro(dir.path()).expect("ro"))
        .expect("verify")
        .problem;
    assert_eq!(p.map(|p| p.seq), Some(61));
}

/// A journal of 20 delivered records, all pruned (checkpoint at seq 20), then 5 more appended after
/// `before_append` has had its way with the file.
async fn pruned_then_appended(dir: &Path, before_append: impl FnOnce(&Path)) {
    let journal = open(dir, |o| {
        o.retention_days = 0;
        o.sinks = vec!["qms".into()];
    });
    journal.register_sink("qms").await.expect("register");
    let records = (0..20)
        .map(|i| NewRecord::new(inspection(&format!("SN-{i}"), 25.0)))
        .collect();
    journal.append(records).await.expect("append");
    journal.ack("qms", 20).await.expect("ack");
    crate::support::past_this_millisecond().await;
    let pruned = journal.prune().await.expect("prune");
    assert_eq!((pruned.pruned, pruned.checkpoint_seq), (20, Some(20)));
    journal.close().await;
    before_append(dir);
    journal_with(dir, 5).await;
}

#[tokio::test]
async fn an_altered_retention_checkpoint_is_found() {
    // Every row is pruned, so the next append chains from the checkpoint's hash.
    let check = |dir: &Path| verify(&Store::open_ro(dir).expect("ro")).expect("verify");
    let dir = tempdir();
    pruned_then_appended(dir.path(), |_| {}).await;
    let report = check(dir.path());
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.checked, report.first_seq), (5, Some(21)));

    // Changed to another hash once rows follow it: the first of them no longer chains.
    tamper(
        dir.path(),
        &format!(
            "UPDATE checkpoints SET hash = '{}' WHERE seq = 20",
            "ab".repeat(32)
        ),
    );
    let p = check(dir.path()).problem.expect("altered checkpoint");
    assert_eq!(p.seq, 21, "{}", p.what);
    assert!(p.what.contains("altered"), "{}", p.what);

    // Changed to something that is no hash before the writer chained from it: `verify` names the
    // checkpoint, and the writer chained its first row the way `verify` walks it.
    let dir = tempdir();
    pruned_then_appended(dir.path(), |d| {
        tamper(
            d,
            "UPDATE checkpoints SET hash = 'not a hash' WHERE seq = 20",
        )
    })
    .await;
    let p = check(dir.path()).problem.expect("malformed checkpoint");
    assert_eq!(p.seq, 20, "{}", p.what);
    assert!(
        p.what.contains("checkpoint's hash") && p.what.contains("not 64 hex digits"),
        "{}",
        p.what
    );
    let rows = all_rows(dir.path());
    assert_eq!(rows[0].seq, 21);
    assert_eq!(
        rows[0].hash,
        shopfloor_agent::journal::chain::chain_hash("not a hash", rows[0].body.as_bytes())
    );
}

#[tokio::test]
async fn size_limit_refuses_without_deleting_and_a_gap_marks_the_refusal() {
    let dir = tempdir();
    let journal = open(dir.path(), |o| {
        o.max_disk_bytes = 1 << 20;
        o.retention_days = 0;
        o.sinks = vec!["qms".into()];
    });
    journal.register_sink("qms").await.expect("register");
    let mut appended = 0i64;
    let mut refused = 0;
    for i in 0..5000 {
        let batch: Vec<NewRecord> = (0..10)
            .map(|j| NewRecord::new(inspection(&format!("SN-{i}-{j}"), 25.0)))
            .collect();
        match journal.append(batch).await {
            Ok(out) => appended += out.len() as i64,
            Err(JournalError::Full { reason }) => {
                assert!(reason.contains("max_disk_bytes"), "{reason}");
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(refused, 3, "the limit must be reached");
    assert!(journal.is_refusing());
    assert_eq!(journal.refused_total(), 30);
    // The size is not read before every commit, but the limit holds within a group's worth.
    let used = Store::open_ro(dir.path())
        .expect("ro")
        .used_bytes()
        .expect("size");
    assert!(
        ((1 << 20)..(1 << 20) + (1 << 17)).contains(&used),
        "{used} bytes used for a limit of 1 MiB"
    );
    // Nothing undelivered was deleted.
    assert_eq!(
        Store::open_ro(dir.path())
            .expect("ro")
            .head()
            .expect("head")
            .seq,
        appended
    );
    assert_eq!(journal.prune().await.expect("prune").pruned, 0);

    // Delivery and retention free space; the next append succeeds behind a gap record.
    journal.ack("qms", appended).await.expect("ack");
    crate::support::past_this_millisecond().await;
    assert_eq!(
        journal.prune().await.expect("prune").pruned as i64,
        appended
    );
    let out = journal
        .append(vec![NewRecord::new(inspection("SN-after", 25.0))])
        .await
        .expect("append after space was freed");
    assert!(!journal.is_refusing());
    assert_eq!(out[0].seq(), appended + 2, "the gap record comes first");
    journal.close().await;

    let rows = all_rows(dir.path());
    let gap: serde_json::Value = serde_json::from_str(&rows[0].body).expect("json");
    assert_eq!(gap["kind"], "gap");
    assert_eq!(gap["gap"]["source"], "journal");
    let reason = gap["gap"]["reason"].as_str().expect("reason");
    assert!(reason.contains("refused 30 records"), "{reason}");
    assert_schema_valid_text(&rows[0].body);
    assert!(verify(&Store::open_ro(dir.path()).expect("ro"))
        .expect("verify")
        .ok());
}

#[tokio::test]
async fn a_full_disk_is_an_error_not_a_crash_and_leaves_no_corruption() {
    let dir = tempdir();
    let journal = open(dir.path(), |o| o.max_page_count = Some(60));
    let mut full = false;
    let mut appended = 0;
    for i in 0..2000 {
        match journal
            .append(vec![NewRecord::new(inspection(&format!("SN-{i}"), 25.0))])
            .await
        {
            Ok(_) => appended += 1,
            Err(JournalError::Full { reason }) => {
                assert_eq!(reason, "disk full");
                full = true;
                break;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(full, "the page cap must be reached");
    assert!(journal.is_refusing());
    journal.close().await;
    let store = Store::open_ro(dir.path()).expect("ro");
    let check: String = crate::support::journal_sql(&store)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(check, "ok");
    assert_eq!(store.head().expect("head").seq, appended);
    assert!(verify(&store).expect("verify").ok());
}

#[tokio::test]
async fn dedupe_keys_keep_one_record_per_physical_event() {
    let dir = tempdir();
    let journal = open(dir.path(), |_| {});
    let a = NewRecord::new(inspection("SN-1", 25.0)).with_dedupe_key("SN-1/OD-1");
    let b = NewRecord::new(inspection("SN-1", 25.0)).with_dedupe_key("SN-1/OD-1");
    let c = NewRecord::new(inspection("SN-2", 25.0)).with_dedupe_key("SN-2/OD-1");
    let out = journal.append(vec![a, b, c]).await.expect("append");
    assert_eq!(
        out,
        vec![
            Appended::New { seq: 1 },
            Appended::Duplicate { seq: 1 },
            Appended::New { seq: 2 }
        ]
    );
    let again = NewRecord::new(inspection("SN-1", 25.0)).with_dedupe_key("SN-1/OD-1");
    assert_eq!(
        journal.append(vec![again]).await.expect("append"),
        vec![Appended::Duplicate { seq: 1 }]
    );
    journal.close().await;
    assert_eq!(all_rows(dir.path()).len(), 2);
    // The lookup uses the partial unique index (records without a key stay out of it).
    let store = Store::open_ro(dir.path()).expect("ro");
    let plan: String = crate::support::journal_sql(&store)
        .query_row(
            "EXPLAIN QUERY PLAN SELECT seq FROM records WHERE dedupe_key = 'x'",
            [],
            |r| r.get(3),
        )
        .expect("plan");
    assert!(plan.contains("records_dedupe"), "{plan}");
    assert!(verify(&Store::open_ro(dir.path()).expect("ro"))
        .expect("verify")
        .ok());
}

#[tokio::test]
async fn source_state_is_committed_with_its_records() {
    let dir = tempdir();
    let journal = open(dir.path(), |_| {});
    journal
        .append_with_state(
            vec![NewRecord::new(inspection("SN-1", 25.0))],
            vec![StateUpdate {
                source: "erp".into(),
                key: "watermark:WorkOrders".into(),
                value: "2026-11-21T10:00:00Z".into(),
            }],
        )
        .await
        .expect("append");
    journal.close().await;
    let reopened = open(dir.path(), |_| {});
    assert!(reopened.startup().previous_clean);
    reopened.close().await;
    let state = Store::open_ro(dir.path())
        .expect("ro")
        .source_state(Some("erp"))
        .expect("state");
    assert_eq!(state.len(), 1);
    assert_eq!(state[0].1, "watermark:WorkOrders");
    assert_eq!(state[0].2, "2026-11-21T10:00:00Z");
}

/// A file's length, 0 while it does not exist.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `n` records of ~600 bytes, labelled `{label} record {i}`.
fn padded_records(ctx: &RecordContext, n: usize, label: &str) -> Vec<NewRecord> {
    (0..n)
        .map(|i| {
            NewRecord::new(shopfloor_agent::journal::loadgen::padded_record(
                ctx,
                600,
                &format!("{label} record {i}"),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_folded_into_the_database_while_the_journal_runs() {
    // The writer's commits do not checkpoint (SQLite's automatic checkpoint is handed to a thread
    // beside it): after ~4 MB of WAL frames (1,000 pages of 4 KiB, 250 of 16 KiB) that thread must
    // have copied them into the database, with the journal still open (closing folds the WAL
    // anyway).
    for page_size in [4096, 16384] {
        wal_folded_while_running(page_size).await;
    }
}

async fn wal_folded_while_running(page_size: u32) {
    let dir = tempdir();
    let journal = open(dir.path(), |o| o.page_size = page_size);
    let ctx = ctx();
    for b in 0..24 {
        let records = padded_records(&ctx, 500, &format!("batch {b}"));
        journal.append(records).await.expect("append");
    }
    let db = dir.path().join("journal.sqlite");
    let wal = dir.path().join("journal.sqlite-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while file_len(&db) < 4 << 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        file_len(&db) >= 4 << 20,
        "{page_size}-byte pages: 12,000 records (~7 MB) appended, yet the database file holds {} bytes: no checkpoint ran",
        file_len(&db)
    );
    assert!(
        file_len(&wal) <= 20 << 20,
        "the WAL grew to {} bytes",
        file_len(&wal)
    );
    journal.close().await;
    assert_eq!(all_rows(dir.path()).len(), 12_000);
    let report = verify(&Store::open_ro(dir.path()).expect("ro")).expect("verify");
    assert!(report.ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_while_producers_never_pause() {
    // A checkpoint beside a writer that commits without pause never copies the whole WAL, so the
    // WAL would never start over: past its backstop (~16 MB of frames: 4,000 of 4 KiB, 1,000 of
    // 16 KiB) the writer checkpoints in place. Four producers append ~60,000 records (~40 MB of WAL
    // frames) back to back while the WAL's size is sampled; without the backstop it grows past
    // 40 MB.
    for page_size in [4096, 16384] {
        wal_bounded_without_pause(page_size).await;
    }
}

async fn wal_bounded_without_pause(page_size: u32) {
    let dir = tempdir();
    let journal = open(dir.path(), |o| o.page_size = page_size);
    let wal = dir.path().join("journal.sqlite-wal");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut largest = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                largest = largest.max(file_len(&wal));
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            largest
        })
    };
    let ctx = ctx();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let journal = journal.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for b in 0..60 {
                    let records = padded_records(&ctx, 250, &format!("producer {p} batch {b}"));
                    journal.append(records).await.expect("append");
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let largest = sampler.join().expect("sampler");
    assert!(
        largest <= 24 << 20,
        "{page_size}-byte pages: the WAL grew to {largest} bytes while 60,000 records were appended without pause"
    );
    journal.close().await;
    assert_eq!(all_rows(dir.path()).len(), 60_000);
    let report = verify(&Store::open_ro(dir.path()).expect("ro")).expect("verify");
    assert!(report.ok(), "{report:?}");
}

/// Opens the journal in `dir` asking for `page_size`, appends 200 records and closes it; returns
/// the journal's page size as SQLite reads it afterwards.
async fn append_with_page_size(dir: &Path, page_size: u32, label: &str) -> u32 {
    let journal = open(dir, |o| o.page_size = page_size);
    journal
        .append(padded_records(&ctx(), 200, label))
        .await
        .unwrap_or_else(|e| panic!("append {label}: {e}"));
    journal.close().await;
    Store::open_ro(dir)
        .expect("ro")
        .page_size()
        .expect("page size")
}

fn assert_whole(dir: &Path, records: usize) {
    assert_eq!(all_rows(dir).len(), records);
    let report = verify(&Store::open_ro(dir).expect("ro")).expect("verify");
    assert!(report.ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_is_made_with_the_configured_page_size_and_keeps_it() {
    // `journal.page_size_bytes` makes the pages of a new journal; an existing journal keeps its
    // own (SQLite cannot change it in WAL mode) and goes on working with the chain intact.
    let dir = tempdir();
    assert_eq!(
        append_with_page_size(dir.path(), 16384, "made").await,
        16384
    );
    assert_eq!(
        append_with_page_size(dir.path(), 4096, "reopened").await,
        16384,
        "an existing journal keeps its pages"
    );
    assert_whole(dir.path(), 400);

    // The default stays SQLite's own, and the README's conversion (the agent stopped) changes the
    // pages of a journal and nothing else: the chain verifies and the journal goes on.
    let other = tempdir();
    let default = shopfloor_agent::journal::DEFAULT_PAGE_SIZE;
    assert_eq!(
        append_with_page_size(other.path(), default, "before").await,
        4096
    );
    rusqlite::Connection::open(other.path().join("journal.sqlite"))
        .expect("sqlite")
        .execute_batch(
            "PRAGMA journal_mode=DELETE; PRAGMA page_size=16384; VACUUM; PRAGMA journal_mode=WAL;",
        )
        .expect("the README's conversion");
    assert_eq!(
        append_with_page_size(other.path(), 16384, "after").await,
        16384
    );
    assert_whole(other.path(), 400);
}
