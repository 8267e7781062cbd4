//! `tensorcdc demo`: the blog post's whole story in one command, on one machine.
//!
//! 1. MNIST files (--data DIR, or --download).
//! 2. Postgres: a private cluster (localpg) or --postgres URL.
//! 3. Load mnist_train.
//! 4. Capture (snapshot, then the stream), in-process or to Kafka (--kafka).
//! 5. Train from the captured rows.
//! 6. Evaluate on mnist_test while its rows are inserted.
//! 7. mnist_manual: five test rows, predicted live, written to mnist_predictions.
//!
//! Then pictures and a summary (also written as summary.json).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tensorcdc_change::{ChannelSink, Message, Sink};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::{Example, Examples};
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_model::argmax;
use tensorcdc_model::sequential::checkpoint::Served;
use tensorcdc_model::sequential::{FitMetrics, FitSettings};
use tensorcdc_postgres::{run_capture, CaptureConfig, CaptureStats, Transform};
use tensorcdc_source::{SourceConfig, Stream};
use tokio::sync::mpsc;

use crate::follow::{percentile, predict_items, TableWriter};
use crate::source::{model_version, Item};
use crate::{pictures, train};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Directory holding the four MNIST files (Fashion-MNIST works too).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Names of the ten classes in the terminal and the pictures: digits, fashion, or ten
    /// names separated by commas (default: fashion for a Fashion-MNIST folder, else digits).
    #[arg(long)]
    pub classes: Option<String>,
    /// Download MNIST into --data (default ./mnist) first.
    #[arg(long)]
    pub download: bool,
    /// Base URL of the MNIST mirror for --download.
    #[arg(long, default_value = crate::download::DEFAULT_URL)]
    pub url: String,
    /// Use an existing Postgres (wal_level=logical) instead of a private one.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Send the stream through Kafka (HOST:PORT) instead of in-process delivery.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Data directory of the private Postgres (default: a temporary one).
    #[arg(long)]
    pub pg_data: Option<PathBuf>,
    /// Keep the private Postgres' data directory.
    #[arg(long)]
    pub keep: bool,
    /// Training rows (default: all).
    #[arg(long)]
    pub rows: Option<usize>,
    /// Test rows (default: all).
    #[arg(long)]
    pub test_rows: Option<usize>,
    /// Passes over the training rows (the blog's model.fit(epochs=5)).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Where pictures, the model and summary.json go.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Do not insert the test rows: wait for `psql -f mnist_test.sql`, as in the blog.
    #[arg(long)]
    pub manual: bool,
    /// Evaluation ends this many ms after the last test row (or, with --manual, after the
    /// last row once rows have started).
    #[arg(long, default_value_t = 5000)]
    pub stream_timeout: u64,
}

fn step(n: usize, what: &str) {
    println!("\n[{n}/7] {what}");
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let shutdown = crate::capture::shutdown_signal();
        let mut stop = shutdown.clone();
        tokio::select! {
            r = run(a, shutdown) => r,
            _ = async { while !*stop.borrow() { if stop.changed().await.is_err() { std::future::pending::<()>().await } } } => {
                eprintln!("\ninterrupted: stopping capture and the private Postgres");
                Err(anyhow::anyhow!("interrupted"))
            }
        }
    });
    // Dropping the runtime ends capture tasks; the private Postgres was stopped when `run`
    // (which owns it) was dropped.
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn run(a: DemoArgs, _shutdown: tokio::sync::watch::Receiver<bool>) -> Result<()> {
    let t_all = Instant::now();
    let mut times: Vec<(&str, Duration)> = Vec::new();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;

    step(1, "MNIST files");
    let t = Instant::now();
    let data = match (&a.data, a.download) {
        (Some(d), false) => d.clone(),
        (d, true) => {
            let d = d.clone().unwrap_or_else(|| PathBuf::from("mnist"));
            crate::download::download(&a.url, &d, true)?;
            d
        }
        (None, false) => bail!(
            "no MNIST files: pass --download to fetch them, or --data DIR with the four files \
             (offline: `apt-get install dataset-fashion-mnist`, then --data /usr/share/datasets/fashion-mnist)"
        ),
    };
    let classes = match &a.classes {
        Some(c) => mnist::class_names(c).map_err(anyhow::Error::msg)?,
        None => mnist::class_names_of_dir(&data),
    };
    let mut train_set = mnist::load(&data, Split::Train)?;
    let mut test_set = mnist::load(&data, Split::Test)?;
    if let Some(n) = a.rows {
        train_set = train_set.truncate(n);
    }
    if let Some(n) = a.test_rows {
        test_set = test_set.truncate(n);
    }
    println!("{} training and {} test images from {}", train_set.len(), test_set.len(), data.display());
    // mnist2sql, as the blog's first step: the files psql -f loads.
    for (split, set) in [(Split::Train, &train_set), (Split::Test, &test_set)] {
        let path = a.out.join(format!("{}.sql", split.table()));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        mnist::write_sql(&mut w, split.table(), set)?;
        std::io::Write::flush(&mut w)?;
        println!("mnist2sql: {} ({} rows)", path.display(), set.len());
    }
    times.push(("data", t.elapsed()));

    step(2, "Postgres");
    let t = Instant::now();
    let _pg: Option<LocalPg>;
    let url = match &a.postgres {
        Some(u) => {
            _pg = None;
            u.clone()
        }
        None => {
            let pg = LocalPg::start(Options { data_dir: a.pg_data.clone(), keep: a.keep, no_fsync: true, ..Default::default() })?;
            println!("private PostgreSQL on port {} (data in {}{})", pg.port(), pg.data_dir().display(), if a.keep { ", kept" } else { ", removed at exit" });
            let u = pg.url("postgres");
            _pg = Some(pg);
            u
        }
    };
    let shown = tensorcdc_postgres::conn::redact(&url);
    println!("connect with: psql '{shown}'");
    let client = tensorcdc_postgres::conn::connect(&url).await.with_context(|| format!("connecting to {shown}"))?;
    for t in ["mnist_train", "mnist_test", "mnist_manual", "mnist_predictions"] {
        client.batch_execute(&format!("DROP TABLE IF EXISTS {t}")).await?;
    }
    times.push(("postgres", t.elapsed()));

    step(3, "Load mnist_train");
    let t = Instant::now();
    let loaded = tensorcdc_postgres::load::load_examples(&client, "mnist_train", &train_set, 5000).await?;
    if !a.manual {
        client.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_test")).await?;
    }
    println!("{loaded} rows in mnist_train");
    times.push(("load", t.elapsed()));

    step(4, "Capture: snapshot, then the WAL stream");
    let t = Instant::now();
    let mut cfg = CaptureConfig::default();
    cfg.set_connection(&url)?;
    cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.mnist_.*")?;
    // The predictions the demo writes back are not training data.
    cfg.exclude = tensorcdc_postgres::config::parse_table_list("table.exclude.list", "public.mnist_predictions")?;
    cfg.slot_name = format!("tensorcdc_demo_{}", std::process::id());
    // The demo's slot lives as long as its connection (no offsets file, nothing left behind).
    cfg.temporary_slot = true;
    cfg.status_interval_ms = 1000;
    let stats = Arc::new(Mutex::new(CaptureStats::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // In-process, the one capture's messages are split by table, each read as a stream.
    let (sink, mut routes): (Box<dyn Sink>, Vec<mpsc::Receiver<Message>>) = match &a.kafka {
        Some(brokers) => {
            // The blog's chain: unwrap, then MnistToCsv, string converter.
            cfg.converter.key = tensorcdc_change::json::Converter::String;
            cfg.converter.value = tensorcdc_change::json::Converter::String;
            (Box::new(tensorcdc_kafka::KafkaSink::new(brokers, &[], cfg.converter)?), Vec::new())
        }
        None => {
            let (s, rx) = ChannelSink::new(8192);
            (Box::new(s), tensorcdc_source::route(rx, &[".mnist_train", ".mnist_test", ".mnist_manual"], 8192))
        }
    };
    let transform: Transform = if a.kafka.is_some() {
        let chain = tensorcdc_transforms::Chain(vec![
            tensorcdc_transforms::Transform::Unwrap { drop_tombstones: true, delete_handling: tensorcdc_transforms::DeleteHandling::Drop, add_fields: vec![] },
            tensorcdc_transforms::Transform::MnistCsv { label_field: "label".into(), pixels_field: "pixels".into() },
        ]);
        Arc::new(move |m, out| out.extend(chain.apply(m)))
    } else {
        tensorcdc_postgres::identity()
    };
    let st = stats.clone();
    let capture = tokio::spawn(async move {
        let mut sink = sink;
        run_capture(cfg, transform, sink.as_mut(), stop_rx, st).await
    });
    println!("slot {} on publication dbz_publication, tables public.mnist_.*", format_args!("tensorcdc_demo_{}", std::process::id()));

    step(5, "Train from the captured rows");
    // One source per table: the routed in-process messages, or the Kafka topics.
    let in_process = |rx: mpsc::Receiver<Message>, timeout_ms: i64| Stream::from_channel(rx, stats.clone(), &SourceConfig::default(), timeout_ms);
    let mut routes = routes.drain(..);
    let (train_rx, test_rx, manual_rx) = (routes.next(), routes.next(), routes.next());
    let captured_train: Examples = match (train_rx, &a.kafka) {
        (Some(rx), _) => {
            let mut s = in_process(rx, -1);
            let mut ex = Examples::default();
            while ex.len() < loaded as usize {
                for it in s.next_batch(4096).await?.context("capture stopped")? {
                    ex.push(&it.example);
                }
            }
            ex
        }
        (None, Some(brokers)) => {
            // Wait for the snapshot to be delivered, then read the topic to its end.
            while !stats.lock().expect("stats").streaming {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tensorcdc_source::bounded_examples(&SourceConfig::kafka(brokers, "tf.public.mnist_train", None), Split::Train).await?.0
        }
        _ => unreachable!("either in-process routes or Kafka"),
    };
    println!("captured {} rows ({} by the snapshot) in {}", captured_train.len(), stats.lock().expect("stats").snapshot_rows, secs(t.elapsed()));
    times.push(("capture", t.elapsed()));
    let t = Instant::now();
    let cfg = FitSettings { epochs: a.epochs, threads: 0, ..Default::default() };
    let (trainer, ends) = train::fit(&tensorcdc_model::sequential::Data::images(&captured_train.pixels, &captured_train.labels), cfg)?;
    let model_dir = a.out.join("model");
    train::save(&trainer, &model_dir)?;
    let curves = a.out.join("curves.png");
    train::curves(&curves, &ends)?;
    let predictor = Served::Seq(trainer.predictor());
    let train_acc = ends.last().map(|e| e.metrics.accuracy()).unwrap_or(0.0);
    times.push(("train", t.elapsed()));

    step(6, "Evaluate on mnist_test while its rows are inserted");
    let t = Instant::now();
    let test_path = a.out.join("mnist_test.sql");
    if a.manual {
        // The table does not exist yet: capture picks it up from its first row.
        println!("waiting for rows: psql '{shown}' -f {}", test_path.display());
    } else {
        let c2 = url.clone();
        let rows = test_set.clone();
        tokio::spawn(async move {
            let c = tensorcdc_postgres::conn::connect(&c2).await?;
            tensorcdc_postgres::load::load_examples(&c, "mnist_test", &rows, 500).await.map_err(anyhow::Error::from)
        });
    }
    let want = if a.manual { usize::MAX } else { test_set.len() };
    let mut m = FitMetrics::default();
    let mut next_line = 0usize;
    let every = (test_set.len() / 10).max(1);
    let (mut px, mut labels) = (Vec::new(), Vec::new());
    // In-process the stream ends `stream_timeout` after the last row; with --manual it waits
    // for the first row first. Through Kafka the consumer group's stream timeout does both.
    let mut test_stream = match (test_rx, &a.kafka) {
        (Some(rx), _) => in_process(rx, if a.manual { -1 } else { a.stream_timeout as i64 }),
        (None, Some(b)) => Stream::open(&SourceConfig::kafka(b, "tf.public.mnist_test", Some("mnistcg")), "mnist_test", a.stream_timeout as i64).await?,
        _ => unreachable!("either in-process routes or Kafka"),
    };
    while m.n < want {
        let batch: Vec<Example> = match test_stream.next_batch(500).await? {
            Some(items) => items.into_iter().map(|i| i.example).collect(),
            None => break,
        };
        if a.manual && m.n == 0 && a.kafka.is_none() {
            test_stream.set_timeout_ms(a.stream_timeout as i64);
        }
        px.clear();
        labels.clear();
        for e in &batch {
            px.extend_from_slice(&e.pixels[..]);
            labels.push(e.label);
        }
        train::evaluate_batch(&predictor, &px, &labels, &mut m)?;
        // Accuracy as rows arrive: a line about every tenth of the test set.
        if m.n >= next_line || m.n >= want {
            println!("rows: {:>6} - loss: {:.4} - accuracy: {:.4}", m.n, m.loss(), m.accuracy());
            next_line = m.n + every;
        }
    }
    test_stream.close().await?;
    println!("test: {} rows - loss: {:.4} - accuracy: {:.4}", m.n, m.loss(), m.accuracy());
    times.push(("evaluate", t.elapsed()));

    step(7, "mnist_manual: five rows, predicted live");
    let t = Instant::now();
    let writer = TableWriter::new(&url, "mnist_predictions").await?;
    // As the blog: head -5 mnist_test.sql | sed s/test/manual/ | psql
    let five = test_set.clone().truncate(5);
    let mut sql = Vec::new();
    mnist::write_sql(&mut sql, "mnist_manual", &five)?;
    client.batch_execute(&String::from_utf8(sql)?).await?;
    let version = model_version(&model_dir);
    let mut manual_stream = match (manual_rx, &a.kafka) {
        (Some(rx), _) => in_process(rx, 30_000),
        (None, Some(b)) => Stream::open(&SourceConfig::kafka(b, "tf.public.mnist_manual", Some("predict")), "mnist_manual", 30_000).await?,
        _ => unreachable!("either in-process routes or Kafka"),
    };
    let mut preds = Vec::new();
    let mut latencies = Vec::new();
    let mut shown: Vec<(Vec<u8>, String)> = Vec::new();
    while preds.len() < five.len() {
        let items: Vec<Item> = manual_stream.next_batch(5).await?.context("no mnist_manual row within 30 s")?;
        for (it, p) in items.iter().zip(predict_items(&predictor, &version, &classes, &items)?) {
            let (predicted, truth) = (p.class_name.clone().unwrap_or_default(), &classes[it.example.label as usize]);
            print!("{}", pictures::terminal(&it.example.pixels[..]));
            println!(
                "row {}: predicted {} ({:.1}%), true {}, commit-to-prediction {}",
                p.key.as_deref().unwrap_or("?"),
                predicted,
                p.probability.unwrap_or_default() * 100.0,
                truth,
                p.latency_ms.map(|l| format!("{l:.1} ms")).unwrap_or_else(|| "-".into())
            );
            writer.write(&p).await?;
            if let Some(l) = p.latency_ms {
                latencies.push(l);
            }
            shown.push((it.example.pixels.to_vec(), format!("{predicted} (TRUE {truth})")));
            preds.push(p);
        }
    }
    manual_stream.close().await?;
    times.push(("predict", t.elapsed()));
    let n_pred: i64 = client.query_one("SELECT count(*) FROM mnist_predictions", &[]).await?.get(0);

    // Pictures: the manual digits and the first test digits, with predicted and true labels.
    let grid_path = a.out.join("predictions.png");
    let extra = test_set.clone().truncate(9);
    let probs = train::predict_pixels(&predictor, &extra.pixels)?;
    for i in 5..extra.len() {
        shown.push((extra.image(i).to_vec(), format!("{} (TRUE {})", classes[argmax(&probs[i]).0], classes[extra.labels[i] as usize])));
    }
    let panels: Vec<pictures::Panel> = shown.iter().map(|(px, t)| pictures::Panel { pixels: px, title: t.clone() }).collect();
    let (gw, gh) = pictures::grid_png(&grid_path, &panels, 3)?;

    let _ = stop_tx.send(true);
    let cap_stats = match tokio::time::timeout(Duration::from_secs(30), capture).await {
        Ok(Ok(Ok(s))) => s,
        Ok(Ok(Err(e))) => return Err(e.into()),
        _ => stats.lock().expect("stats").clone(),
    };
    let captured = cap_stats.snapshot_rows + cap_stats.streamed_changes;
    let p50 = percentile(&latencies, 50.0).unwrap_or(f64::NAN);
    let p99 = percentile(&latencies, 99.0).unwrap_or(f64::NAN);
    let summary = serde_json::json!({
        "rows_captured": captured,
        "snapshot_rows": cap_stats.snapshot_rows,
        "streamed_rows": cap_stats.streamed_changes,
        "train_rows": captured_train.len(),
        "test_rows": m.n,
        "manual_rows": preds.len(),
        "train_accuracy": train_acc,
        "test_accuracy": m.accuracy(),
        "test_loss": m.loss(),
        "predictions_in_table": n_pred,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "steps_s": times.iter().map(|(k, d)| (k.to_string(), serde_json::json!((d.as_secs_f64() * 100.0).round() / 100.0))).collect::<serde_json::Map<_, _>>(),
        "total_s": (t_all.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        "pictures": {"predictions": grid_path, "predictions_size": [gw, gh], "curves": curves, "curves_size": [960, 320]},
        "transport": if a.kafka.is_some() { "kafka" } else { "in-process" },
    });
    std::fs::write(a.out.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    println!("\n== summary");
    println!("rows captured:   {captured} ({} snapshot + {} streamed)", cap_stats.snapshot_rows, cap_stats.streamed_changes);
    println!("train accuracy:  {train_acc:.4} (last epoch)   test accuracy: {:.4} on {} rows", m.accuracy(), m.n);
    println!("latency:         p50 {p50:.1} ms, p99 {p99:.1} ms (commit to prediction, {} rows)", latencies.len());
    println!("predictions:     {n_pred} rows in mnist_predictions");
    println!("steps:           {}", times.iter().map(|(k, d)| format!("{k} {}", secs(*d))).collect::<Vec<_>>().join(", "));
    println!("pictures:        {} ({gw}x{gh}), {}", grid_path.display(), curves.display());
    println!("summary:         {}", a.out.join("summary.json").display());
    Ok(())
}
