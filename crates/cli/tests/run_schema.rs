//! `tensorcdc run` following its table while a writer goes on (issue 22): an UPDATE that
//! leaves a TOASTed feature column unchanged, ADD COLUMN, DROP of a feature column and
//! RENAME, each under one run.
//!
//! Table `t(id, x, y float8, c text, v float8[400] stored out of line, label int)`, the label
//! `sin(g) + cos(3g) > 0`. Unlabelled rows are predicted; labelled rows (40 at a time, the
//! `--retrain-every` is 20: a tenth of them are held out) publish versions.

use std::process::{Command, Stdio};

mod common;
use common::{count, wait_count, wait_line, Kill, Lines};

/// Rows `from..=to` (ids), labelled or not, of the columns `cols` (the table's as it is now).
fn insert(cols: &[&str], from: i32, to: i32, labelled: bool) -> String {
    let value = |c: &str| match c {
        "x" => "sin(g)".to_string(),
        "y" => "cos(g * 3)".into(),
        "c" | "city" => "CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END".into(),
        "v" => "(SELECT array_agg(sin(g * i)) FROM generate_series(1, 400) i)".into(),
        "z" => "sin(g) * 2".into(),
        "label" if labelled => "(sin(g) + cos(g * 3) > 0)::int".into(),
        "label" => "NULL".into(),
        other => panic!("{other}"),
    };
    let exprs: Vec<String> = cols.iter().map(|c| value(c)).collect();
    format!("INSERT INTO t(id, {}) SELECT g, {} FROM generate_series({from}, {to}) g", cols.join(", "), exprs.join(", "))
}

/// The features a version's checkpoint reads.
fn reads(out: &std::path::Path, version: u64) -> Vec<String> {
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("v{version:06}/model.json"))).unwrap()).unwrap();
    meta["features"]["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

fn version_of(line: &str) -> u64 {
    line.strip_prefix("version ").and_then(|l| l.split(':').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follows_toast_add_drop_and_rename_while_a_writer_goes_on() {
    scenario("0").await
}

/// The same, with a gate that refuses every version after the first (`--margin -1`): version 1
/// serves throughout, reading its own columns (those gone imputed), and each later version is
/// scored against it on the held-out rows as version 1 reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follows_the_table_when_the_gate_refuses_every_new_model() {
    scenario("-1").await
}

async fn scenario(margin: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pg = tensorcdc_localpg::LocalPg::start(tensorcdc_localpg::Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE t(id int PRIMARY KEY, x float8, y float8, c text, v float8[], label int); ALTER TABLE t ALTER COLUMN v SET STORAGE EXTERNAL")
        .await
        .unwrap();
    let all = ["x", "y", "c", "v", "label"];
    c.batch_execute(&insert(&all, 1, 300, true)).await.unwrap();
    c.batch_execute(&insert(&all, 301, 320, false)).await.unwrap();
    // v is out of line: an UPDATE of another column leaves it out of the change.
    let toasted = count(&c, "SELECT count(*) FROM pg_class WHERE relname = 't' AND reltoastrelid <> 0").await;
    assert_eq!(toasted, 1);
    let out = dir.path().join("versions");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args(["run", "--source", &pg.url("postgres"), "--table", "t", "--label", "label", "--layers", "8", "--retrain-every", "20"])
        .args(["--retrain-secs", "100000", "--initial-epochs", "5", "--refresh-epochs", "2", "--metrics-addr", "off", "--stream-timeout=-1"])
        .arg(format!("--margin={margin}"))
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, err) = (Lines::of(child.stdout.take().unwrap()), Lines::of(child.stderr.take().unwrap()));
    let child = Kill(child);
    let v1 = wait_line(&lines, "version 1:", 120);
    assert!(v1.contains("serving"), "{v1}");
    wait_count(&c, "SELECT count(*) FROM t_predictions", 20, 60).await;

    // 1. TOAST: rows 301-310 updated in x (v unchanged, not in the change), and in the same
    // transaction their twins 1301-1310 inserted whole. 40 labelled rows updated the same way
    // make version 2: none of them may be skipped.
    c.batch_execute(
        "BEGIN; UPDATE t SET x = x + 0.5 WHERE id BETWEEN 301 AND 310; \
         INSERT INTO t SELECT id + 1000, x, y, c, v, label FROM t WHERE id BETWEEN 301 AND 310; \
         UPDATE t SET x = x + 0.1 WHERE id BETWEEN 1 AND 40; COMMIT",
    )
    .await
    .unwrap();
    let v2 = wait_line(&lines, "version 2:", 120);
    assert!(!v2.contains("skipped"), "a labelled row with an unchanged TOASTed value is trained on: {v2}");
    wait_count(&c, "SELECT count(*) FROM t_predictions WHERE row_key::int BETWEEN 1301 AND 1310", 10, 60).await;
    wait_count(&c, "SELECT count(*) FROM t_predictions WHERE row_key::int BETWEEN 301 AND 310 AND latency_ms IS NOT NULL AND model_version = (SELECT model_version FROM t_predictions WHERE row_key = '1301')", 10, 60).await;
    let pairs = c
        .query(
            "SELECT a.row_key, a.prediction, a.probability, b.prediction, b.probability FROM t_predictions a JOIN t_predictions b ON b.row_key::int = a.row_key::int + 1000 \
             WHERE a.row_key::int BETWEEN 301 AND 310",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(pairs.len(), 10);
    for r in &pairs {
        let (k, p, pr, tp, tpr): (String, String, f32, String, f32) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        assert_eq!((p.as_str(), pr), (tp.as_str(), tpr), "row {k}: the prediction of the update equals its twin's, from the full row");
    }

    // 2. ADD COLUMN z: used once labelled rows with values of it arrive (the next refit); a
    // NULL in it (five of the rows) is imputed, not skipped.
    c.batch_execute("ALTER TABLE t ADD COLUMN z float8").await.unwrap();
    c.batch_execute(&format!(
        "BEGIN; {}; UPDATE t SET z = NULL WHERE id BETWEEN 401 AND 405; COMMIT",
        insert(&["x", "y", "c", "v", "z", "label"], 401, 440, true)
    ))
    .await
    .unwrap();
    let said = wait_line(&lines, "run: the next version reads", 120);
    assert!(said.contains("\"z\""), "{said}");
    let v3 = version_of(&wait_line(&lines, "version 3:", 120));
    assert_eq!(reads(&out, v3), ["x", "y", "c", "v", "z"]);
    c.batch_execute(&insert(&["x", "y", "c", "v", "label"], 441, 445, false)).await.unwrap();
    wait_count(&c, "SELECT count(*) FROM t_predictions WHERE row_key::int BETWEEN 441 AND 445", 5, 60).await;

    // 3. DROP COLUMN y: serving goes on at once (y imputed), the next version reads without it.
    c.batch_execute("ALTER TABLE t DROP COLUMN y").await.unwrap();
    c.batch_execute(&insert(&["x", "c", "v", "z", "label"], 501, 510, false)).await.unwrap();
    wait_count(&c, "SELECT count(*) FROM t_predictions WHERE row_key::int BETWEEN 501 AND 510", 10, 60).await;
    c.batch_execute(&insert(&["x", "c", "v", "z", "label"], 511, 550, true)).await.unwrap();
    let said = wait_line(&lines, "run: the next version reads", 120);
    let v4 = version_of(&wait_line(&lines, "version 4:", 120));
    assert_eq!(reads(&out, v4), ["x", "c", "v", "z"], "{said}");

    // 4. RENAME c TO city: served at once (c imputed), the next version reads city.
    c.batch_execute("ALTER TABLE t RENAME COLUMN c TO city").await.unwrap();
    c.batch_execute(&insert(&["x", "city", "v", "z", "label"], 601, 605, false)).await.unwrap();
    wait_count(&c, "SELECT count(*) FROM t_predictions WHERE row_key::int BETWEEN 601 AND 605", 5, 60).await;
    c.batch_execute(&insert(&["x", "city", "v", "z", "label"], 611, 650, true)).await.unwrap();
    let v5 = version_of(&wait_line(&lines, "version 5:", 120));
    // A renamed column keeps its place in the table.
    assert_eq!(reads(&out, v5), ["x", "city", "v", "z"]);

    // Every unlabelled row has its prediction; nothing was skipped; each change said.
    assert_eq!(count(&c, "SELECT count(*) FROM t WHERE label IS NULL AND NOT EXISTS (SELECT 1 FROM t_predictions p WHERE p.row_key = t.id::text)").await, 0);
    let hist = std::fs::read_to_string(out.join("versions.jsonl")).unwrap();
    assert!(!hist.contains("skipped"), "{hist}");
    if margin == "-1" {
        assert!(hist.lines().skip(1).all(|l| l.contains("\"serving\":false")), "{hist}");
        assert_eq!(count(&c, "SELECT count(*) FROM t_predictions WHERE model_version <> 1").await, 0, "version 1 served every prediction");
    }
    drop(child);
    let errs: Vec<String> = std::iter::from_fn(|| err.try_next(2000)).collect();
    for (what, col) in [("added", "z"), ("dropped", "y"), ("added", "city")] {
        assert!(errs.iter().any(|l| l.contains("the table's columns changed") && l.contains(&format!("{what} [\"{col}\"]"))), "{what} {col}: {errs:#?}");
    }
    assert!(!errs.iter().any(|l| l.contains("not predicted") || l.contains("NULL")), "{errs:#?}");
}
