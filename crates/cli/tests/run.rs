//! `tensorcdc run`: continuous learning on scikit-learn's breast_cancer table in a private
//! Postgres. Labelled rows train versions, unlabelled rows are predicted by the serving
//! version and upserted into the predictions table, a changed row is predicted again, and
//! new labelled rows publish a new version with more examples seen.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{cancer_table, count, wait_count, wait_line, Kill, Lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_rows_train_versions_and_unlabelled_rows_are_predicted() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "serial").await;
    let insert = |rs: &[Vec<String>], labelled: bool| {
        let values: Vec<String> = rs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if !labelled {
                    *r.last_mut().unwrap() = "NULL".into();
                }
                format!("({})", r.join(","))
            })
            .collect();
        format!("INSERT INTO cancer({}) VALUES {}", header.join(","), values.join(","))
    };
    // The snapshot: 400 labelled rows.
    c.batch_execute(&insert(&rows[..400], true)).await.unwrap();
    let out = dir.path().join("versions");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args([
            "run",
            "--source",
            &pg.url("postgres"),
            "--table",
            "cancer",
            "--label",
            "target",
            "--layers",
            "16",
            "--retrain-every",
            "60",
            "--retrain-secs",
            "3600",
        ])
        .args(["--initial-epochs", "20", "--held-out-percent", "20", "--margin", "0.05", "--keep-versions", "1", "--metrics-addr", "127.0.0.1:0", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let _child = Kill(child);
    let metrics_url = wait_line(&lines, "metrics on ", 30).split("metrics on ").nth(1).unwrap().split(',').next().unwrap().trim().to_string();
    let v1 = wait_line(&lines, "version 1:", 60);
    assert!(v1.contains("serving"), "{v1}");
    // Unlabelled rows, as they commit: predicted by version 1, one row each.
    c.batch_execute(&insert(&rows[400..469], false)).await.unwrap();
    wait_count(&c, "SELECT count(*) FROM cancer_predictions", 69, 30).await;
    let right: i64 = count(
        &c,
        "SELECT count(*) FROM cancer_predictions p JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM cancer WHERE target IS NULL) u ON p.row_key = u.id::text",
    )
    .await;
    assert_eq!(right, 69, "every unlabelled row has its prediction");
    assert_eq!(count(&c, "SELECT count(*) FROM cancer_predictions WHERE model_version = 1 AND latency_ms >= 0 AND source_position LIKE 'lsn %'").await, 69);
    // The predictions are the model's: compare with the true labels of those rows.
    let truth: Vec<&str> = rows[400..469].iter().map(|r| r.last().unwrap().as_str()).collect();
    let preds = c.query("SELECT row_key::int, prediction FROM cancer_predictions ORDER BY row_key::int", &[]).await.unwrap();
    let correct = preds.iter().zip(&truth).filter(|(p, t)| p.get::<_, String>(1) == **t).count();
    assert!(correct >= 60, "{correct} of 69 unlabelled rows predicted right");
    // A row whose features change is predicted again (one row, a new position).
    let before: String = c.query_one("SELECT source_position FROM cancer_predictions WHERE row_key = '401'", &[]).await.unwrap().get(0);
    c.batch_execute("UPDATE cancer SET mean_radius = mean_radius * 1.01 WHERE id = 401").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: String = c.query_one("SELECT source_position FROM cancer_predictions WHERE row_key = '401'", &[]).await.unwrap().get(0);
        if now != before {
            break;
        }
        assert!(Instant::now() < deadline, "row 401 was not predicted again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&c, "SELECT count(*) FROM cancer_predictions").await, 69, "still one prediction per row");
    // /metrics: what was read, learnt, served and how fast, in Prometheus' text format.
    let text = ureq::get(&metrics_url).call().unwrap().into_string().unwrap();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("tensorcdc_rows_captured_total") >= 470.0, "{text}");
    assert_eq!(value("tensorcdc_labelled_rows_total"), 400.0);
    assert_eq!(value("tensorcdc_model_version"), 1.0);
    assert_eq!(value("tensorcdc_predictions_total"), 70.0, "69 rows and one predicted again");
    assert_eq!(value("tensorcdc_prediction_latency_seconds_count"), 70.0);
    assert!((0.5..=1.0).contains(&value("tensorcdc_heldout_accuracy")), "{text}");
    // The slot: what it confirmed (once version 1 counted the snapshot, the server hears of it
    // within the status interval) and the WAL it holds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = ureq::get(&metrics_url).call().unwrap().into_string().unwrap();
        let value = |name: &str| -> Option<f64> { text.lines().find(|l| l.starts_with(&format!("{name} "))).and_then(|l| l.rsplit(' ').next()?.parse().ok()) };
        assert!(value("tensorcdc_slot_wal_bytes").is_some_and(|b| b >= 0.0), "{text}");
        if value("tensorcdc_slot_confirmed_lsn").is_some_and(|l| l > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the slot confirmed nothing in 15 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A row labelled late loses its prediction: its label is the answer now.
    c.batch_execute(&format!("UPDATE cancer SET target = {} WHERE id = 402", rows[401].last().unwrap())).await.unwrap();
    // (wait_count waits for at least N: here the one prediction must go.)
    wait_count(&c, "SELECT 1 - count(*) FROM cancer_predictions WHERE row_key = '402'", 1, 30).await;
    assert_eq!(count(&c, "SELECT count(*) FROM cancer_predictions").await, 68, "the others stay");
    // 100 more labelled rows (and the rest of the data set): a new version, with more examples.
    c.batch_execute(&insert(&rows[469..], true)).await.unwrap();
    let v2 = wait_line(&lines, "version 2:", 60);
    let seen = |l: &str| -> u64 { l.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap() };
    assert_eq!(seen(&v1), 320 + 80, "version 1 saw the snapshot's labelled rows: {v1}");
    // 400 labelled, the late label of row 402, then 60 or more of the 100 new labelled rows.
    assert!((400 + 1 + 60..=400 + 1 + 100).contains(&seen(&v2)), "version 2 saw the new labelled rows (60 or more of 100 start it): {v2}");
    let hist = std::fs::read_to_string(out.join("versions.jsonl")).unwrap();
    assert_eq!(hist.lines().count(), 2, "{hist}");
    let serving = std::fs::read_to_string(out.join("serving")).unwrap();
    assert_eq!(serving.trim() == "2", v2.contains(", serving"), "the serving pointer follows the gate: {serving} / {v2}");
    // --keep-versions 1: the newest checkpoint, and the serving one when that is older.
    assert!(out.join("v000002/model.bpk").is_file() && out.join("v000002/optimizer.bpk").is_file());
    assert_eq!(out.join("v000001/model.json").is_file(), serving.trim() == "1", "version 1's checkpoint is kept only while it serves");
    // The live page, as a browser renders it: the score curve through both versions and the
    // latest predictions.
    let dom = chromium_dom(metrics_url.trim_end_matches("metrics"), dir.path());
    assert!(dom.contains(r#"id="score-curve""#) && dom.contains(r#"data-versions="2""#), "no score curve through 2 versions in\n{dom}");
    assert_eq!(dom.matches(r#"<tr class="prediction">"#).count(), 16, "the 16 latest predictions:\n{dom}");
    assert!(dom.contains("serving version"), "{dom}");
}

/// A table whose labelled rows so far have one class cannot fit a classifier yet: `run` says
/// so and waits for more rows (a stream's first rows, or a consumer's first batch, often are
/// one class), then publishes version 1 on all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_version_waits_for_a_second_class() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "serial").await;
    let insert = |rs: Vec<&Vec<String>>| {
        let values: Vec<String> = rs.iter().map(|r| format!("({})", r.join(","))).collect();
        format!("INSERT INTO cancer({}) VALUES {}", header.join(","), values.join(","))
    };
    let (benign, malignant): (Vec<&Vec<String>>, Vec<&Vec<String>>) = rows.iter().partition(|r| r.last().unwrap() == "1");
    c.batch_execute(&insert(benign[..100].to_vec())).await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args(["run", "--source", &pg.url("postgres"), "--table", "cancer", "--label", "target", "--layers", "8", "--initial-epochs", "5"])
        .args(["--retrain-every", "1000000", "--retrain-secs", "3600", "--metrics-addr", "off", "--out"])
        .arg(dir.path().join("versions"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, err) = (Lines::of(child.stdout.take().unwrap()), Lines::of(child.stderr.take().unwrap()));
    let _child = Kill(child);
    let said = wait_line(&err, "no first version yet", 60);
    assert!(said.contains(r#"label "target" has 1 class(es)"#) && said.contains("waiting for more labelled rows"), "{said}");
    // The second class arrives while streaming: version 1 trains on every row so far.
    c.batch_execute(&insert(malignant[..50].to_vec())).await.unwrap();
    let v1 = wait_line(&lines, "version 1:", 60);
    assert!(v1.starts_with("version 1: 150 examples seen") && v1.contains("serving"), "{v1}");
}

/// The DOM of `url` after headless Chromium ran its scripts for 5 s of virtual time
/// (Debian's `chromium`, or `$CHROMIUM`).
pub fn chromium_dom(url: &str, tmp: &std::path::Path) -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let out = Command::new(&bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", tmp.join("chromium").display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e} (scripts/install-deps.sh installs Debian's chromium)"));
    assert!(out.status.success(), "{bin}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
