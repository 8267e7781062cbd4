//! `tensorcdc run`'s `/metrics`, in the Prometheus text format (the `prometheus-client` crate),
//! served by axum on `--metrics-addr` beside the live page ([`super::live`]).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the loop reports.
#[derive(Clone)]
pub struct Metrics {
    pub rows_captured: Counter,
    pub labelled_rows: Counter,
    pub predictions: Counter,
    pub examples_trained: Gauge,
    pub model_version: Gauge,
    pub versions_refused: Counter,
    /// Held-out accuracy (classification) or loss (regression) of the serving version.
    pub heldout_accuracy: Gauge<f64, AtomicU64>,
    pub heldout_loss: Gauge<f64, AtomicU64>,
    /// Now minus the commit time of the last change read, seconds.
    pub lag_seconds: Gauge<f64, AtomicU64>,
    /// Commit-to-prediction latency of rows committed while the process ran.
    pub latency: Histogram,
    /// Predictions of rows that were in the table before (the snapshot, a restart's refill).
    pub existing_predictions: Counter,
    /// The in-process slot: the LSN confirmed to the server, and the bytes of WAL it holds.
    pub confirmed_lsn: Gauge,
    pub slot_wal_bytes: Gauge,
    /// Labelled rows counted but not trained on (they did not encode), by reason.
    pub examples_skipped: Family<Vec<(String, String)>, Counter>,
    /// Columns added to or dropped from the table while running.
    pub schema_changes: Family<Vec<(String, String)>, Counter>,
    /// What the live page shows.
    pub live: super::live::Live,
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    pub fn new(live: super::live::Live) -> Self {
        let m = Metrics {
            rows_captured: Counter::default(),
            labelled_rows: Counter::default(),
            predictions: Counter::default(),
            examples_trained: Gauge::default(),
            model_version: Gauge::default(),
            versions_refused: Counter::default(),
            heldout_accuracy: Gauge::default(),
            heldout_loss: Gauge::default(),
            lag_seconds: Gauge::default(),
            // 0.5 ms to ~16 s.
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)),
            existing_predictions: Counter::default(),
            confirmed_lsn: Gauge::default(),
            slot_wal_bytes: Gauge::default(),
            examples_skipped: Family::default(),
            schema_changes: Family::default(),
            live,
            registry: Arc::new(Mutex::new(Registry::with_prefix("tensorcdc"))),
        };
        {
            let mut r = m.registry.lock().expect("registry");
            r.register("rows_captured", "Changes read from the table", m.rows_captured.clone());
            r.register("labelled_rows", "Labelled changes put into the training buffer", m.labelled_rows.clone());
            r.register("predictions", "Predictions written", m.predictions.clone());
            r.register("examples_trained", "Labelled examples seen by the newest version", m.examples_trained.clone());
            r.register("model_version", "The serving model version", m.model_version.clone());
            r.register("versions_refused", "Versions the held-out gate kept from serving", m.versions_refused.clone());
            r.register("heldout_accuracy", "Held-out accuracy of the serving version", m.heldout_accuracy.clone());
            r.register("heldout_loss", "Held-out loss of the serving version", m.heldout_loss.clone());
            r.register("lag_seconds", "Seconds between the last change's commit and its reading", m.lag_seconds.clone());
            r.register("prediction_latency_seconds", "Commit-to-prediction latency of rows committed while running", m.latency.clone());
            r.register("slot_confirmed_lsn", "The LSN the replication slot confirmed to the server", m.confirmed_lsn.clone());
            r.register("slot_wal_bytes", "Bytes of WAL between the slot's confirmed LSN and the server's last reported end", m.slot_wal_bytes.clone());
            r.register("examples_skipped", "Labelled changes counted but not trained on (they did not encode), by reason", m.examples_skipped.clone());
            r.register("schema_changes", "Columns added to or dropped from the table while running", m.schema_changes.clone());
            r.register("existing_row_predictions", "Predictions of rows already in the table (snapshot, restart): no latency", m.existing_predictions.clone());
        }
        m
    }

    /// `examples_skipped{reason}`: the counts the last version carries.
    pub fn set_skipped(&self, skipped: &std::collections::BTreeMap<String, u64>) {
        for (reason, n) in skipped {
            let c = self.examples_skipped.get_or_create(&vec![("reason".to_string(), reason.clone())]);
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry.lock().expect("registry"));
        out
    }

    /// Serves `GET /metrics`, and the live page (`GET /`, `GET /api/state`), on `addr`;
    /// returns the address bound (port 0 picks one).
    pub async fn serve(&self, addr: &str) -> anyhow::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
        let bound = listener.local_addr()?;
        let m = self.clone();
        let app = self.live.routes(axum::Router::new()).route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.text()) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(bound)
    }
}
