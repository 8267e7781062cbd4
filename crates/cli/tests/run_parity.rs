//! `run`'s first version is as good as `train` with the same network and epochs (issue 22):
//! scikit-learn's breast_cancer with a text column (`size`: the tertile of `mean_area`, as
//! text), every fifth row's label NULL. `train` learns from the labelled rows and is scored
//! by `evaluate` on the fifth (their true labels in another table); `run` predicts the fifth
//! and its predictions are scored against the same true labels.

use std::process::{Command, Stdio};

mod common;
use common::{cancer_table, ok, Kill, Lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_first_version_predicts_the_unlabelled_fifth_as_well_as_train() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "int").await;
    let url = pg.url("postgres");
    let values: Vec<String> = rows.iter().enumerate().map(|(i, r)| format!("({},{})", i + 1, r.join(","))).collect();
    c.batch_execute(&format!("INSERT INTO cancer(id,{}) VALUES {}", header.join(","), values.join(","))).await.unwrap();
    c.batch_execute(
        "ALTER TABLE cancer ADD COLUMN size text; \
         UPDATE cancer SET size = CASE WHEN mean_area < 450 THEN 'small' WHEN mean_area < 700 THEN 'medium' ELSE 'large' END; \
         CREATE TABLE fifth AS SELECT * FROM cancer WHERE id % 5 = 0; ALTER TABLE fifth ADD PRIMARY KEY (id); \
         UPDATE cancer SET target = NULL WHERE id % 5 = 0",
    )
    .await
    .unwrap();
    let n_fifth: i64 = c.query_one("SELECT count(*) FROM fifth", &[]).await.unwrap().get(0);
    assert_eq!(n_fifth, 113);

    let model = dir.path().join("model");
    let m = model.to_str().unwrap();
    ok(&["train", "--source", &url, "--table", "cancer", "--label", "target", "--layers", "16", "--epochs", "30", "--out", m]);
    let eval = ok(&["evaluate", "--source", &url, "--table", "fifth", "--model", m]);
    let at = eval.rfind("accuracy: ").unwrap() + "accuracy: ".len();
    let train_acc: f64 = eval[at..].split_whitespace().next().unwrap().parse().unwrap();

    let out = dir.path().join("versions");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args(["run", "--source", &url, "--table", "cancer", "--label", "target", "--layers", "16", "--initial-epochs", "30"])
        .args(["--metrics-addr", "off", "--stream-timeout=3000", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let mut child = Kill(child);
    let said = lines.rest(300, "run");
    assert!(child.0.wait().unwrap().success(), "{said:#?}");
    let right: i64 = c
        .query_one("SELECT count(*) FROM cancer_predictions p JOIN fifth f ON f.id::text = p.row_key WHERE p.prediction = f.target::text", &[])
        .await
        .unwrap()
        .get(0);
    let predicted: i64 = c.query_one("SELECT count(*) FROM cancer_predictions", &[]).await.unwrap().get(0);
    assert_eq!(predicted, n_fifth, "every unlabelled row predicted once");
    let run_acc = right as f64 / n_fifth as f64;
    eprintln!("the unlabelled fifth: train {train_acc:.4}, run {run_acc:.4} ({right} of {n_fifth})\n{said:#?}");
    assert!((run_acc - train_acc).abs() <= 0.01 + 1e-9, "run {run_acc:.4} vs train {train_acc:.4}: more than 1 point apart\n{eval}\n{said:#?}");
}
