//! Pieces the capture benchmarks share: a sink that counts (optionally serialising to
//! Debezium JSON, as a Kafka sink would) and a timed capture run.

pub mod drift;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use tensorcdc_change::json::JsonWriter;
use tensorcdc_change::{BatchAck, Message, Sink, SinkError};
use tensorcdc_postgres::{run_capture, CaptureConfig, CaptureStats, Transform};

/// Counts messages (optionally serialising them to Debezium JSON, as a Kafka sink would).
pub struct Counting {
    pub n: Arc<Mutex<u64>>,
    pub bytes: u64,
    pub json: bool,
    pub writer: JsonWriter,
}

#[async_trait::async_trait]
impl Sink for Counting {
    async fn send(&mut self, batch: Vec<Message>, ack: BatchAck) -> Result<(), SinkError> {
        if self.json {
            for m in &batch {
                let (k, v) = self.writer.serialize(m);
                self.bytes += (k.map_or(0, |k| k.len()) + v.map_or(0, |v| v.len())) as u64;
            }
        }
        *self.n.lock().unwrap() += batch.len() as u64;
        ack.done();
        Ok(())
    }
}

/// Runs capture until the sink has counted `want` messages; rows per second.
pub async fn capture_rows(cfg: CaptureConfig, want: u64, json: bool) -> Result<f64> {
    let n = Arc::new(Mutex::new(0u64));
    let mut sink = Counting { n: n.clone(), bytes: 0, json, writer: JsonWriter::default() };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let identity: Transform = tensorcdc_postgres::identity();
    let stats = Arc::new(Mutex::new(CaptureStats::default()));
    let start = Instant::now();
    let watcher = {
        let n = n.clone();
        tokio::spawn(async move {
            loop {
                if *n.lock().unwrap() >= want {
                    let _ = tx.send(true);
                    return start.elapsed();
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    };
    run_capture(cfg, identity, &mut sink, rx, stats).await?;
    let t = watcher.await?;
    Ok(want as f64 / t.as_secs_f64())
}

/// The median of some figures.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `pg_recvlogical` of the cluster's own binaries.
pub fn recvlogical(pg: &tensorcdc_localpg::LocalPg) -> std::path::PathBuf {
    pg.bin_dir().join("pg_recvlogical")
}

/// Creates the reference slot `ref` (pgoutput) that `pg_recvlogical` reads.
pub fn create_reference_slot(pg: &tensorcdc_localpg::LocalPg) -> Result<()> {
    let ok = std::process::Command::new(recvlogical(pg)).args(["-d", &pg.url("postgres"), "--slot", "ref", "--create-slot", "-P", "pgoutput"]).status()?;
    anyhow::ensure!(ok.success(), "pg_recvlogical --create-slot failed");
    Ok(())
}

/// The arguments with which `pg_recvlogical` reads slot `ref` up to `end` (pgoutput v2,
/// binary tuples, publication `dbz_publication`) into /dev/null.
pub fn recvlogical_read_args(pg: &tensorcdc_localpg::LocalPg, end: &str) -> Vec<String> {
    [
        "-d",
        &pg.url("postgres"),
        "--slot",
        "ref",
        "--start",
        "--endpos",
        end,
        "-o",
        "proto_version=2",
        "-o",
        "binary=true",
        "-o",
        "publication_names=dbz_publication",
        "-f",
        "/dev/null",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `pg_recvlogical` reading slot `ref` up to `end`: `rows` per second.
pub fn recvlogical_rate(pg: &tensorcdc_localpg::LocalPg, end: &str, rows: u64) -> Result<f64> {
    let t = Instant::now();
    let ok = std::process::Command::new(recvlogical(pg)).args(recvlogical_read_args(pg, end)).status()?;
    anyhow::ensure!(ok.success(), "pg_recvlogical --start failed");
    Ok(rows as f64 / t.elapsed().as_secs_f64())
}

/// Creates the slot of `cfg` (whose snapshot mode should be `never`) by starting and
/// stopping capture once.
pub async fn create_capture_slot(cfg: &CaptureConfig) -> Result<()> {
    let mut sink = Counting { n: Default::default(), bytes: 0, json: false, writer: JsonWriter::default() };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let _ = tx.send(true);
    run_capture(cfg.clone(), tensorcdc_postgres::identity(), &mut sink, rx, Default::default()).await?;
    Ok(())
}
