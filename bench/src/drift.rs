//! Drift: Fashion-MNIST rows stream into a table whose labels are permuted halfway (class
//! y becomes (y + 3) mod 10 from the change on). Two `tensorcdc run` processes follow the
//! same table: one learning continuously (a version every 500 labelled rows, replaying the
//! newest rows, scored on the newest held-out rows), and the blog's frozen model (version 1
//! only, trained on the snapshot). After each block of 500 labelled rows, once the
//! continuous run has a version covering it, 200 unlabelled test rows are inserted and both
//! runs' predictions of them are scored against their (permuted) labels.
//!
//! `bench-drift` records it (BENCHMARKS.md, `docs/drift.png`); `bench/tests/drift.rs`
//! asserts it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

pub const SNAPSHOT: usize = 8000;
pub const BLOCK: usize = 500;
pub const EVAL: usize = 200;
pub const SHIFT: u8 = 3;

pub struct Run {
    child: Child,
    pub out: PathBuf,
    pub table: String,
    /// The live page (continuous run).
    pub url: Option<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path, pg: &LocalPg, dir: &Path, name: &str, continuous: bool) -> Result<Run> {
    let out = dir.join(name);
    let table = format!("fashion_pred_{name}");
    let mut c = Command::new(bin);
    c.args(["run", "--source", &pg.url("postgres"), "--table", "fashion", "--label", "label", "--layers", "128", "--initial-epochs", "5"])
        .args(["--slot", &format!("drift_{name}"), "--predictions-table", &table, "--held-out-percent", "10", "--seed", "7"])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped());
    if continuous {
        c.args(["--retrain-every", "400", "--retrain-secs", "3600", "--refresh-epochs", "3", "--replay", "1500"]);
        c.args(["--replay-window", "1500", "--held-out-window", "150", "--metrics-addr", "127.0.0.1:0"]);
    } else {
        c.args(["--retrain-every", "1000000000", "--retrain-secs", "1e9", "--metrics-addr", "off"]);
    }
    let mut child = c.spawn().with_context(|| bin.display().to_string())?;
    // Read until version 1 is out (and the live page's address, for the continuous run).
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut url = None;
    for l in lines.by_ref() {
        let l = l?;
        if let Some(rest) = l.strip_prefix("metrics on ") {
            url = rest.split("live page on ").nth(1).map(|u| u.trim().to_string());
        }
        if l.starts_with("version 1:") {
            eprintln!("{name}: {l}");
            break;
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Run { child, out, table, url })
}

fn examples_seen(out: &Path) -> u64 {
    std::fs::read_to_string(out.join("versions.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["examples_seen"].as_u64())
        .max()
        .unwrap_or(0)
}

async fn insert(
    c: &tokio_postgres::Client,
    first_id: i32,
    data: &tensorcdc_dataset::Examples,
    range: std::ops::Range<usize>,
    label: impl Fn(u8) -> Option<i16>,
) -> Result<()> {
    let stmt = c.prepare("INSERT INTO fashion(id, label, pixels) VALUES ($1, $2, $3)").await?;
    c.batch_execute("BEGIN").await?;
    for (n, i) in range.enumerate() {
        c.execute(&stmt, &[&(first_id + n as i32), &label(data.labels[i]), &data.image(i)]).await?;
    }
    c.batch_execute("COMMIT").await?;
    Ok(())
}

/// A PNG of `url` rendered by headless Chromium (`$CHROMIUM` or Debian's `chromium`).
pub fn chromium_screenshot(url: &str, png: &Path, size: &str, budget_ms: u32) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let st = Command::new(std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into()))
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", tmp.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("chromium --screenshot {url}: {st}");
    }
    Ok(())
}

/// The two accuracy curves as an SVG page.
pub fn chart(points: &[(i64, f64, f64)], before: f64, change_at: i64) -> String {
    let (w, h, l, r, t, b) = (860.0, 440.0, 60.0, 20.0, 40.0, 50.0);
    let (x0, x1) = (points.first().map_or(0, |p| p.0) as f64, points.last().map_or(1, |p| p.0) as f64);
    let x = |v: f64| l + (w - l - r) * (v - x0) / (x1 - x0).max(1.0);
    let y = |v: f64| t + (h - t - b) * (1.0 - v);
    let line = |f: &dyn Fn(&(i64, f64, f64)) -> f64| points.iter().map(|p| format!("{:.1},{:.1}", x(p.0 as f64), y(f(p)))).collect::<Vec<_>>().join(" ");
    let mut s = format!("<!doctype html><html><body style='margin:0;font-family:sans-serif;background:#fff'><svg width='{w}' height='{h}' xmlns='http://www.w3.org/2000/svg' font-size='12'>");
    s += &format!("<text x='{l}' y='22' font-size='15'>Fashion-MNIST, labels permuted (y → y+{SHIFT} mod 10) after {change_at} labelled rows: accuracy on new unlabelled rows</text>");
    for i in 0..=10 {
        let v = i as f64 / 10.0;
        let (xe, yv, yt) = (w - r, y(v), y(v) + 4.0);
        s += &format!("<line x1='{l}' x2='{xe}' y1='{yv:.1}' y2='{yv:.1}' stroke='#eee'/><text x='20' y='{yt:.1}'>{v:.1}</text>");
    }
    s += &format!(
        "<line x1='{0:.1}' x2='{0:.1}' y1='{t}' y2='{1}' stroke='#c33' stroke-dasharray='4 3'/><text x='{2:.1}' y='{3}' fill='#c33'>labels permuted</text>",
        x(0.0),
        h - b,
        x(0.0) + 4.0,
        t + 12.0
    );
    let (xe, yb, xt, yt) = (w - r, y(before - 0.03), w - r - 190.0, y(before - 0.03) - 4.0);
    s += &format!("<line x1='{l}' x2='{xe}' y1='{yb:.1}' y2='{yb:.1}' stroke='#2a6' stroke-dasharray='2 4'/><text x='{xt}' y='{yt:.1}' fill='#2a6'>before the change − 3 points</text>");
    s += &format!("<polyline points='{}' fill='none' stroke='#2a6' stroke-width='2.5'/>", line(&|p| p.1));
    s += &format!("<polyline points='{}' fill='none' stroke='#888' stroke-width='2.5'/>", line(&|p| p.2));
    s += &format!(
        "<text x='{}' y='{}' fill='#2a6'>tensorcdc run (continuous)</text><text x='{}' y='{}' fill='#888'>frozen (the blog: trained once)</text>",
        l + 10.0,
        h - b - 30.0,
        l + 10.0,
        h - b - 14.0
    );
    s += &format!("<text x='{l}' y='{}'>labelled rows streamed since the change (negative: before it)</text></svg></body></html>", h - 12.0);
    s
}

/// What a drift run measured.
pub struct Outcome {
    /// (labelled rows since the change, continuous accuracy, frozen accuracy) per block.
    pub points: Vec<(i64, f64, f64)>,
    /// Continuous accuracy before the change (mean of the last three blocks before it).
    pub before: f64,
    /// Labelled rows after the change until the continuous run was back within 3 points.
    pub recovered: Option<i64>,
    pub frozen_best_after: f64,
    /// The runs, still going (dropping them ends them), then their Postgres (fields drop
    /// in this order).
    pub runs: [Run; 2],
    pub pg: LocalPg,
}

/// Runs the experiment in `dir` with `bin` (the tensorcdc binary).
pub async fn drift(bin: &Path, dir: &Path, before_blocks: usize, after_blocks: usize) -> Result<Outcome> {
    let data_dir = Path::new("/usr/share/datasets/fashion-mnist");
    let train = mnist::load(data_dir, Split::Train)?;
    let test = mnist::load(data_dir, Split::Test)?;
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() })?;
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE fashion(id int PRIMARY KEY, label smallint, pixels bytea)").await?;
    insert(&c, 1, &train, 0..SNAPSHOT, |y| Some(y as i16)).await?;
    let cont = spawn(bin, &pg, dir, "continuous", true)?;
    let frozen = spawn(bin, &pg, dir, "frozen", false)?;
    let (mut next_id, mut next_train, mut next_test, mut labelled) = (SNAPSHOT as i32 + 1, SNAPSHOT, 0usize, SNAPSHOT as u64);
    let mut points = Vec::new();
    let mut csv = String::from("labelled_since_change,continuous_accuracy,frozen_accuracy\n");
    for block in 0..before_blocks + after_blocks {
        let permuted = block >= before_blocks;
        let perm = move |y: u8| if permuted { (y + SHIFT) % 10 } else { y };
        insert(&c, next_id, &train, next_train..next_train + BLOCK, |y| Some(perm(y) as i16)).await?;
        (next_id, next_train, labelled) = (next_id + BLOCK as i32, next_train + BLOCK, labelled + BLOCK as u64);
        let deadline = Instant::now() + Duration::from_secs(300);
        while examples_seen(&cont.out) < labelled {
            if Instant::now() > deadline {
                bail!("no version covering {labelled} labelled rows within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first = next_id;
        insert(&c, first, &test, next_test..next_test + EVAL, |_| None).await?;
        let truth: Vec<String> = (next_test..next_test + EVAL).map(|i| perm(test.labels[i]).to_string()).collect();
        (next_id, next_test) = (next_id + EVAL as i32, next_test + EVAL);
        let mut acc = [0.0f64; 2];
        for (k, run) in [&cont, &frozen].into_iter().enumerate() {
            let sql = format!("SELECT row_key::int, prediction FROM {} WHERE row_key::int >= {first} AND row_key::int < {}", run.table, first + EVAL as i32);
            let deadline = Instant::now() + Duration::from_secs(120);
            let rows = loop {
                let rows = c.query(sql.as_str(), &[]).await?;
                if rows.len() == EVAL {
                    break rows;
                }
                if Instant::now() > deadline {
                    bail!("{}: {} of {EVAL} predictions within 120 s", run.table, rows.len());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let right = rows.iter().filter(|r| r.get::<_, String>(1) == truth[(r.get::<_, i32>(0) - first) as usize]).count();
            acc[k] = right as f64 / EVAL as f64;
        }
        let since = (block as i64 + 1 - before_blocks as i64) * BLOCK as i64;
        eprintln!("block {block}: {since:>6} labelled rows since the change: continuous {:.3}, frozen {:.3}", acc[0], acc[1]);
        csv += &format!("{since},{:.4},{:.4}\n", acc[0], acc[1]);
        points.push((since, acc[0], acc[1]));
        let _ = &mut csv;
    }
    // The level before the change: the last three blocks before it (after warm-up).
    let pre: Vec<f64> = points.iter().filter(|p| p.0 <= 0).rev().take(3).map(|p| p.1).collect();
    let before = pre.iter().sum::<f64>() / pre.len().max(1) as f64;
    let recovered = points.iter().find(|p| p.0 > 0 && p.1 >= before - 0.03).map(|p| p.0);
    let frozen_best_after = points.iter().filter(|p| p.0 > 0).map(|p| p.2).fold(0.0, f64::max);
    std::fs::write(dir.join("drift.csv"), &csv)?;
    Ok(Outcome { points, before, recovered, frozen_best_after, runs: [cont, frozen], pg })
}
