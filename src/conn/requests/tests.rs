//! `Requests` on its own: numbering, matching, timeouts, losses.

use super::*;

fn sink() -> (ReplySink, oneshot::ReplyRx) {
    let (tx, rx) = oneshot::oneshot();
    (ReplySink::Channel(tx), rx)
}

#[test]
fn sequence_numbers_skip_zero_and_pending_ones_when_they_wrap() {
    let mut r = Requests {
        last_seq: u32::MAX - 1,
        ..Requests::default()
    };
    let a = r.start(1, 1, true, Duration::from_secs(1), sink().0, Instant::now());
    let b = r.start(1, 1, true, Duration::from_secs(1), sink().0, Instant::now());
    assert_eq!((a, b), (u32::MAX, 1));
    r.last_seq = 0;
    assert_eq!(
        r.start(1, 1, true, Duration::from_secs(1), sink().0, Instant::now()),
        3,
        "1 is pending, 2 is the accepting side's"
    );
}

#[test]
fn each_side_numbers_its_own_parity_and_never_takes_the_other_s_for_a_reply() {
    let mut dialer = Requests::default();
    let mut acceptor = Requests::default();
    let t = Duration::from_secs(1);
    let (d1, d2) = (
        dialer.start(1, 1, true, t, sink().0, Instant::now()),
        dialer.start(1, 1, true, t, sink().0, Instant::now()),
    );
    let (a1, a2) = (
        acceptor.start(1, 1, false, t, sink().0, Instant::now()),
        acceptor.start(1, 1, false, t, sink().0, Instant::now()),
    );
    assert_eq!((d1, d2, a1, a2), (1, 3, 2, 4));
    // The acceptor's request 2 reaches the dialer, which has nothing
    // waiting on 2: a message for its routes. Its own 3 is a reply.
    assert!(matches!(dialer.matched(1, 1, a1), Matched::Unmatched));
    assert!(matches!(dialer.matched(1, 1, d2), Matched::Reply(_)));
    assert!(matches!(acceptor.matched(1, 1, d1), Matched::Unmatched));
    assert!(matches!(acceptor.matched(1, 1, a2), Matched::Reply(_)));
}

#[test]
fn a_reply_after_the_timeout_is_late_never_another_requests() {
    let mut r = Requests::default();
    let t0 = Instant::now();
    let (s, rx) = sink();
    let seq = r.start(3, 7, true, Duration::from_secs(1), s, t0);
    let armed = r.take_deadlines();
    assert_eq!(armed.len(), 1);
    assert_eq!(armed[0].at, t0 + Duration::from_secs(1));
    // A timer that fires early expires nothing and arms again for the
    // same deadline (never leaving the request without a timer).
    assert!(r.expire_due(3, 7, armed[0].serial, t0).is_empty());
    let again = r.take_deadlines();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].at, t0 + Duration::from_secs(1));
    let late = t0 + Duration::from_secs(2);
    // The early timer, once superseded, does nothing.
    assert!(r.expire_due(3, 7, armed[0].serial, late).is_empty());
    assert!(r.take_deadlines().is_empty());
    for sink in r.expire_due(3, 7, again[0].serial, late) {
        sink.deliver(Err(Error::Timeout));
    }
    assert!(matches!(rx.try_recv(), Ok(Err(Error::Timeout))));
    // The tombstone asks for the timer at its end.
    let armed = r.take_deadlines();
    assert_eq!(armed.len(), 1);
    assert_eq!(armed[0].at, late + TOMBSTONE_MIN);
    assert!(matches!(r.matched(3, 7, seq), Matched::Late));
    assert!(matches!(r.matched(3, 7, seq), Matched::Unmatched));
    // The slot's next occupant (the earlier one's requests went with
    // it): another generation never matches.
    assert!(r.fail_all(3, 7).is_empty());
    let seq2 = r.start(3, 8, true, Duration::from_secs(1), sink().0, t0);
    assert!(matches!(r.matched(3, 7, seq2), Matched::Unmatched));
    assert!(matches!(r.matched(3, 8, seq2), Matched::Reply(_)));
}

#[test]
fn a_connection_arms_one_timer_for_many_requests() {
    let mut r = Requests::default();
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    for i in 0..1000u32 {
        let seq = r.start(
            1,
            1,
            true,
            second,
            sink().0,
            t0 + Duration::from_micros(u64::from(i)),
        );
        assert!(matches!(r.matched(1, 1, seq), Matched::Reply(_)));
    }
    assert_eq!(
        r.take_deadlines().len(),
        1,
        "one timer, however many requests"
    );
    // A shorter timeout moves the timer earlier.
    r.start(1, 1, true, Duration::from_millis(10), sink().0, t0);
    let short = r.take_deadlines()[0];
    assert_eq!(short.at, t0 + Duration::from_millis(10));
    // The timer fires: nothing else waits, the short one expires, and
    // the next timer is its tombstone's end.
    assert_eq!(r.expire_due(1, 1, short.serial, t0 + second).len(), 1);
    let next = r.take_deadlines();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].at, t0 + second + TOMBSTONE_MIN);
    // Two more at one instant with one timeout, on another connection
    // (key 2): still one timer.
    r.start(2, 1, true, second, sink().0, t0);
    r.start(2, 1, true, second, sink().0, t0);
    assert_eq!(r.take_deadlines().len(), 1, "one timer for one deadline");
    // Forgotten at its end: nothing left, no timer.
    assert!(r.expire_due(1, 1, next[0].serial, next[0].at).is_empty());
    assert!(r.take_deadlines().is_empty());
}

#[test]
fn losing_the_connection_fails_every_waiting_request() {
    let mut r = Requests::default();
    let rxs: Vec<_> = (0..3)
        .map(|_| {
            let (s, rx) = sink();
            r.start(5, 1, true, Duration::from_secs(1), s, Instant::now());
            rx
        })
        .collect();
    for s in r.fail_all(5, 1) {
        s.deliver(Err(Error::Disconnected));
    }
    for rx in rxs {
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Disconnected))));
    }
    assert!(r.fail_all(5, 1).is_empty());
}

#[test]
fn losing_a_slots_earlier_occupant_leaves_the_next_ones_requests_waiting() {
    let mut r = Requests::default();
    let (s, rx) = sink();
    let seq = r.start(5, 2, true, Duration::from_secs(1), s, Instant::now());
    // The loss of generation 1 is reported late, after 2 took the slot.
    assert!(r.fail_all(5, 1).is_empty());
    assert!(rx.try_recv().is_err(), "generation 2's request was failed");
    assert!(matches!(r.matched(5, 2, seq), Matched::Reply(_)));
}

#[test]
fn a_request_times_out_at_its_deadline_not_a_tick_later() {
    let mut r = Requests::default();
    let t0 = Instant::now();
    let timeout = Duration::from_millis(100);
    let seq = r.start(1, 1, false, timeout, sink().0, t0);
    let armed = r.take_deadlines()[0];
    assert_eq!(r.expire_due(1, 1, armed.serial, t0 + timeout).len(), 1);
    assert_eq!(r.in_a_row(1, 1), 1);
    assert!(matches!(r.matched(1, 1, seq), Matched::Late));
    assert_eq!(r.in_a_row(1, 1), 0, "a late reply ends the run of timeouts");
}

#[test]
fn a_forgotten_callback_is_never_called() {
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = called.clone();
    let sink = ReplySink::Callback(Callback::new(move |_| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }));
    sink.forget();
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    // One not forgotten hears `ShutDown` when dropped unanswered.
    let flag = called.clone();
    drop(ReplySink::Callback(Callback::new(move |reply| {
        flag.store(
            matches!(reply, Err(Error::ShutDown)),
            std::sync::atomic::Ordering::SeqCst,
        );
    })));
    assert!(called.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn a_tombstone_lives_until_its_end_and_no_longer() {
    let mut r = Requests::default();
    let t0 = Instant::now();
    let a = r.start(1, 1, true, Duration::from_secs(1), sink().0, t0);
    let b = r.start(1, 1, true, Duration::from_secs(2), sink().0, t0);
    // The armed timer fires at `now`: how many requests timed out.
    fn fire(r: &mut Requests, now: Instant) -> usize {
        let armed = r.take_deadlines();
        assert_eq!(armed.len(), 1);
        r.expire_due(1, 1, armed[0].serial, now).len()
    }
    assert_eq!(fire(&mut r, t0 + Duration::from_secs(1)), 1, "a timed out");
    assert_eq!(fire(&mut r, t0 + Duration::from_secs(2)), 1, "b timed out");
    // b's timeout left a's tombstone alone: a's reply is late.
    assert!(matches!(r.matched(1, 1, a), Matched::Late));
    // Past b's tombstone's end (2 s + TOMBSTONE_MIN), it is gone: b's
    // reply is an ordinary message.
    let after = t0 + Duration::from_secs(2) + TOMBSTONE_MIN + Duration::from_secs(1);
    assert_eq!(fire(&mut r, after), 0);
    assert!(matches!(r.matched(1, 1, b), Matched::Unmatched));
}

/// A slot's earlier occupant with requests left is a bug the table
/// never makes (`fail_all` runs at every removal): a debug build stops
/// at it, a release build fails those requests rather than lose them.
#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "requests of a removed slot")
)]
fn a_slots_leftover_requests_fail_when_its_next_occupant_starts_one() {
    let mut r = Requests::default();
    let (s, rx) = sink();
    r.start(5, 1, true, Duration::from_secs(1), s, Instant::now());
    // Generation 1's loss is not reported yet when 2 starts a request.
    r.start(5, 2, true, Duration::from_secs(1), sink().0, Instant::now());
    let orphans = r.take_orphans();
    assert_eq!(orphans.len(), 1);
    for s in orphans {
        s.deliver(Err(Error::Disconnected));
    }
    assert!(matches!(rx.try_recv(), Ok(Err(Error::Disconnected))));
    assert!(r.take_orphans().is_empty(), "taken once");
}
