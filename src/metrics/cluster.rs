//! The cluster's figures (`ClusterStats`), with both the `metrics` and the
//! `cluster` features.

use ::metrics::{counter, describe_counter, Unit};

use super::Figure;
use crate::cluster::ClusterStats;

/// The counters of [`ClusterStats`] (each the field of the same name).
const CLUSTER_COUNTERS: &[Figure<ClusterStats>] = &[
    (
        "netloom_cluster_published_total",
        Unit::Count,
        "Envelopes published to the broker.",
        |c| c.published,
    ),
    (
        "netloom_cluster_received_total",
        Unit::Count,
        "Envelopes from other nodes handed to the loops.",
        |c| c.received,
    ),
    (
        "netloom_cluster_echoes_total",
        Unit::Count,
        "Own envelopes back from the broker (dropped).",
        |c| c.echoes,
    ),
    (
        "netloom_cluster_malformed_total",
        Unit::Count,
        "Envelopes that could not be decoded (dropped).",
        |c| c.malformed,
    ),
    (
        "netloom_cluster_dropped_total",
        Unit::Count,
        "Messages for other nodes not sent.",
        |c| c.dropped,
    ),
    (
        "netloom_cluster_broker_errors_total",
        Unit::Count,
        "Failed attempts to reach the broker, and lost connections.",
        |c| c.broker_errors,
    ),
    (
        "netloom_cluster_reconnects_total",
        Unit::Count,
        "Connections to the broker made again after a loss.",
        |c| c.reconnects,
    ),
];

pub(super) fn describe() {
    for &(name, unit, help, _) in CLUSTER_COUNTERS {
        describe_counter!(name, unit, help);
    }
}

/// Set the cluster's metrics (`Cluster::stats`), with both the `metrics`
/// and the `cluster` features.
///
/// ```no_run
/// # fn f(cluster: &netloom::cluster::Cluster) {
/// netloom::metrics::export_cluster(&cluster.stats());
/// # }
/// # let _ = f;
/// ```
pub fn export_cluster(stats: &ClusterStats) {
    super::describe();
    for &(name, _, _, value) in CLUSTER_COUNTERS {
        counter!(name).absolute(value(stats));
    }
}
