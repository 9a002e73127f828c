//! The queue's unit tests: enqueue, wait and release on real files and
//! kernel locks.

use std::fs::{self, File};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::gate::GATE;
use super::record_file::{MAX_RECORD, read_record};
use super::*;
use crate::database::Database;
use crate::holder::Holder;
use crate::mode::Mode;
use crate::record::{Owner, Record};

fn owner() -> Owner {
    Owner {
        program: "t".into(),
        command: vec!["t".into()],
    }
}

fn queue() -> (tempfile::TempDir, Queue) {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::resolve(Path::new("app.db"), tmp.path()).unwrap();
    let q = Queue::open(&db).unwrap();
    (tmp, q)
}

#[test]
fn records_of_any_size_up_to_the_limit_are_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("record");
    for name_len in [1, 700, 1024, 5000, 40_000] {
        let owner = Owner {
            program: "p".repeat(name_len),
            command: vec!["p".into()],
        };
        let record = Record::waiting(&owner, Mode::Read);
        fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        let read = read_record(&File::open(&path).unwrap()).unwrap();
        assert_eq!(read.program.len(), name_len);
        assert_eq!(read.pid, record.pid);
    }
    fs::write(&path, vec![b' '; MAX_RECORD as usize]).unwrap();
    let too_big = read_record(&File::open(&path).unwrap()).unwrap_err();
    assert!(too_big.contains("larger than any"), "{too_big}");
}

#[test]
fn a_queue_has_tickets_only_while_a_ticket_is_in_it() {
    let (tmp, q) = queue();
    assert!(!has_tickets(&tmp.path().join("no such directory")));
    // The gate (and a journal) are not tickets.
    fs::write(q.dir().join("journal"), "").unwrap();
    assert!(!has_tickets(q.dir()));
    let (ticket, _) = enqueue(&q, Mode::Write);
    assert!(has_tickets(q.dir()));
    assert!(matches!(ticket.release(), Release::Free(_)));
    assert!(!has_tickets(q.dir()));
}

fn enqueue(q: &Queue, mode: Mode) -> (Ticket, Vec<TicketId>) {
    match Ticket::take(q, mode, &|_| Record::waiting(&owner(), mode), false, false).unwrap() {
        Enqueued::Queued {
            ticket, blockers, ..
        } => (ticket, blockers),
        Enqueued::Busy(_) => unreachable!("waiting enqueue is never busy"),
    }
}

#[test]
fn ticket_names_round_trip_and_strangers_are_ignored() {
    let id = TicketId {
        number: 42,
        mode: Mode::Write,
    };
    assert_eq!(id.file_name(), "00000000000000000042.w");
    assert_eq!(TicketId::parse(&id.file_name()), Some(id));
    assert_eq!(TicketId::parse("gate"), None);
    assert_eq!(TicketId::parse("42.w"), None);
    assert_eq!(TicketId::parse("0000000000000000004x.w"), None);
    assert_eq!(TicketId::parse("00000000000000000042.x"), None);
}

#[test]
fn writers_wait_for_all_and_readers_only_for_writers() {
    let (_tmp, q) = queue();
    let (r1, b) = enqueue(&q, Mode::Read);
    assert!(b.is_empty());
    let (w2, b) = enqueue(&q, Mode::Write);
    assert_eq!(b, vec![r1.id()]);
    let (_r3, b) = enqueue(&q, Mode::Read);
    assert_eq!(
        b,
        vec![w2.id()],
        "a later reader waits for the waiting writer"
    );
    let (_w4, b) = enqueue(&q, Mode::Write);
    assert_eq!(b.len(), 3);
}

#[test]
fn a_held_ticket_blocks_and_a_released_one_does_not() {
    let (_tmp, q) = queue();
    let (w1, _) = enqueue(&q, Mode::Write);
    let (_w2, mut blockers) = enqueue(&q, Mode::Write);
    let cancel = AtomicBool::new(false);
    let out = wait_turn(q.dir(), &mut blockers.clone(), false, &cancel, |_| {}).unwrap();
    assert_eq!(out, WaitOutcome::Blocked(w1.id()));
    assert!(matches!(w1.release(), Release::Free(_)));
    let out = wait_turn(q.dir(), &mut blockers, false, &cancel, |_| {}).unwrap();
    assert_eq!(out, WaitOutcome::Done);
}

#[test]
fn no_wait_reports_the_holder_and_leaves_no_ticket() {
    let (_tmp, q) = queue();
    let (w1, _) = enqueue(&q, Mode::Write);
    w1.update(&Record::waiting(&owner(), Mode::Write).holding(std::process::id() as i32))
        .unwrap();
    let before = q.entries().len();
    let r = Record::waiting(&owner(), Mode::Read);
    match Ticket::take(&q, Mode::Read, &|_| r.clone(), true, false).unwrap() {
        Enqueued::Busy(holders) => {
            assert_eq!(holders.len(), 1);
            assert!(matches!(holders[0], Holder::Program { holding: true, .. }));
        }
        Enqueued::Queued { .. } => panic!("should be busy"),
    }
    assert_eq!(q.entries().len(), before);
}

#[test]
fn a_dead_ticket_with_garbage_does_not_block() {
    let (_tmp, q) = queue();
    fs::write(q.dir().join("00000000000000000007.w"), b"\x00garbage").unwrap();
    let (_t, mut blockers) = enqueue(&q, Mode::Write);
    assert_eq!(blockers.len(), 1);
    let cancel = AtomicBool::new(false);
    let out = wait_turn(q.dir(), &mut blockers, false, &cancel, |_| {}).unwrap();
    assert_eq!(out, WaitOutcome::Done);
    assert!(!q.dir().join("00000000000000000007.w").exists());
}

#[test]
fn readers_of_the_queue_never_disturb_an_enqueue() {
    // status and the holder names in messages list the queue without
    // the gate and probe each ticket with a shared lock; an enqueue
    // racing with them must still always get its own lock.
    let (_tmp, q) = queue();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let prober = {
        let (q, stop) = (q.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for e in q.entries() {
                    // Every listed ticket is locked and has its record.
                    if e.live {
                        assert!(e.record.is_ok(), "{:?}", e.record);
                    }
                    seen += 1;
                }
            }
            seen
        })
    };
    for _ in 0..2000 {
        let (t, _) = enqueue(&q, Mode::Write);
        assert!(matches!(t.release(), Release::Free(_)));
    }
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
}

#[test]
fn numbers_never_restart_when_the_queue_empties() {
    let (_tmp, q) = queue();
    let mut last = 0;
    for _ in 0..5 {
        let (t, _) = enqueue(&q, Mode::Write);
        assert!(t.id().number > last, "{} after {last}", t.id().number);
        last = t.id().number;
        assert!(matches!(t.release(), Release::Free(_)));
        assert!(q.entries().is_empty());
    }
}

#[test]
fn numbers_keep_growing_past_a_garbled_counter() {
    let (_tmp, q) = queue();
    let (a, _) = enqueue(&q, Mode::Read);
    fs::write(q.dir().join(GATE), "not a number").unwrap();
    let (b, _) = enqueue(&q, Mode::Read);
    assert!(b.id().number > a.id().number);
}
