use super::*;
use crate::envelope::{MessageForm, Meta, Snapshot};

fn update(id: &str) -> MatchUpdate {
    MatchUpdate {
        channel: "c".into(),
        snapshot: Snapshot {
            meta: Meta {
                message_id: Some(id.into()),
                ..Meta::default()
            },
            form: MessageForm::Flat,
            matches: vec![],
            rejected: vec![],
            has_changes: None,
            metadata: serde_json::Value::Null,
        },
        received_at: Utc::now(),
        replay: false,
    }
}

fn decoded(seq: u64, id: &str) -> SlotItem {
    SlotItem::Update(seq, update(id))
}

fn raw(seq: u64) -> SlotItem {
    let msg = crate::subscriber::conn::Message {
        channel: "c".into(),
        payload: bytes::Bytes::from_static(b"{}"),
    };
    let raw = RawPayload {
        seq,
        msg,
        received_at: Utc::now(),
    };
    assert_eq!((raw.channel(), raw.payload()), ("c", &b"{}"[..]));
    SlotItem::Raw(raw)
}

fn seqs(work: Option<Work>) -> (u64, Vec<u64>) {
    match work {
        Some(Work::Slot(newest, fallbacks)) => {
            (newest.seq(), fallbacks.iter().map(SlotItem::seq).collect())
        }
        other => panic!("expected the slot, got {other:?}"),
    }
}

#[test]
fn newest_snapshot_wins_and_events_come_first() {
    let inbox = Inbox::default();
    assert!(inbox.put(decoded(1, "a")).is_empty());
    assert_eq!(inbox.put(decoded(2, "b")), vec![1]);
    inbox.connected(false);
    inbox.connected(true);
    inbox.connected(false);
    assert!(matches!(inbox.take(), Some(Work::Connected(true))));
    match inbox.take() {
        Some(Work::Slot(SlotItem::Update(2, u), fallbacks)) if fallbacks.is_empty() => {
            assert_eq!(u.snapshot.meta.message_id.as_deref(), Some("b"))
        }
        other => panic!("expected the newest snapshot, got {other:?}"),
    }
    assert!(inbox.take().is_none());
}

#[test]
fn a_raw_payload_keeps_what_it_replaced_as_fallbacks() {
    let inbox = Inbox::default();
    assert!(inbox.put(decoded(1, "a")).is_empty());
    assert!(inbox.put(raw(2)).is_empty(), "1 may still be needed");
    assert_eq!(seqs(inbox.take()), (2, vec![1]));

    for seq in 3..=(3 + FALLBACKS as u64) {
        assert!(inbox.put(raw(seq)).is_empty());
    }
    let next = 4 + FALLBACKS as u64;
    assert_eq!(inbox.put(raw(next)), vec![3], "pushed out of the fallbacks");
    let (newest, fallbacks) = seqs(inbox.take());
    assert_eq!(newest, next);
    assert_eq!(
        fallbacks,
        (4..next).rev().collect::<Vec<_>>(),
        "newest first"
    );

    assert!(inbox.put(raw(20)).is_empty());
    assert!(inbox.put(raw(21)).is_empty());
    assert_eq!(
        inbox.put(decoded(22, "known")),
        vec![21, 20],
        "a decoded snapshot supersedes all"
    );
    assert_eq!(seqs(inbox.take()), (22, vec![]));
    assert!(inbox.take().is_none());
}

#[test]
fn stream_job_goes_before_the_slot_and_can_be_withdrawn() {
    let inbox = Inbox::default();
    inbox.put(decoded(1, "pubsub"));
    let (reply, _rx) = oneshot::channel();
    inbox.submit(StreamJob {
        seq: 2,
        update: update("stream"),
        reply,
    });
    assert!(matches!(inbox.take(), Some(Work::Stream(_))));
    assert!(!inbox.withdraw(), "already taken");
    let (reply, _rx) = oneshot::channel();
    inbox.submit(StreamJob {
        seq: 3,
        update: update("stream"),
        reply,
    });
    assert!(inbox.withdraw());
    assert_eq!(seqs(inbox.take()), (1, vec![]));
    assert!(inbox.put_back(decoded(1, "again")));
    assert!(!inbox.put_back(raw(4)), "the waiting one wins");
}

#[test]
fn rejected_queue_is_bounded_dropping_the_oldest() {
    let inbox = Inbox::default();
    for i in 0..(REJECTED_QUEUE + 5) {
        inbox.rejected(RejectedPayload {
            channel: format!("{i}"),
            error: crate::error::RejectReason::TooLarge { size: 1, limit: 0 },
            raw: vec![],
            size: 1,
            received_at: Utc::now(),
        });
    }
    match inbox.take() {
        Some(Work::Rejected(p)) => assert_eq!(p.channel, "5"),
        _ => panic!("expected a rejected payload"),
    }
}
