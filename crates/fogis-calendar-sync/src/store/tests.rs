#![allow(clippy::unwrap_used)]

use super::*;

fn entry(message_id: Option<String>) -> LogEntry {
    LogEntry {
        at: Utc::now(),
        origin: "test".into(),
        message_id,
        outcome: "applied".into(),
        counts: None,
        detail: None,
    }
}

fn count(store: &Store, table: &str) -> i64 {
    store
        .conn
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn commit_message(store: &mut Store, id: &str) {
    let extra = CommitExtra {
        meta: vec![],
        resolve_holds: None,
    };
    let log = entry(Some(id.to_string()));
    store
        .commit(&[], &HashMap::new(), Some(id), &log, &extra)
        .unwrap();
}

#[test]
fn processed_ids_and_the_log_stay_bounded_when_pruned_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_dir(dir.path()).unwrap();
    let total = PROCESSED_KEEP + 3 * PROCESSED_PRUNE_EVERY + 5;
    // One outer transaction: the commits join it, which keeps the test fast.
    store.begin(true).unwrap();
    for i in 1..=total {
        commit_message(&mut store, &format!("m{i}"));
    }
    store.end(true).unwrap();

    let kept = count(&store, "processed_messages");
    assert!(
        (PROCESSED_KEEP..=PROCESSED_KEEP + PROCESSED_PRUNE_EVERY).contains(&kept),
        "{kept} processed ids kept"
    );
    assert!(store.is_processed(&format!("m{total}")).unwrap());
    assert!(store
        .is_processed(&format!("m{}", total - PROCESSED_KEEP + 1))
        .unwrap());
    assert!(!store.is_processed("m1").unwrap());

    let lines = count(&store, "sync_log");
    assert!(
        (LOG_KEEP..=LOG_KEEP + LOG_PRUNE_EVERY).contains(&lines),
        "{lines} log lines kept"
    );
    let newest = store.recent_log(1).unwrap();
    assert_eq!(
        newest[0].message_id.as_deref(),
        Some(format!("m{total}").as_str())
    );
}

#[test]
fn writes_join_the_open_transaction_and_go_with_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_dir(dir.path()).unwrap();

    store.begin(true).unwrap();
    commit_message(&mut store, "rolled-back");
    store.log(&entry(None)).unwrap();
    store.end(false).unwrap();
    assert!(!store.is_processed("rolled-back").unwrap());
    assert_eq!(count(&store, "sync_log"), 0);

    store.begin(true).unwrap();
    commit_message(&mut store, "kept");
    store.end(true).unwrap();
    assert!(store.is_processed("kept").unwrap());
    assert_eq!(count(&store, "sync_log"), 1);

    // Outside begin/end, each write is a transaction of its own.
    store.log(&entry(None)).unwrap();
    assert!(store.conn.is_autocommit());
    assert_eq!(count(&store, "sync_log"), 2);
}

#[test]
fn a_transaction_left_open_is_rolled_back_by_the_next_begin() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_dir(dir.path()).unwrap();
    // As if the code between begin and end had panicked.
    store.begin(true).unwrap();
    commit_message(&mut store, "abandoned");

    store.begin(true).unwrap();
    commit_message(&mut store, "next");
    store.end(true).unwrap();
    assert!(!store.is_processed("abandoned").unwrap());
    assert!(store.is_processed("next").unwrap());

    // A second connection (the CLI next to the service) sees exactly the committed state, and
    // can write once the transaction is over.
    let mut other = Store::open_dir(dir.path()).unwrap();
    assert!(other.is_processed("next").unwrap());
    assert!(!other.is_processed("abandoned").unwrap());
    other.log(&entry(None)).unwrap();
}
