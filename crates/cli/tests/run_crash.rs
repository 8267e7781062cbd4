//! `tensorcdc run` killed with SIGKILL at random moments, 12 times, while breast_cancer rows
//! are inserted (labelled and not), updated (features, or a label arriving late) and deleted;
//! then run to the end of the stream. Exactly once:
//! - the last version has counted every labelled change once (an update of a labelled row is
//!   a new example), and the versions' counts never go back;
//! - every unlabelled row has its one current prediction, and a deleted row has none;
//! - runs after the first version resume from it, serving at once.
//!
//! The kill moments come from a seeded generator (`TENSORCDC_CRASH_SEED`, default 13).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tensorcdc_localpg::LocalPg;

mod common;
use common::{cancer_insert, cancer_table, Kill, Lines};

const ROUNDS: usize = 12;
/// Transactions written in each round, while the run reads them and is killed.
const TXNS: usize = 150;

fn run_cmd(pg: &LocalPg, out: &std::path::Path, timeout_ms: i64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
    c.args(["run", "--source", &pg.url("postgres"), "--table", "cancer", "--label", "target", "--layers", "8", "--retrain-every", "25", "--retrain-secs", "1"])
        .args([
            "--initial-epochs",
            "3",
            "--refresh-epochs",
            "1",
            "--replay",
            "100",
            "--metrics-addr",
            "off",
            &format!("--stream-timeout={timeout_ms}"),
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::piped());
    c
}

/// The workload of one round: small transactions of every kind. Returns the labelled
/// changes made (rows inserted or updated with a label).
async fn write_round(c: &tokio_postgres::Client, header: &[String], rows: &[Vec<String>], rng: &mut rand::rngs::StdRng, next_id: &mut i32) -> u64 {
    let mut labelled = 0u64;
    for _ in 0..TXNS {
        let kind = rng.random_range(0..10);
        let n = rng.random_range(1..=4);
        match kind {
            0..=5 => {
                let with_label = kind <= 3;
                let values: Vec<String> = (0..n)
                    .map(|_| {
                        let mut r = rows[rng.random_range(0..rows.len())].clone();
                        if !with_label {
                            *r.last_mut().unwrap() = "NULL".into();
                        }
                        *next_id += 1;
                        format!("({},{})", next_id, r.join(","))
                    })
                    .collect();
                c.batch_execute(&format!("INSERT INTO cancer(id,{}) VALUES {}", header.join(","), values.join(","))).await.unwrap();
                if with_label {
                    labelled += n as u64;
                }
            }
            6 | 7 => {
                // A changed row: predicted again, or a new example when labelled.
                let id = rng.random_range(1..=*next_id);
                let r = c.query("UPDATE cancer SET mean_radius = mean_radius * 1.001 WHERE id = $1 RETURNING target IS NOT NULL", &[&id]).await.unwrap();
                labelled += r.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
            }
            8 => {
                // A label arrives for an unlabelled row.
                let r = c
                    .query(
                        "UPDATE cancer SET target = 1 WHERE id = (SELECT min(id) FROM cancer WHERE target IS NULL AND id > $1) RETURNING id",
                        &[&rng.random_range(0..*next_id)],
                    )
                    .await
                    .unwrap();
                labelled += r.len() as u64;
            }
            _ => {
                let id = rng.random_range(1..=*next_id);
                c.execute("DELETE FROM cancer WHERE id = $1", &[&id]).await.unwrap();
            }
        }
    }
    labelled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_count_every_labelled_example_once_and_predict_every_row() {
    let seed: u64 = std::env::var("TENSORCDC_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(13);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "int").await;
    let c = std::sync::Arc::new(c);
    // The snapshot: 200 labelled rows and 30 without a label.
    let snapshot: Vec<String> = rows[..230]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            if i >= 200 {
                *r.last_mut().unwrap() = "NULL".into();
            }
            format!("({},{})", i + 1, r.join(","))
        })
        .collect();
    c.batch_execute(&format!("INSERT INTO cancer(id,{}) VALUES {}", header.join(","), snapshot.join(","))).await.unwrap();
    let mut expected = 200u64;
    let mut next_id = 230;
    let out = dir.path().join("versions");
    let mut resumed = 0;
    for round in 0..ROUNDS {
        let mut child = run_cmd(&pg, &out, -1).spawn().unwrap();
        let lines = Lines::of(child.stdout.take().unwrap());
        let mut child = Kill(child);
        let kill_after = Duration::from_millis(rng.random_range(300..3000));
        let started = Instant::now();
        // Changes made while the first snapshot is read would be folded into it (an update
        // before the snapshot is no example of its own): the first run with a table to learn
        // from is killed without writes, or writes begin once version 1 is out.
        let first = !out.join("versions.jsonl").exists();
        let mut said = Vec::new();
        if first && round > 0 {
            while let Some(l) = lines.next(60, "version 1") {
                said.push(l);
                if said.last().unwrap().starts_with("version 1:") {
                    break;
                }
            }
        }
        // The writer goes on while the run is killed.
        let writer = (!first || round > 0).then(|| {
            let (c, header, rows, mut rng, mut id) = (c.clone(), header.clone(), rows.clone(), rand::rngs::StdRng::seed_from_u64(rng.random()), next_id);
            tokio::spawn(async move { (write_round(&c, &header, &rows, &mut rng, &mut id).await, id) })
        });
        tokio::time::sleep(kill_after.saturating_sub(started.elapsed())).await;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        if let Some(w) = writer {
            let (n, id) = w.await.unwrap();
            expected += n;
            next_id = id;
        }
        said.extend(std::iter::from_fn(|| lines.next(5, "the killed run's output")));
        resumed += said.iter().any(|l| l.starts_with("run: resuming from version")) as usize;
        eprintln!("round {round}: killed after {kill_after:?}; {} lines, last {:?}", said.len(), said.last());
    }
    // The last run reads to the end of the stream, publishes what is left and stops.
    let mut child = run_cmd(&pg, &out, 4000).spawn().unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let mut child = Kill(child);
    let said = lines.rest(180, "the last run");
    assert!(child.0.wait().unwrap().success(), "{said:#?}");
    assert!(said.iter().any(|l| l.starts_with("run: resuming from version")), "{said:#?}");
    assert!(resumed >= 3, "only {resumed} of {ROUNDS} killed runs got as far as resuming from a version: the kills were too early to test much");
    // Every labelled change counted once, and the count never went back.
    let hist: Vec<serde_json::Value> = std::fs::read_to_string(out.join("versions.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<u64> = hist.iter().map(|v| v["examples_seen"].as_u64().unwrap()).collect();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "examples seen went back: {seen:?}");
    assert_eq!(*seen.last().unwrap(), expected, "the last version counts each of the {expected} labelled changes once: {seen:?}\n{said:#?}");
    let numbers: Vec<u64> = hist.iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=hist.len() as u64).collect::<Vec<_>>(), "versions numbered without gaps or repeats");
    // One current prediction per unlabelled row; none for deleted rows.
    let count = |sql: &'static str| async { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) };
    let unlabelled = count("SELECT count(*) FROM cancer WHERE target IS NULL").await;
    assert!(unlabelled > 30, "{unlabelled}");
    assert_eq!(
        count("SELECT count(*) FROM cancer c WHERE target IS NULL AND NOT EXISTS (SELECT 1 FROM cancer_predictions p WHERE p.row_key = c.id::text)").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM cancer_predictions p WHERE NOT EXISTS (SELECT 1 FROM cancer c WHERE c.id::text = p.row_key)").await,
        0,
        "a deleted row keeps no prediction"
    );
    // The slot stays for the next run, confirmed no further than the last version counted.
    let slot = c.query("SELECT active FROM pg_replication_slots WHERE slot_name = 'tensorcdc_run_cancer'", &[]).await.unwrap();
    assert_eq!(slot.len(), 1);
}

/// A crash at each boundary between the steps of publishing a version (a failpoint aborts the
/// process there: `TENSORCDC_FAILPOINT`), then a run to the end of the stream: every later
/// publish works, the history numbers versions 1, 2, 3... once each, every version's folder is
/// in place, `serving` names the last version the history says serves, and each labelled
/// change is counted once. Ten labelled rows with a NULL feature are counted as skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_publishing_steps_never_breaks_a_later_publish() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "int").await;
    c.batch_execute(&cancer_insert(&header, &rows, 0, 200, true)).await.unwrap();
    let out = dir.path().join("versions");
    let mut expected = 200;
    for (i, point) in ["publish:written", "publish:history", "publish:renamed"].into_iter().enumerate() {
        if point == "publish:renamed" {
            // Version 1 is in place: a new version needs new labelled rows.
            c.batch_execute(&cancer_insert(&header, &rows, 200, 230, true)).await.unwrap();
            expected += 30;
        }
        let mut cmd = run_cmd(&pg, &out, -1);
        cmd.env("TENSORCDC_FAILPOINT", point).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (lines, err) = (Lines::of(child.stdout.take().unwrap()), Lines::of(child.stderr.take().unwrap()));
        let mut child = Kill(child);
        let said = lines.rest(180, point);
        let status = child.0.wait().unwrap();
        let errs = err.rest(10, "stderr");
        assert!(!status.success(), "round {i}: the run did not stop at {point}: {said:#?}");
        assert!(errs.iter().any(|l| l.contains(&format!("failpoint {point}: aborting"))), "round {i}: {errs:#?}\n{said:#?}");
        eprintln!("{point}: {said:?}");
    }
    // 30 labelled rows and 10 labelled rows with a NULL feature (skipped: the default for
    // NULLs), in one transaction.
    let radius = header.iter().position(|h| h == "mean_radius").unwrap();
    let mut with_null = rows.clone();
    for r in &mut with_null[260..270] {
        r[radius] = "NULL".into();
    }
    c.batch_execute(&cancer_insert(&header, &with_null, 230, 270, true)).await.unwrap();
    expected += 40;
    // What the history says serves, before the run that rolls the last publish forward.
    let before: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("versions.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(before.len(), 2, "versions 1 and 2 (cut after its rename) in the history");
    let serving_then = before.iter().rev().find(|v| v["serving"].as_bool().unwrap()).map(|v| v["version"].as_u64().unwrap()).unwrap();
    let mut cmd = run_cmd(&pg, &out, 4000);
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (lines, err) = (Lines::of(child.stdout.take().unwrap()), Lines::of(child.stderr.take().unwrap()));
    let mut child = Kill(child);
    let said = lines.rest(180, "the last run");
    let errs = err.rest(10, "stderr");
    assert!(child.0.wait().unwrap().success(), "{said:#?}\n{errs:#?}");
    assert!(
        said.iter().any(|l| l.starts_with("run: resuming from version 2") && l.ends_with(&format!("serving version {serving_then}"))),
        "the serving pointer rolled forward to version {serving_then}: {said:#?}"
    );
    let hist: Vec<serde_json::Value> = std::fs::read_to_string(out.join("versions.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let numbers: Vec<u64> = hist.iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert!(numbers.len() >= 3, "{numbers:?}");
    assert_eq!(numbers, (1..=hist.len() as u64).collect::<Vec<_>>(), "versions numbered once each, without gaps");
    for v in &numbers {
        assert!(out.join(format!("v{v:06}/version.json")).is_file(), "version {v}'s folder is in place");
    }
    let last_serving = hist.iter().rev().find(|v| v["serving"].as_bool().unwrap()).map(|v| v["version"].as_u64().unwrap()).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("serving")).unwrap().trim(), last_serving.to_string());
    let last = hist.last().unwrap();
    assert_eq!(last["examples_seen"].as_u64().unwrap(), expected, "{hist:#?}");
    // The 10 rows with a NULL feature: counted, not trained on, and said.
    assert_eq!(last["skipped"], serde_json::json!({ "column \"mean_radius\" is NULL": 10 }), "{hist:#?}");
    assert!(said.iter().any(|l| l.contains("(10 of them skipped: they did not encode)")), "{said:#?}");
    assert_eq!(errs.iter().filter(|l| l.contains("not trained on: column \"mean_radius\" is NULL")).count(), 1, "said once: {errs:#?}");
}
