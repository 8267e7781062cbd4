//! Pieces the capture benchmarks share: a sink that counts (optionally serialising to
//! Debezium JSON, as a Kafka sink would) and a timed capture run.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use tensorcdc_change::json::JsonWriter;
use tensorcdc_change::{Delivered, Message, Sink, SinkError};
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
    async fn send(&mut self, batch: Vec<Message>, delivered: &Delivered) -> Result<(), SinkError> {
        if self.json {
            for m in &batch {
                let (k, v) = self.writer.serialize(m);
                self.bytes += (k.map_or(0, |k| k.len()) + v.map_or(0, |v| v.len())) as u64;
            }
        }
        *self.n.lock().unwrap() += batch.len() as u64;
        if let Some(l) = batch.iter().filter_map(|m| m.ack_lsn).max() {
            let _ = delivered.send(l);
        }
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
