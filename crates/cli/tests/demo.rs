//! `tensorcdc demo` end to end on Fashion-MNIST: in-process, through Kafka (librdkafka's mock
//! cluster on loopback, and noida-db), and interrupted with Ctrl-C.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Lines;
use rdkafka::mocking::MockCluster;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn demo(out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_tensorcdc")).args(["demo", "--data", FASHION, "--out", out.to_str().unwrap()]).args(extra).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    for step in 1..=7 {
        assert!(stdout.contains(&format!("[{step}/7]")), "step {step} announced:\n{stdout}");
    }
    assert!(stdout.contains("== summary"), "{stdout}");
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

fn check_summary(s: &serde_json::Value, train: u64, test: u64) {
    assert_eq!(s["snapshot_rows"], train, "{s}");
    assert_eq!(s["train_rows"], train, "{s}");
    assert_eq!(s["test_rows"], test, "{s}");
    assert_eq!(s["manual_rows"], 5, "{s}");
    assert_eq!(s["rows_captured"], train + test + 5, "every captured row counted: {s}");
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.8, "{s}");
    assert_eq!(s["predictions_in_table"], 5, "{s}");
    for (key, size) in [("predictions", "predictions_size"), ("curves", "curves_size")] {
        let img = image::open(s["pictures"][key].as_str().unwrap()).unwrap();
        let want = &s["pictures"][size];
        assert_eq!((img.width() as u64, img.height() as u64), (want[0].as_u64().unwrap(), want[1].as_u64().unwrap()));
        assert!(img.width() >= 900 && img.height() >= 320);
    }
}

#[test]
fn demo_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let s = demo(dir.path(), &["--rows", "20000", "--test-rows", "3000"]);
    check_summary(&s, 20000, 3000);
    assert_eq!(s["transport"], "in-process");
    assert!(s["latency_p99_ms"].as_f64().unwrap() < 1000.0, "{s}");
}

#[test]
fn demo_through_kafka() {
    let mock = MockCluster::new(1).unwrap();
    // The mock keeps ~5 MiB a partition: spread the CSV topics (keyed by label, ~2.3 kB a
    // record: 10,000 rows are ~1,000 per label, and no three labels share one of 16 partitions).
    for (t, p) in [("tf.public.mnist_train", 16), ("tf.public.mnist_test", 8), ("tf.public.mnist_manual", 1)] {
        mock.create_topic(t, p, 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let s = demo(dir.path(), &["--rows", "10000", "--test-rows", "2000", "--kafka", &mock.bootstrap_servers()]);
    check_summary(&s, 10000, 2000);
    assert_eq!(s["transport"], "kafka");
}

/// The same against noida-db, a broker process of its own; capture makes the topics.
#[test]
fn demo_through_kafka_noida() {
    let noida = tensorcdc_kafka::testing::Noida::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = demo(dir.path(), &["--rows", "10000", "--test-rows", "2000", "--kafka", &noida.bootstrap()]);
    check_summary(&s, 10000, 2000);
    assert_eq!(s["transport"], "kafka");
}

fn postgres_running_on(dir: &Path) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(dir.to_str().unwrap())).unwrap_or(false))
}

#[test]
fn ctrl_c_leaves_nothing_behind_and_a_second_run_works() {
    let dir = tempfile::tempdir().unwrap();
    let pg = dir.path().join("pg");
    let out = dir.path().join("out");
    for stop_at in ["[3/7]", "[5/7]"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .args(["demo", "--data", FASHION, "--out", out.to_str().unwrap(), "--pg-data", pg.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Lines::of(child.stdout.take().unwrap());
        loop {
            let l = lines.next(300, "demo's steps").expect("demo ended before the step");
            if l.starts_with(stop_at) {
                break;
            }
        }
        assert!(pg.join("PG_VERSION").exists() && postgres_running_on(&pg));
        let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let code = child.wait().unwrap();
        assert!(!code.success(), "interrupted demo exits non-zero");
        assert!(!pg.exists(), "data directory removed after Ctrl-C at {stop_at}");
        assert!(!postgres_running_on(&pg), "no postgres left after Ctrl-C at {stop_at}");
    }
    let s = demo(&out, &["--rows", "5000", "--test-rows", "1000", "--pg-data", pg.to_str().unwrap()]);
    check_summary(&s, 5000, 1000);
    assert!(!pg.exists());
}

#[test]
fn manual_psql_f_while_evaluate_waits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args(["demo", "--data", FASHION, "--out", out.to_str().unwrap(), "--rows", "3000", "--test-rows", "400", "--manual", "--stream-timeout", "3000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let cmd = loop {
        let l = lines.next(300, "demo's steps").expect("demo ended before waiting");
        if let Some(rest) = l.strip_prefix("waiting for rows: psql ") {
            break rest.to_string();
        }
    };
    // `psql '<url>' -f <file>`, exactly as printed.
    let url = cmd.split('\'').nth(1).unwrap().to_string();
    let file = cmd.rsplit(' ').next().unwrap().to_string();
    let bin = tensorcdc_localpg::find_bin_dir().unwrap().join("psql");
    let st = Command::new(bin).args([url.as_str(), "-q", "-f", file.as_str()]).stdout(Stdio::null()).status().unwrap();
    assert!(st.success());
    let rest = lines.rest(300, "demo after the manual rows");
    assert!(child.wait().unwrap().success(), "{rest:?}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["test_rows"], 400, "{s}");
    assert_eq!(s["predictions_in_table"], 5, "{s}");
}
