//! Capture throughput on 60,000 Fashion-MNIST rows (784-byte BYTEA each), each figure
//! beside its reference measured in the same run on the same private Postgres:
//! * snapshot rows/s against `COPY mnist_train TO STDOUT (FORMAT binary)`;
//! * streaming rows/s against `pg_recvlogical` reading the same WAL (pgoutput, binary).
//!
//! Usage: bench-capture [DATA_DIR] [ROWS]. Prints a JSON line.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use tensorcdc_bench::{capture_rows, create_capture_slot, create_reference_slot, median, recvlogical_rate};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_postgres::{run_capture, CaptureConfig, SnapshotMode};
use tokio_postgres::NoTls;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(String::as_str).unwrap_or("/usr/share/datasets/fashion-mnist");
    let rows: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60_000);
    let data = mnist::load(Path::new(dir), Split::Train)?.truncate(rows);
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() })?;
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &data, 500).await?;
    c.batch_execute("VACUUM ANALYZE mnist_train").await?;
    c.batch_execute("CREATE PUBLICATION dbz_publication FOR ALL TABLES").await?;
    let mut base = CaptureConfig::default();
    base.set_connection(&pg.url("postgres"))?;
    base.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.mnist_.*")?;

    // Snapshot: COPY binary (reference), then tensorcdc's snapshot (typed events, then JSON).
    let mut copy_rates = Vec::new();
    let mut snap_rates = Vec::new();
    let mut snap_json_rates = Vec::new();
    for round in 0..3 {
        let t = Instant::now();
        let s = c.copy_out("COPY mnist_train TO STDOUT (FORMAT binary)").await?;
        futures::pin_mut!(s);
        let mut bytes = 0usize;
        while let Some(chunk) = s.next().await {
            bytes += chunk?.len();
        }
        assert!(bytes > rows * 784);
        copy_rates.push(rows as f64 / t.elapsed().as_secs_f64());
        for json in [false, true] {
            let mut cfg = base.clone();
            cfg.slot_name = format!("snap_{round}_{json}");
            cfg.snapshot_mode = SnapshotMode::InitialOnly;
            let r = capture_rows(cfg, rows as u64, json).await?;
            if json {
                snap_json_rates.push(r)
            } else {
                snap_rates.push(r)
            }
        }
    }

    // Streaming: two slots created before the same inserts.
    create_reference_slot(&pg)?;
    let mut cfg = base.clone();
    cfg.slot_name = "tc".into();
    cfg.snapshot_mode = SnapshotMode::Never;
    cfg.status_interval_ms = 1000;
    create_capture_slot(&cfg).await?;
    c.batch_execute("TRUNCATE mnist_train").await?;
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &data, 500).await?;
    let end: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0);
    let recv_rate = recvlogical_rate(&pg, &end, rows as u64)?;
    // The TRUNCATE is one more message for tensorcdc.
    let stream_rate = capture_rows(cfg, rows as u64 + 1, false).await? * rows as f64 / (rows as f64 + 1.0);

    // Capture to Kafka: the snapshot of the same rows produced to librdkafka's mock cluster
    // (Debezium JSON without schema, 32 partitions: the mock keeps ~5 MiB each), timed until
    // every delivery report is in.
    let mock = rdkafka::mocking::MockCluster::new(1)?;
    let brokers = mock.bootstrap_servers();
    mock.create_topic("k.public.mnist_train", 32, 1)?;
    let mut cfg = base.clone();
    cfg.slot_name = "to_kafka".into();
    cfg.snapshot_mode = SnapshotMode::InitialOnly;
    cfg.topic_prefix = "k".into();
    cfg.converter.value = tensorcdc_change::json::Converter::Json { schemas: false };
    let mut ksink = tensorcdc_kafka::KafkaSink::new(&brokers, &[], cfg.converter)?;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let st = run_capture(cfg, tensorcdc_postgres::identity(), &mut ksink, rx, Default::default()).await?;
    let to_kafka = st.snapshot_rows as f64 / t.elapsed().as_secs_f64();

    let (copy, snap, snap_json) = (median(&mut copy_rates), median(&mut snap_rates), median(&mut snap_json_rates));
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "snapshot_rows_per_s": snap.round(),
            "snapshot_json_rows_per_s": snap_json.round(),
            "copy_binary_rows_per_s": copy.round(),
            "snapshot_vs_copy": (snap / copy * 100.0).round() / 100.0,
            "snapshot_json_vs_copy": (snap_json / copy * 100.0).round() / 100.0,
            "stream_rows_per_s": stream_rate.round(),
            "pg_recvlogical_rows_per_s": recv_rate.round(),
            "stream_vs_pg_recvlogical": (stream_rate / recv_rate * 100.0).round() / 100.0,
            "capture_to_kafka_rows_per_s": to_kafka.round(),
        })
    );
    Ok(())
}
