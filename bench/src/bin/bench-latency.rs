//! Commit-to-prediction latency: rows inserted one per transaction at a steady rate into
//! `mnist_manual`, captured, decoded and classified; latency = prediction time minus the
//! transaction's commit time (Postgres' commit timestamp, ms resolution). Measured
//! in-process (typed events over a channel) and through Kafka (librdkafka's mock cluster on
//! loopback, Debezium JSON, a consumer group), in the same run.
//!
//! Usage: bench-latency [ROWS] [ROWS_PER_S]. Prints a JSON line.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::mocking::MockCluster;
use tensorcdc_change::ChannelSink;
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::{decode, from_message, DecodeOptions, Position};
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_model::default_device;
use tensorcdc_model::sequential::{Data, FitSettings, Loss, SeqPredictor, SeqTrainer, SequentialSpec};
use tensorcdc_postgres::{run_capture, CaptureConfig, CaptureStats};
use tokio_postgres::NoTls;

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1e3
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

async fn insert_steady(url: String, table: String, rows: tensorcdc_dataset::Examples, per_s: f64) -> Result<()> {
    let (c, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(conn);
    let stmt = c.prepare(&format!("INSERT INTO {table}(label, pixels) VALUES ($1, $2)")).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s));
    for i in 0..rows.len() {
        tick.tick().await;
        c.execute(&stmt, &[&(rows.labels[i] as i16), &rows.image(i)]).await?;
    }
    Ok(())
}

fn config(pg: &LocalPg, table: &str, slot: &str) -> Result<CaptureConfig> {
    let mut cfg = CaptureConfig::default();
    cfg.set_connection(&pg.url("postgres"))?;
    cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", &format!("public\\.{table}"))?;
    cfg.slot_name = slot.into();
    cfg.status_interval_ms = 1000;
    Ok(cfg)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(300);
    let per_s: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50.0);
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    let train = mnist::load(dir, Split::Train)?.truncate(5000);
    let rows = mnist::load(dir, Split::Test)?.truncate(n);
    let settings = FitSettings { epochs: 1, threads: 0, ..Default::default() };
    let mut trainer = SeqTrainer::new(SequentialSpec::mnist(), Loss::SparseCategoricalCrossentropy, settings, &default_device())?;
    trainer.fit_epoch(&Data::images(&train.pixels, &train.labels), |_| {});
    let predictor: SeqPredictor = trainer.predictor();
    let predict = |px: &[u8]| predictor.predict(&Data::images(px, &[]).x, 784);
    let pg = LocalPg::start(Options::default())?;
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_manual")).await?;
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_kafka")).await?;
    let opts = DecodeOptions::default();

    // In-process.
    let (mut sink, mut rx) = ChannelSink::new(1024);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let stats = Arc::new(Mutex::new(CaptureStats::default()));
    let st = stats.clone();
    let cfg = config(&pg, "mnist_manual", "lat_inproc")?;
    let cap = tokio::spawn(async move { run_capture(cfg, tensorcdc_postgres::identity(), &mut sink, stop_rx, st).await });
    while !stats.lock().unwrap().streaming {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("in-process: streaming; inserting {n} rows at {per_s}/s");
    let ins = tokio::spawn(insert_steady(pg.conninfo("postgres"), "mnist_manual".into(), rows.clone(), per_s));
    let mut inproc = Vec::with_capacity(n);
    while inproc.len() < n {
        let m = rx.recv().await.expect("capture runs");
        if let Some(e) = from_message(&m, &opts)? {
            let p = predict(&e.pixels[..])?;
            std::hint::black_box(&p);
            inproc.push(now_ms() - m.commit_ts_ms as f64);
        }
    }
    ins.await??;
    stop.send(true)?;
    drop(rx);
    let _ = cap.await;

    eprintln!("in-process: done");
    // Through Kafka.
    let mock = MockCluster::new(1)?;
    let brokers = mock.bootstrap_servers();
    mock.create_topic("tf.public.mnist_kafka", 1, 1)?;
    let mut ksink = tensorcdc_kafka::KafkaSink::new(&brokers, &[], Default::default())?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let stats = Arc::new(Mutex::new(CaptureStats::default()));
    let st = stats.clone();
    let cfg = config(&pg, "mnist_kafka", "lat_kafka")?;
    let cap = tokio::spawn(async move { run_capture(cfg, tensorcdc_postgres::identity(), &mut ksink, stop_rx, st).await });
    let mut reader = tensorcdc_kafka::GroupReader::new(&brokers, &["tf.public.mnist_kafka".to_string()], "latency", "earliest", -1, &[])?;
    while !stats.lock().unwrap().streaming {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One warm-up row: the group has joined and fetches once it arrives, as a long-running
    // predictor would have.
    c.execute("INSERT INTO mnist_kafka(label, pixels) VALUES (0, NULL)", &[]).await?;
    let warm = Instant::now();
    let b = reader.next_batch(1, Duration::ZERO).await?.unwrap_or_default();
    reader.done_with(&b)?;
    eprintln!("kafka: group ready after {:?}", warm.elapsed());
    eprintln!("kafka: streaming; inserting");
    let ins = tokio::spawn(insert_steady(pg.conninfo("postgres"), "mnist_kafka".into(), rows.clone(), per_s));
    let mut kafka = Vec::with_capacity(n);
    while kafka.len() < n {
        let Some(batch) = reader.next_batch(64, Duration::from_millis(0)).await? else { break };
        for r in &batch {
            let what = Position::Kafka { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
            if let Some(e) = decode(r.key.as_deref(), r.value.as_deref(), &what, &opts)? {
                let p = predict(&e.pixels[..])?;
                std::hint::black_box(&p);
                kafka.push(now_ms() - r.timestamp_ms.unwrap_or(0) as f64);
            }
        }
        reader.done_with(&batch)?;
    }
    ins.await??;
    stop.send(true)?;
    let _ = cap.await;
    println!(
        "{}",
        serde_json::json!({
            "rows": n, "rows_per_s": per_s,
            "inprocess_p50_ms": pct(&mut inproc, 50.0), "inprocess_p99_ms": pct(&mut inproc, 99.0),
            "kafka_p50_ms": pct(&mut kafka, 50.0), "kafka_p99_ms": pct(&mut kafka, 99.0),
        })
    );
    Ok(())
}
