//! Features from any columns, the same from every source: a `loans` table with a column of
//! every kind (numeric, int, float8, boolean, text, enum, bytea, float4[], date), NULLs, an
//! update and a delete, read in-process (typed events) and through Kafka (capture writing
//! Debezium JSON with schemas to noida-db). The keyed sets match, and the fitted feature
//! spec encodes every row of both to the same features and targets.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tensorcdc_change::ChannelSink;
use tensorcdc_dataset::decode::key_text;
use tensorcdc_dataset::features::cell::{change_of_json, change_of_message};
use tensorcdc_dataset::features::{Change, EncodeError, FeatureSpec, KeyedRecords, SpecOptions, Target};
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_postgres::CaptureConfig;
use tokio_postgres::NoTls;

mod common;

const SETUP: &str = "CREATE TYPE grade AS ENUM ('A', 'B', 'C');
CREATE TABLE loans(id serial PRIMARY KEY, income numeric(10,2), age int, rate float8, owner boolean, city text,
  grade grade, photo bytea, scores float4[], opened date, defaulted boolean)";

const CHANGES: &str = "INSERT INTO loans(income, age, rate, owner, city, grade, photo, scores, opened, defaulted) VALUES
  (52000.50, 31, 0.051, true, 'Lyon', 'A', '\\x00ff10', '{1.5,2.5}', '2021-03-04', false),
  (18000.00, 45, 0.120, false, 'Oslo', 'C', '\\x0a0b0c', '{0.5,0.25}', '2019-12-31', true),
  (99000.99, 28, 0.033, true, 'Lyon', 'B', '\\x010203', '{3,4}', '2023-07-01', false),
  (NULL, 52, 0.090, false, 'Pune', 'B', '\\x040506', '{1,1}', '2020-01-01', true),
  (41000.00, NULL, 0.070, true, NULL, 'A', '\\x070809', '{2,2}', '2022-02-02', false),
  (23000.25, 39, 0.110, false, 'Oslo', 'C', '\\xfffefd', '{0,8}', '2018-05-05', true);
UPDATE loans SET income = 60000.00, city = 'Porto' WHERE id = 1;
DELETE FROM loans WHERE id = 3;";

fn keyed(changes: impl IntoIterator<Item = Change>) -> KeyedRecords {
    let mut set = KeyedRecords::default();
    for c in changes {
        set.apply(c);
    }
    set
}

/// key → (features, target), or the reason the row was skipped.
fn encode_all(spec: &FeatureSpec, set: &KeyedRecords) -> BTreeMap<String, Result<(Vec<f32>, Target), EncodeError>> {
    set.iter()
        .map(|r| {
            let mut x = Vec::new();
            let res = spec.encode(r, &mut x).and_then(|_| spec.target(r)).map(|t| (x, t));
            (r.key.clone().unwrap(), res)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_kind_the_same_in_process_and_through_kafka() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(SETUP).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // In-process capture into a channel.
    let mut cfg = CaptureConfig::default();
    cfg.set_connection(&pg.url("postgres")).unwrap();
    cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.loans").unwrap();
    cfg.slot_name = "inproc".into();
    cfg.temporary_slot = true;
    let (mut sink, mut rx) = ChannelSink::new(1024);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(async move {
        tensorcdc_postgres::run_capture(cfg, tensorcdc_postgres::identity(), &mut sink, stop_rx, Arc::new(Mutex::new(Default::default()))).await
    });

    // Capture to Kafka (noida-db) as Debezium JSON with schemas.
    let noida = tensorcdc_kafka::testing::Noida::start().unwrap();
    let brokers = noida.bootstrap();
    let _cap = common::Kill(
        Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .env("TENSORCDC_STATE_DIR", dir.path())
            .args(["capture", "--postgres", &pg.url("postgres"), "--kafka", &brokers, "--table-include-list", "public.loans", "--slot-name", "tokafka"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = c.query_one("SELECT count(*) FROM pg_replication_slots WHERE active", &[]).await.unwrap().get(0);
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both captures streaming within 60 s ({n} slots active)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.batch_execute(CHANGES).await.unwrap();

    // 6 inserts, an update, a delete and its tombstone.
    let mut typed = Vec::new();
    while typed.len() < 9 {
        let m = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("in-process events within 60 s").expect("capture running");
        typed.push(change_of_message(&m));
    }
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();
    let topic = "tf.public.loans";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < 9 {
        assert!(Instant::now() < deadline, "{} of 9 records in {topic} after 60 s", records.len());
        records.clear();
        let b = brokers.clone();
        records = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let _ = tensorcdc_kafka::read_bounded(&b, topic, None, 0, false, &[], Duration::from_secs(10), |r| {
                out.push(r);
                Ok(())
            });
            out
        })
        .await
        .unwrap();
    }
    let from_kafka: Vec<Change> = records
        .iter()
        .map(|r| {
            let what = format!("{}/{}@{}", r.topic, r.partition, r.offset);
            change_of_json(r.value.as_deref(), r.key.as_deref().map(key_text), &what).unwrap()
        })
        .collect();

    let a = keyed(typed);
    let b = keyed(from_kafka);
    assert_eq!((a.len(), b.len()), (5, 5), "6 rows, one deleted");
    let keys = |s: &KeyedRecords| s.iter().map(|r| r.key.clone().unwrap()).collect::<Vec<_>>();
    assert_eq!(keys(&a), ["1", "2", "4", "5", "6"]);
    assert_eq!(keys(&a), keys(&b));
    assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>(), "the same cells from typed events and Debezium JSON");

    let spec = FeatureSpec::fit(a.iter(), &SpecOptions { label: "defaulted".into(), exclude: vec!["id".into()], ..Default::default() }).unwrap();
    let widths: Vec<(&str, usize)> = spec.columns.iter().map(|c| (c.name.as_str(), c.width)).collect();
    // city: Oslo, Porto, Pune (+1 unseen: Lyon went with the update and the delete);
    // grade: A, B, C (+1).
    assert_eq!(widths, [("income", 1), ("age", 1), ("rate", 1), ("owner", 1), ("city", 4), ("grade", 4), ("photo", 3), ("scores", 2), ("opened", 1)]);
    let ea = encode_all(&spec, &a);
    assert_eq!(ea, encode_all(&spec, &b));
    // The updated row has its new income; NULL rows are skipped, naming the column.
    assert_eq!(ea["4"], Err(EncodeError::Null("income".into())));
    assert_eq!(ea["5"], Err(EncodeError::Null("age".into())));
    let (x1, t1) = ea["1"].clone().unwrap();
    assert_eq!((x1.len(), t1), (spec.width(), Target::Class(0)));
    assert_eq!(&x1[12..15], &[0.0, 1.0, 16.0 / 255.0], "photo bytes / 255");
    assert_eq!(&x1[15..17], &[1.5, 2.5], "array elements");
    let incomes = [60000.0, 18000.0, 41000.0, 23000.25];
    let mean = incomes.iter().sum::<f64>() / 4.0;
    assert!((spec.columns[0].shift - mean).abs() < 1e-6, "income's mean over the non-NULL training rows: {} vs {mean}", spec.columns[0].shift);

    // The CLI on the same table: train (NULLs imputed), predict a raw row with a city never
    // seen, and follow the table (its five rows from the snapshot, then a new one).
    let bin = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
        c.env("TENSORCDC_STATE_DIR", dir.path());
        c
    };
    let model = dir.path().join("model");
    let out = bin()
        .args([
            "train",
            "--source",
            &pg.url("postgres"),
            "--table",
            "loans",
            "--label",
            "defaulted",
            "--nulls",
            "impute",
            "--epochs",
            "3",
            "--out",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("training on 5 rows") && text.contains("2 classes (false, true)"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = r#"{"income": 50000.0, "age": 40, "rate": 0.05, "owner": true, "city": "Zagreb", "grade": "B", "photo": "AAH/", "scores": [1.0, 2.0], "opened": 18000}"#;
    let out = bin().args(["predict", "--model", model.to_str().unwrap(), "--row", row]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && (text.starts_with("prediction: false (") || text.starts_with("prediction: true (")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut follow = bin()
        .args(["predict", "--follow", "--source", &pg.url("postgres"), "--table", "loans", "--max", "6", "--model", model.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.query_one("SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE 'tensorcdc_loans_%'", &[]).await.unwrap().get::<_, i64>(0) < 1
    {
        assert!(Instant::now() < deadline, "the follower's slot within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.batch_execute("INSERT INTO loans(income, age, rate, owner, city, grade, photo, scores, opened, defaulted) VALUES (30000, 33, 0.08, false, 'Lima', 'C', '\\x010101', '{1,1}', '2024-01-01', NULL)").await.unwrap();
    let lines = common::Lines::of(follow.stdout.take().unwrap()).rest(60, "the prediction");
    assert!(follow.wait().unwrap().success());
    let preds: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The snapshot's rows in the table's physical order (the updated row 1 last), then row 7.
    let mut keys: Vec<&str> = preds.iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys.pop(), Some("7"), "{lines:?}");
    keys.sort();
    assert_eq!(keys, ["1", "2", "4", "5", "6"], "{lines:?}");
    assert!(preds.iter().all(|p| ["false", "true"].contains(&p["prediction"].as_str().unwrap())), "{lines:?}");
}
