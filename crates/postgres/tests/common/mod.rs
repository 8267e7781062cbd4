//! Test harness: a private Postgres per test, capture running in-process into a channel.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tensorcdc_change::{ChannelSink, Message, Payload, Value};
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_postgres::{run_capture, CaptureConfig, CaptureError, CaptureStats, Transform};
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, NoTls};

pub fn start_pg(settings: &[(&str, &str)]) -> LocalPg {
    LocalPg::start(Options { no_fsync: true, settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Default::default() })
        .expect("start a private Postgres")
}

pub async fn client(pg: &LocalPg) -> Client {
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

pub fn config(pg: &LocalPg, slot: &str) -> CaptureConfig {
    let mut cfg = CaptureConfig::default();
    cfg.set_connection(&pg.url("postgres")).unwrap();
    cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.mnist_.*").unwrap();
    cfg.slot_name = slot.into();
    cfg.status_interval_ms = 1000;
    cfg.offset_file = Some(offsets_file(pg, slot));
    cfg
}

/// An offsets file of this test's own (not the user's state directory).
pub fn offsets_file(pg: &LocalPg, slot: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tensorcdc-test-offsets-{}-{}-{slot}.json", std::process::id(), pg.port()))
}

/// Runs a capture to its end into a memory sink: a permanent error, or an `initial_only`
/// read's completion (30 s at most: a retried error would never end it).
pub async fn run_once(cfg: CaptureConfig) -> Result<CaptureStats, CaptureError> {
    let mut sink = tensorcdc_change::MemorySink::default();
    let (_tx, rx) = watch::channel(false);
    tokio::time::timeout(Duration::from_secs(30), run_capture(cfg, identity(), &mut sink, rx, Default::default()))
        .await
        .expect("a permanent error ends capture instead of retrying forever")
}

pub fn identity() -> Transform {
    tensorcdc_postgres::identity()
}

pub struct Running {
    pub rx: mpsc::Receiver<Message>,
    pub shutdown: watch::Sender<bool>,
    pub handle: tokio::task::JoinHandle<Result<CaptureStats, CaptureError>>,
    pub stats: Arc<Mutex<CaptureStats>>,
}

pub fn spawn(cfg: CaptureConfig, transform: Transform) -> Running {
    let (mut sink, rx) = ChannelSink::new(1024);
    let (shutdown, srx) = watch::channel(false);
    let stats = Arc::new(Mutex::new(CaptureStats::default()));
    let st = stats.clone();
    let handle = tokio::spawn(async move { run_capture(cfg, transform, &mut sink, srx, st).await });
    Running { rx, shutdown, handle, stats }
}

impl Running {
    /// Receives exactly `n` messages, failing after `secs` seconds without them.
    pub async fn take(&mut self, n: usize, secs: u64) -> Vec<Message> {
        let mut out = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => out.push(m),
                Ok(None) => panic!("capture ended after {} of {n} messages: {:?}", out.len(), self.handle.is_finished()),
                Err(_) => panic!("only {} of {n} messages after {secs}s", out.len()),
            }
        }
        out
    }

    /// Waits until the engine streams (the snapshot is done and START_REPLICATION ran).
    pub async fn wait_streaming(&self) {
        for _ in 0..600 {
            if self.stats.lock().unwrap().streaming {
                return;
            }
            if self.handle.is_finished() {
                panic!("capture ended before streaming");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("capture did not start streaming");
    }

    pub async fn stop(self) -> CaptureStats {
        self.shutdown.send(true).unwrap();
        let Running { mut rx, handle, .. } = self;
        // Keep draining so a full channel cannot block the shutdown.
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let s = handle.await.unwrap().unwrap();
        drain.abort();
        s
    }
}

/// The `id` of a message's row (after, else before).
pub fn id_of(m: &Message) -> Option<i64> {
    match &m.payload {
        Payload::Envelope(e) => e.after.as_ref().or(e.before.as_ref())?.get("id")?.as_i64(),
        Payload::Row(r) => r.get("id")?.as_i64(),
        _ => None,
    }
}

pub fn pixels_of(m: &Message) -> Option<Vec<u8>> {
    match &m.payload {
        Payload::Envelope(e) => match e.after.as_ref()?.get("pixels")? {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        },
        _ => None,
    }
}

pub const CREATE: &str = "CREATE TABLE mnist_train(id SERIAL NOT NULL PRIMARY KEY, label SMALLINT, pixels BYTEA)";

pub fn pixels(seed: i64) -> Vec<u8> {
    (0..784).map(|i| ((i as i64 * 31 + seed * 7) % 256) as u8).collect()
}

pub async fn insert_rows(c: &Client, table: &str, from: i64, n: i64) {
    let stmt = c.prepare(&format!("INSERT INTO {table}(label, pixels) VALUES($1, $2)")).await.unwrap();
    for i in from..from + n {
        c.execute(&stmt, &[&((i % 10) as i16), &pixels(i)]).await.unwrap();
    }
}
