//! Keras parity on real tables: scikit-learn's breast_cancer (two classes), wine (three) and
//! diabetes (regression), and vega_datasets' `cars` (auto-mpg: miles per gallon from six
//! numbers and `origin`, a text column, with NULLs), every fifth row held out. For each data set and seed, Keras
//! (`bench/keras_tabular.py`, in bench/.venv) trains its model and writes its own
//! `model.to_json()`; tensorcdc then trains that JSON with `train --source` from a private
//! Postgres table (same split, standardised features, Adam, batch 32, same epochs and
//! learning rate) and evaluates on the held-out table. Alternating, same run.
//!
//! Usage: bench-tabular PYTHON [SEEDS [SETS]] (default 3 seeds: 42, 43, 44; all four sets). Prints a JSON line
//! per data set with the mean test metric of each and the median seconds per epoch.

use std::process::Command;

use anyhow::{bail, Context, Result};
use tensorcdc_bench::median;
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

/// (name, epochs, learning rate, metric, feature columns (None: all but the key and label))
type Set = (&'static str, usize, f64, &'static str, Option<&'static str>);
const SETS: [Set; 4] = [
    ("breast_cancer", 30, 0.001, "accuracy", None),
    ("wine", 60, 0.001, "accuracy", None),
    ("diabetes", 100, 0.01, "mse", None),
    ("cars", 100, 0.01, "mse", Some("cylinders,displacement,horsepower,weight_in_lbs,acceleration,year,origin")),
];

/// A column's SQL type: `target` by the task, `cars`' text and integer columns, float8 otherwise.
fn sql_type(set: &str, col: &str) -> &'static str {
    match (set, col) {
        ("diabetes" | "cars", "target") => "float8",
        (_, "target") => "int",
        ("cars", "name" | "origin") => "text",
        ("cars", "cylinders" | "year" | "weight_in_lbs") => "int",
        _ => "float8",
    }
}

/// A CSV field (no quoting in these files) as an SQL literal: empty is NULL, numbers as they are.
fn literal(field: &str) -> String {
    if field.is_empty() {
        "NULL".into()
    } else if field.parse::<f64>().is_ok() {
        field.into()
    } else {
        format!("'{}'", field.replace('\'', "''"))
    }
}

fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| what.to_string())?;
    if !out.status.success() {
        bail!("{what}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn metric(out: &str, key: &str) -> Result<f64> {
    // " mse: ", not the end of "rmse: ".
    let at = out.rfind(&format!(" {key}: ")).with_context(|| format!("no {key} in {out}"))? + key.len() + 3;
    Ok(out[at..].split(|c: char| c.is_whitespace() || c == ')').next().unwrap_or("").parse()?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let python = std::env::args().nth(1).unwrap_or_else(|| "bench/.venv/bin/python".into());
    let seeds: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    // Optional: only these data sets (comma-separated).
    let only = std::env::args().nth(3);
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() })?;
    let url = pg.url("postgres");
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    let dir = tempfile::tempdir()?;
    for (name, epochs, lr, key, features) in SETS {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|n| n == name)) {
            continue;
        }
        let csv = dir.path().join(format!("{name}.csv"));
        output(Command::new(&python).args(["scripts/sklearn_csv.py", name]).arg(&csv), "sklearn_csv.py")?;
        let text = std::fs::read_to_string(&csv)?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let rows: Vec<&str> = lines.collect();
        for split in ["train", "test"] {
            let cols: Vec<String> = header.iter().map(|h| format!("{h} {}", sql_type(name, h))).collect();
            c.batch_execute(&format!("CREATE TABLE {name}_{split}(id serial PRIMARY KEY, {})", cols.join(", "))).await?;
            let values: Vec<String> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| (i % 5 == 4) == (split == "test"))
                .map(|(_, r)| format!("({})", r.split(',').map(literal).collect::<Vec<_>>().join(",")))
                .collect();
            c.batch_execute(&format!("INSERT INTO {name}_{split}({}) VALUES {}", header.join(","), values.join(","))).await?;
        }
        let (mut ours, mut theirs, mut ours_s, mut theirs_s) = (vec![], vec![], vec![], vec![]);
        for seed in 42..42 + seeds {
            let spec = dir.path().join(format!("{name}-{seed}.json"));
            let k = output(
                Command::new(&python).args(["bench/keras_tabular.py", name, &seed.to_string(), &epochs.to_string(), &lr.to_string()]).arg(&spec),
                "keras_tabular.py",
            )?;
            let k: serde_json::Value = serde_json::from_str(k.lines().last().unwrap_or_default())?;
            let times: Vec<f64> = k["epoch_s"].as_array().context("epoch_s")?.iter().filter_map(|t| t.as_f64()).collect();
            theirs_s.push(times.iter().sum::<f64>() / times.len() as f64);
            theirs.push(k["test"][key].as_f64().context("keras metric")?);
            let model = dir.path().join(format!("{name}-{seed}"));
            // The tensorcdc binary built beside this one (the same profile and target folder).
            let bin = std::env::current_exe()?.with_file_name("tensorcdc");
            let t = output(
                Command::new(&bin)
                    .args(["train", "--source", &url, "--table", &format!("{name}_train"), "--label", "target", "--model-spec"])
                    .arg(&spec)
                    .args(features.map(|f| vec!["--features", f]).unwrap_or_default())
                    .args(["--epochs", &epochs.to_string(), "--batch-size", "32", "--learning-rate", &lr.to_string(), "--seed", &seed.to_string(), "--out"])
                    .arg(&model),
                "tensorcdc train",
            )?;
            let per_epoch = t.split("s/epoch").next().and_then(|s| s.rsplit('(').next()).and_then(|s| s.trim().parse::<f64>().ok()).context("s/epoch")?;
            ours_s.push(per_epoch);
            let e = output(
                Command::new(bin).args(["evaluate", "--source", &url, "--table", &format!("{name}_test"), "--model"]).arg(&model),
                "tensorcdc evaluate",
            )?;
            if std::env::var_os("BENCH_VERBOSE").is_some() {
                eprintln!("{t}{e}");
            }
            ours.push(metric(&e, key)?);
            eprintln!(
                "{name} seed {seed}: tensorcdc {key} {:.4} ({per_epoch:.4} s/epoch), Keras {:.4} ({:.4} s/epoch)",
                ours.last().unwrap(),
                theirs.last().unwrap(),
                theirs_s.last().unwrap()
            );
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (m_ours, m_theirs) = (mean(&ours), mean(&theirs));
        let (s_ours, s_theirs) = (median(&mut ours_s.clone()), median(&mut theirs_s.clone()));
        println!(
            "{}",
            serde_json::json!({
                "data": name, "seeds": seeds, "epochs": epochs, "metric": key,
                "tensorcdc": (m_ours * 1e4).round() / 1e4, "keras": (m_theirs * 1e4).round() / 1e4,
                "gap": if key == "accuracy" { format!("{:+.2} points", (m_ours - m_theirs) * 100.0) } else { format!("{:+.1}%", (m_ours / m_theirs - 1.0) * 100.0) },
                "tensorcdc_s_per_epoch": (s_ours * 1e5).round() / 1e5, "keras_s_per_epoch": (s_theirs * 1e4).round() / 1e4,
                "speedup": ((s_theirs / s_ours) * 10.0).round() / 10.0,
                "by_seed": {"tensorcdc": ours, "keras": theirs},
            })
        );
    }
    Ok(())
}
