//! The scenarios, each run in a process of its own inside namespace A
//! (see `main.rs`), and what they share: where the peers are, the faults,
//! and the leak checks at the end.

mod backlog;
mod delay;
mod loss;
mod partition;
mod requests;
mod vanish;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::netns::{clear_fault, set_fault, Fault, ADDR_A, ADDR_B};
use crate::peer::Peer;

/// Set to a scenario's name in the scenario's own process.
pub const SCENARIO_ENV: &str = "NETLOOM_FAULTS_SCENARIO";
/// Namespace B's name, for the scenario's process.
pub const NS_B_ENV: &str = "NETLOOM_FAULTS_NS_B";
/// The Python to run the peers with.
pub const PY_ENV: &str = "NETLOOM_FAULTS_PY";

/// Scheduling allowance on a loaded two-core machine, added to every
/// upper bound of a timing check.
pub const SLACK: Duration = Duration::from_millis(400);

/// One scenario: its name (test filters match it), what it proves, the
/// faults it injects, and its body (run inside namespace A).
pub struct Scenario {
    pub name: &'static str,
    pub proves: &'static str,
    pub faults: &'static str,
    pub run: fn(&Env),
}

/// Every scenario, in the order the driver runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "heartbeat_kicks_a_vanished_peer",
        proves: "an accepted peer gone without FIN or RST is closed with IdleTimeout within idle_timeout + check_interval of its last byte",
        faults: "nft drop-all in B, then the peer killed by pid",
        run: vanish::heartbeat,
    },
    Scenario {
        name: "keepalive_closes_vanished_peers",
        proves: "SO_KEEPALIVE is set on accepted, dialed and profile-dialed sockets (ss shows the timer); with no heartbeat, the kernel's probes close them with an I/O error (ETIMEDOUT) within period + probes x period; a socket without keepalive stays open",
        faults: "nft drop-all in B, then the peers killed by pid; tcp_keepalive_probes=2 in A",
        run: vanish::keepalive,
    },
    Scenario {
        name: "heartbeat_kick_with_data_queued_does_not_linger",
        proves: "an accepted peer that vanished with 2 MiB queued for it is closed (on_close IdleTimeout) within the heartbeat's bound, not after close_linger",
        faults: "nft drop-all in B, then the peer killed by pid",
        run: backlog::accepted_with_data_queued,
    },
    Scenario {
        name: "link_dropped_with_data_queued_reconnects_on_schedule",
        proves: "a dialed link whose backend vanished with 2 MiB queued is dropped by its heartbeat within its bound and its reconnect attempt follows the policy's delay, not close_linger",
        faults: "nft drop-all in B",
        run: backlog::link_with_data_queued,
    },
    Scenario {
        name: "reconnect_and_pool_through_a_partition",
        proves: "a dialed link follows its Reconnect backoff through a partition (attempt times and delays), comes back after it with the sends queued while down, and a Pool refills to its size",
        faults: "nft drop-all in B for about 3 s",
        run: partition::reconnect_and_pool,
    },
    Scenario {
        name: "requests_in_flight_time_out",
        proves: "requests in flight across a partition fail with Error::Timeout by their deadline (request, request_with, Pool::request), never hang; late replies after it heals are counted, never misdelivered; memory does not grow over rounds",
        faults: "nft drop-all in B, four rounds",
        run: requests::in_flight,
    },
    Scenario {
        name: "loss_tcp_echo_complete_udp_survives",
        proves: "under random loss a TCP echo of 600 messages comes back complete and in order; UDP requests under loss either match their own reply or time out (counted), the session stays",
        faults: "nft `numgen random mod 100 < 10 drop` in and out of B",
        run: loss::tcp_and_udp,
    },
    Scenario {
        name: "latency_and_reordering",
        proves: "through a delaying TCP relay, requests whose replies overtake one another still each get their own reply (and the round trip shows the delay); through a reordering UDP relay, reordered replies match their requests",
        faults: "user-space relays in B: TCP 40 ms per chunk each way; UDP 10-50 ms per datagram each way (reorders)",
        run: delay::latency_and_reordering,
    },
];

/// Run the scenario `name` in this process (inside namespace A).
pub fn run_here(name: &str) {
    crate::common::init_logs();
    let scenario = ALL
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"));
    let env = Env {
        ns_b: std::env::var(NS_B_ENV).expect("namespace B's name"),
        python: std::env::var(PY_ENV).expect("the peers' Python"),
    };
    (scenario.run)(&env);
}

/// Where the scenario runs: namespace B (peers, faults) and the Python.
pub struct Env {
    ns_b: String,
    python: String,
}

impl Env {
    /// A `peers.py` peer in namespace B.
    pub fn peer(&self, mode: &str, args: &[String]) -> Peer {
        Peer::start(&self.python, &self.ns_b, mode, args)
    }

    /// A peer listening on B's veth address.
    pub fn server_peer(&self, mode: &str, extra: &[String]) -> Peer {
        let mut args = vec![ADDR_B.to_string(), "0".to_string()];
        args.extend_from_slice(extra);
        self.peer(mode, &args)
    }

    /// A peer connecting to `addr` (netloom, in A).
    pub fn client_peer(&self, mode: &str, addr: SocketAddr) -> Peer {
        self.peer(mode, &[addr.ip().to_string(), addr.port().to_string()])
    }

    /// Set `fault`; returns when it was being installed.
    pub fn fault(&self, fault: Fault) -> Cut {
        let began = Instant::now();
        set_fault(&self.ns_b, fault);
        let cut = Cut {
            began,
            done: Instant::now(),
        };
        println!(
            "  fault: {fault:?} in B (installed in {:.2?})",
            cut.done - cut.began
        );
        cut
    }

    /// Remove the fault; returns when that was done.
    pub fn heal(&self) -> Instant {
        clear_fault(&self.ns_b);
        println!("  fault: healed");
        Instant::now()
    }
}

/// When a fault took effect: some time between `began` and `done` (the
/// `nft` call that installed it).
#[derive(Clone, Copy)]
pub struct Cut {
    pub began: Instant,
    pub done: Instant,
}

impl Cut {
    /// Assert that `at` came at least `lo` after the fault took effect
    /// (counted from `began`) and at most `hi` after (from `done`).
    pub fn assert_after(&self, what: &str, at: Instant, lo: Duration, hi: Duration) {
        let (early, late) = (at - self.began, at.saturating_duration_since(self.done));
        assert!(
            early >= lo && late <= hi,
            "{what}: {early:?} after the fault began to be set, {late:?} after it was set; expected between {lo:?} and {hi:?}"
        );
        println!("  {what}: {late:.2?} after the fault (bound {lo:.2?}..={hi:.2?})");
    }
}

/// Netloom's address (namespace A's veth), port 0.
pub fn addr_a() -> SocketAddr {
    SocketAddr::new(ADDR_A.parse::<IpAddr>().unwrap(), 0)
}

/// Assert `d` lies in `lo..=hi`, naming `what`.
pub fn assert_between(what: &str, d: Duration, lo: Duration, hi: Duration) {
    assert!(
        d >= lo && d <= hi,
        "{what}: {d:?}, expected between {lo:?} and {hi:?}"
    );
    println!("  {what}: {d:.2?} (bound {lo:.2?}..={hi:.2?})");
}
