//! Peak memory of `tensorcdc capture` on one large transaction (default 1 GB of 784-byte
//! rows inserted in a single transaction), beside `pg_recvlogical` reading the same
//! transaction from its own slot in the same run. Peak RSS is the process's `VmHWM`
//! (capture, read while it still runs) and GNU time's maximum resident size
//! (pg_recvlogical).
//!
//! Usage: bench-bigtx [MB] (default 1024). Prints a JSON line.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<()> {
    let mb: i64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let rows = mb * 1024 * 1024 / 784;
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() })?;
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE mnist_train(id bigserial PRIMARY KEY, label smallint, pixels bytea); CREATE PUBLICATION dbz_publication FOR ALL TABLES")
        .await?;
    let url = pg.url("postgres");
    tensorcdc_bench::create_reference_slot(&pg)?;
    let exe = std::env::current_exe()?.with_file_name("tensorcdc");
    let state = tempfile_dir()?;
    let mut capture = Command::new(&exe)
        .env("TENSORCDC_STATE_DIR", &state)
        .args([
            "capture",
            "--postgres",
            &url,
            "--table-include-list",
            "public.mnist_train",
            "--slot-name",
            "tc",
            "--converter",
            "json-noschema",
            "--sink",
            "stdout",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.join("capture.log"))?)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tc' AND active", &[]).await?.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "capture did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    c.batch_execute(&format!(
        "INSERT INTO mnist_train(label, pixels) SELECT g % 10, substring(decode(repeat(md5(g::text), 49), 'hex') for 784) FROM generate_series(1, {rows}) g"
    ))
    .await?;
    let insert_s = t.elapsed().as_secs_f64();
    let end: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0);
    let t = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let done: bool = c.query_one("SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots WHERE slot_name = 'tc'", &[&end]).await?.get(0);
        if done {
            break;
        }
        anyhow::ensure!(capture.try_wait()?.is_none(), "capture exited: {}", std::fs::read_to_string(state.join("capture.log")).unwrap_or_default());
        anyhow::ensure!(Instant::now() < deadline, "capture did not confirm the transaction in 30 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let capture_s = t.elapsed().as_secs_f64();
    let capture_kb = vm_hwm_kb(capture.id()).context("reading VmHWM")?;
    let _ = Command::new("kill").arg(capture.id().to_string()).status();
    let _ = capture.wait();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M"])
        .arg(tensorcdc_bench::recvlogical(&pg))
        .args(tensorcdc_bench::recvlogical_read_args(&pg, &end))
        .output()?;
    anyhow::ensure!(out.status.success(), "pg_recvlogical failed: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let recv_kb: u64 = err.lines().find_map(|l| l.strip_prefix("maxrss_kb=")).context("GNU time output")?.trim().parse()?;
    let _ = std::fs::remove_dir_all(&state);
    println!(
        "{}",
        serde_json::json!({
            "transaction_mb": mb,
            "rows": rows,
            "insert_s": (insert_s * 10.0).round() / 10.0,
            "capture_s": (capture_s * 10.0).round() / 10.0,
            "capture_peak_rss_mb": capture_kb / 1024,
            "pg_recvlogical_peak_rss_mb": recv_kb / 1024,
        })
    );
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("bench-bigtx-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
