//! Sustained load on `tensorcdc run`: Fashion-MNIST rows inserted at a steady rate (default
//! 2,000 rows/s for 300 s, half of them labelled, 20 rows per transaction every 10 ms) into a
//! table that starts with a 5,000-row labelled snapshot. Reports the commit-to-prediction
//! latency of the unlabelled rows (p50/p99, from the predictions table), the interval between
//! versions, whether the run kept up (every row predicted, the lag at the end), and the run's
//! resident memory sampled every 10 s (first and last minute, maximum, every sample). The
//! training buffer is bounded to 50,000 rows (`--buffer-rows 50000`), which it reaches after
//! 45 s (5,000 snapshot rows, then 1,000 labelled rows a second); from then on memory should
//! stay flat.
//!
//! Usage: bench-sustained [SECONDS] [ROWS_PER_S]. Prints one JSON line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

const SNAPSHOT: usize = 5000;
const PER_TXN: usize = 20;
/// Labelled rows the run holds at most (`--buffer-rows`).
const BUFFER_ROWS: usize = 50_000;

fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(300);
    let rate: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let bin = std::env::current_exe()?.with_file_name("tensorcdc");
    let train = mnist::load(Path::new("/usr/share/datasets/fashion-mnist"), Split::Train)?;
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() })?;
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE fashion(id int PRIMARY KEY, label smallint, pixels bytea)").await?;
    let one = c.prepare("INSERT INTO fashion(id, label, pixels) VALUES ($1, $2, $3)").await?;
    c.batch_execute("BEGIN").await?;
    for i in 0..SNAPSHOT {
        c.execute(&one, &[&(i as i32 + 1), &(train.labels[i] as i16), &train.image(i)]).await?;
    }
    c.batch_execute("COMMIT").await?;
    let out = tempfile::tempdir()?;
    let mut child = Command::new(&bin)
        .args(["run", "--source", &pg.url("postgres"), "--table", "fashion", "--label", "label", "--layers", "128", "--initial-epochs", "3"])
        .args([
            "--retrain-every",
            "5000",
            "--retrain-secs",
            "30",
            "--refresh-epochs",
            "2",
            "--replay",
            "5000",
            "--replay-window",
            "20000",
            "--held-out-window",
            "1000",
        ])
        .args(["--buffer-rows", &BUFFER_ROWS.to_string(), "--metrics-addr", "off", "--out"])
        .arg(out.path())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    for l in lines.by_ref() {
        if l?.starts_with("version 1:") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    // The writer: PER_TXN rows per transaction at a steady pace; even rows labelled.
    let url = pg.conninfo("postgres");
    let rows_total = secs as usize * rate;
    let writer = tokio::spawn(async move {
        let (c, conn) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(conn);
        let values: Vec<String> = (0..PER_TXN).map(|k| format!("(${}, ${}, ${})", 3 * k + 1, 3 * k + 2, 3 * k + 3)).collect();
        let stmt = c.prepare(&format!("INSERT INTO fashion(id, label, pixels) VALUES {}", values.join(", "))).await?;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(PER_TXN as f64 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let (mut id, mut behind_max) = (SNAPSHOT as i32 + 1, Duration::ZERO);
        let start = Instant::now();
        for t in 0..rows_total / PER_TXN {
            tick.tick().await;
            behind_max = behind_max.max(start.elapsed().saturating_sub(Duration::from_secs_f64(t as f64 * PER_TXN as f64 / rate as f64)));
            let ids: Vec<i32> = (0..PER_TXN as i32).map(|k| id + k).collect();
            let labels: Vec<Option<i16>> = ids.iter().map(|i| (i % 2 == 0).then(|| train.labels[*i as usize % train.len()] as i16)).collect();
            let images: Vec<&[u8]> = ids.iter().map(|i| train.image(*i as usize % train.len())).collect();
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::with_capacity(3 * PER_TXN);
            for k in 0..PER_TXN {
                params.push(&ids[k]);
                params.push(&labels[k]);
                params.push(&images[k]);
            }
            c.execute(&stmt, &params).await?;
            id += PER_TXN as i32;
        }
        anyhow::Ok((start.elapsed(), behind_max))
    });
    let mut rss = Vec::new();
    let started = Instant::now();
    while !writer.is_finished() {
        if let Some(m) = rss_mib(pid) {
            rss.push((started.elapsed().as_secs_f64(), m));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let (wrote_in, behind_max) = writer.await??;
    let unlabelled = (rows_total / 2) as i64;
    // Keeping up: every unlabelled row predicted, and how long after the last insert.
    let end = Instant::now();
    loop {
        let n: i64 = c.query_one("SELECT count(*) FROM fashion_predictions WHERE row_key::int > $1", &[&(SNAPSHOT as i32)]).await?.get(0);
        if n >= unlabelled {
            break;
        }
        if end.elapsed() > Duration::from_secs(120) {
            bail!("{n} of {unlabelled} predictions 120 s after the last insert: the run did not keep up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = end.elapsed();
    let r = c
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms), max(latency_ms) \
             FROM fashion_predictions WHERE row_key::int > $1",
            &[&(SNAPSHOT as i32)],
        )
        .await?;
    let (p50, p99, max): (f64, f64, f64) = (r.get(0), r.get(1), r.get(2));
    let hist: Vec<serde_json::Value> =
        std::fs::read_to_string(out.path().join("versions.jsonl"))?.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut gaps: Vec<f64> =
        hist.windows(2).map(|w| (w[1]["published_ms"].as_i64().unwrap_or(0) - w[0]["published_ms"].as_i64().unwrap_or(0)) as f64 / 1e3).collect();
    gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median_gap = gaps.get(gaps.len() / 2).copied().unwrap_or(f64::NAN);
    let window = |from: f64, to: f64| {
        let v: Vec<f64> = rss.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, m)| *m).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let total = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{}",
        serde_json::json!({
            "bench": "sustained", "seconds": secs, "rows_per_s_target": rate, "rows": rows_total, "unlabelled": unlabelled,
            "write_seconds": wrote_in.as_secs_f64(), "writer_behind_max_ms": behind_max.as_secs_f64() * 1e3,
            "latency_ms": {"p50": p50, "p99": p99, "max": max},
            "versions": hist.len(), "version_interval_s_median": median_gap,
            "caught_up_after_last_insert_s": caught_up.as_secs_f64(),
            "buffer_rows": BUFFER_ROWS,
            "rss_mib": {"first_minute": window(0.0, 60.0), "min_after_60s": rss.iter().filter(|r| r.0 >= 60.0).map(|r| r.1).fold(f64::INFINITY, f64::min), "last_minute": window(total - 70.0, total), "max": rss.iter().map(|r| r.1).fold(0.0, f64::max), "samples": rss.len(), "every_10s": rss.iter().map(|r| r.1.round()).collect::<Vec<_>>()},
        })
    );
    Ok(())
}
