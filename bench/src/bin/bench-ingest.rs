//! Ingestion: records/s from a CSV topic into batches of 64 (784 f32 pixels / 255 and a
//! label each), tensorcdc against TF-IO's `from_kafka` + `decode_csv` + `batch` on the same
//! broker and data, in the same run. The broker is librdkafka's mock cluster on loopback;
//! the topic holds 2,000 Fashion-MNIST records in one partition (it keeps ~5 MiB).
//!
//! Usage: bench-ingest [PYTHON] [RECORDS]. Prints a JSON line.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::{decode, DecodeOptions, Examples, Position};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let python = args.get(1).cloned().unwrap_or_else(|| "bench/.venv/bin/python".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let data = mnist::load(Path::new("/usr/share/datasets/fashion-mnist"), Split::Train)?.truncate(n);
    let mock = MockCluster::new(1)?;
    let brokers = mock.bootstrap_servers();
    let topic = "tf.public.mnist_train";
    mock.create_topic(topic, 1, 1)?;
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "5").create()?;
    for i in 0..data.len() {
        let csv: Vec<String> = data.image(i).iter().map(|p| p.to_string()).collect();
        let (key, value) = (data.labels[i].to_string(), csv.join(","));
        producer.send(BaseRecord::to(topic).key(&key).payload(&value)).map_err(|(e, _)| e)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;

    // Reference: TF-IO in a separate process against the same broker.
    let out = if python == "none" {
        std::process::Command::new("true").output()?
    } else {
        std::process::Command::new(&python).args(["bench/tfio_ingest.py", &brokers, topic, "3"]).output()?
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let tfio: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or_default();

    // tensorcdc: bounded read -> decode -> batches of 64 f32 tensors' worth of data.
    let opts = DecodeOptions::default();
    let extra = tensorcdc_kafka::settings(
        &std::env::var("BENCH_KAFKA").map(|v| v.split(' ').filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>()).unwrap_or_default(),
    )?;
    let mut rates = Vec::new();
    let mut batches = 0;
    let mut seen = 0usize;
    for _ in 0..5 {
        let t = Instant::now();
        let mut ex = Examples::default();
        let (mut px, mut labels) = (Vec::new(), Vec::new());
        batches = 0;
        seen = 0;
        let mut first = Duration::ZERO;
        let mut last = Instant::now();
        tensorcdc_kafka::read_bounded(&brokers, topic, Some(0), 0, false, &extra, Duration::from_secs(10), |r| {
            let what = Position::Kafka { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
            seen += 1;
            if seen == 1 {
                first = t.elapsed();
            }
            if std::env::var("BENCH_GAPS").is_ok() && last.elapsed() > Duration::from_millis(20) {
                eprintln!("gap of {:?} before offset {}", last.elapsed(), r.offset);
            }
            last = Instant::now();
            if let Ok(Some(e)) = decode(r.key.as_deref(), r.value.as_deref(), &what, &opts) {
                ex.push(&e);
                if ex.len() == 64 {
                    let idx: Vec<usize> = (0..64).collect();
                    ex.gather(&idx, &mut px, &mut labels);
                    ex = Examples::default();
                    batches += 1;
                }
            }
            Ok(())
        })?;
        if !ex.is_empty() {
            let idx: Vec<usize> = (0..ex.len()).collect();
            ex.gather(&idx, &mut px, &mut labels);
            batches += 1;
        }
        eprintln!("first record after {first:?}, all after {:?}", t.elapsed());
        rates.push(seen as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ours = rates[rates.len() / 2];
    let mut theirs: Vec<f64> = tfio["rates"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default();
    theirs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let theirs_med = theirs.get(theirs.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{}",
        serde_json::json!({
            "records": n,
            "batches": batches,
            "read": seen,
            "tensorcdc_records_per_s": ours.round(),
            "tfio_records_per_s": theirs_med.round(),
            "ratio": (ours / theirs_med * 10.0).round() / 10.0,
            "tfio_error": if theirs.is_empty() { String::from_utf8_lossy(&out.stderr).lines().rev().take(8).collect::<Vec<_>>().join(" | ") } else { String::new() },
        })
    );
    Ok(())
}
