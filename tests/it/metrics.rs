//! The `metrics` feature over real loopback: a server's figures scraped
//! from `GET /metrics` (Prometheus text) by curl after TCP and UDP
//! traffic and a request; every `Stats` field a metric, listed in the
//! GUIDE's Metrics table with its unit; `ConnHandle::traffic` read from
//! another loop and from the connection's own.

mod edges;
mod traffic;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use netloom::{Server, Stats};

use crate::common::peers::{require, Peer};
use crate::common::{echo, frame, init_logs, run_bounded, Client, TIMEOUT};

#[path = "../../examples/common/metrics_http.rs"]
#[allow(dead_code)]
mod metrics_http;

/// The process's recorder (one per process: every test of this binary
/// that records goes through it).
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| metrics_http::install().expect("install the Prometheus recorder"))
        .clone()
}

/// `name{labels} value` lines of a Prometheus text page, by series.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The GUIDE's Metrics table: (metric, type, unit, source) per row.
fn guide_metrics() -> Vec<[String; 4]> {
    let guide = include_str!("../../docs/GUIDE.md");
    let section = guide
        .split("\n## Metrics\n")
        .nth(1)
        .expect("the GUIDE has a ## Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `netloom_"))
        .map(|row| {
            let cells: Vec<String> = row.split('|').map(|c| c.trim().replace('`', "")).collect();
            [
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
                cells[4].clone(),
            ]
        })
        .collect()
}

/// The field names in `Stats`' `Debug` output.
fn stats_fields() -> BTreeSet<String> {
    let debug = format!("{:?}", Stats::default());
    let inner = debug.trim_start_matches("Stats {").trim_end_matches('}');
    inner
        .split(", ")
        .filter_map(|kv| kv.split_once(": ").map(|(k, _)| k.trim().to_string()))
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !k.is_empty())
        .collect()
}

#[test]
fn every_stats_field_is_a_metric_in_the_guide_and_in_the_export() {
    let fields = stats_fields();
    assert!(fields.len() > 20, "parsed too few fields: {fields:?}");
    let rows = guide_metrics();
    let sources: BTreeSet<String> = rows.iter().map(|r| r[3].clone()).collect();
    let missing: Vec<_> = fields.iter().filter(|f| !sources.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "Stats fields with no metric in the GUIDE: {missing:?}"
    );
    for row in &rows {
        assert!(row[0].starts_with("netloom_"), "{row:?}");
        assert!(
            !row[1].is_empty() && !row[2].is_empty(),
            "type and unit: {row:?}"
        );
    }
    // What the module exports is what the GUIDE lists: rendered through a
    // recorder of this thread only (no other test sees it).
    let local = PrometheusBuilder::new().build_recorder();
    let handle = local.handle();
    metrics::with_local_recorder(&local, || {
        netloom::metrics::export_stats(&Stats::default());
        netloom::metrics::export_pool("p", &Default::default());
        metrics::histogram!("netloom_request_seconds").record(0.001);
        #[cfg(feature = "cluster")]
        netloom::metrics::export_cluster(&Default::default());
    });
    let page = handle.render();
    let exported: BTreeSet<String> = samples(&page)
        .keys()
        .map(|s| s.split(['{', ' ']).next().unwrap().to_string())
        .map(|s| {
            s.trim_end_matches("_count")
                .trim_end_matches("_sum")
                .to_string()
        })
        .collect();
    for [name, ..] in &rows {
        if name.starts_with("netloom_cluster_") && !cfg!(feature = "cluster") {
            continue;
        }
        assert!(
            exported.contains(name),
            "{name} listed, not exported:\n{page}"
        );
    }
    let listed: BTreeSet<&String> = rows.iter().map(|r| &r[0]).collect();
    let unlisted: Vec<_> = exported.iter().filter(|e| !listed.contains(e)).collect();
    assert!(
        unlisted.is_empty(),
        "exported, not in the GUIDE: {unlisted:?}"
    );
}

#[test]
fn a_scrape_over_http_shows_tcp_udp_and_request_figures() {
    init_logs();
    let Some(curl) = require(Peer::Curl) else {
        return;
    };
    let handle = recorder();
    let server = Server::builder()
        .event_loops(2)
        .fallback(echo)
        .bind("127.0.0.1:0")
        .and_then(|b| b.bind_udp("127.0.0.1:0"))
        .and_then(|b| b.start())
        .expect("start");
    // TCP: two echoes on one connection.
    let mut client = Client::connect(server.local_addr());
    client.send(1, b"hello");
    assert_eq!(client.recv(), (1, b"hello".to_vec()));
    client.send(2, b"again");
    assert_eq!(client.recv(), (2, b"again".to_vec()));
    // UDP: one datagram and its echo.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(TIMEOUT)).unwrap();
    udp.send_to(&frame(3, b"datagram"), server.udp_addrs()[0])
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).expect("the UDP echo");
    assert_eq!(&buf[..n], &frame(3, b"datagram")[..]);
    // A request answered, for the latency histogram (recorded by any
    // server of this process: at least this one).
    request_once();

    let http = metrics_http::serve("127.0.0.1:0", handle, server.hub()).unwrap();
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--max-time", "10", &format!("http://{http}/metrics")]);
    let out = run_bounded(cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).unwrap();
    let got = samples(&page);
    let stats = server.stats();
    let value = |series: &str| {
        *got.get(series)
            .unwrap_or_else(|| panic!("no {series} in the scrape:\n{page}"))
    };
    // The traffic is over (echoes read back): the scrape saw these stats.
    assert_eq!(value("netloom_messages_in_total"), stats.messages_in as f64);
    assert_eq!(stats.messages_in, 3, "{stats}");
    assert_eq!(value("netloom_datagrams_in_total"), 1.0);
    assert_eq!(value("netloom_datagrams_out_total"), 1.0);
    assert_eq!(value("netloom_bytes_in_total"), stats.bytes_in as f64);
    assert!(stats.bytes_in >= 2 * 13 + 16, "{stats}");
    assert_eq!(value("netloom_connections"), stats.connections as f64);
    assert!(
        stats.connections >= 2,
        "the TCP client and the UDP session: {stats}"
    );
    assert_eq!(value("netloom_closed_total{reason=\"peer_closed\"}"), 0.0);
    assert_eq!(
        value("netloom_datagrams_dropped_total{cause=\"malformed\"}"),
        0.0
    );
    assert!(value("netloom_request_seconds_count") >= 1.0, "{page}");
    assert!(
        page.contains("netloom_request_seconds_bucket{le=\"0.0001\"}"),
        "{page}"
    );
    assert!(
        page.contains("# TYPE netloom_bytes_in_total counter"),
        "{page}"
    );
    assert!(page.contains("# TYPE netloom_connections gauge"), "{page}");
    drop(client);
    drop(TcpStream::connect(http).unwrap());
    server.shutdown(TIMEOUT).unwrap();
}

/// One request from a dialing server to a `SeqPacker` echo server,
/// answered.
fn request_once() {
    use netloom::SeqPacker;
    let backend = Server::builder()
        .packer(SeqPacker::default())
        .fallback(echo)
        .bind("127.0.0.1:0")
        .and_then(|b| b.start())
        .expect("start the backend");
    let dialer = Server::builder()
        .packer(SeqPacker::default())
        .start()
        .expect("start the dialer");
    let conn = dialer.hub().connect(backend.local_addr()).unwrap();
    let reply = conn.request(5, b"ping", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&reply.body[..], b"ping");
    dialer.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}
