//! Capture throughput on a table of twelve mixed-type columns (bigint key, integer,
//! float8, numeric(12,3), text, timestamptz, date, uuid, jsonb, boolean, float4[], enum),
//! each figure beside its reference measured in the same run on the same private Postgres:
//! * snapshot rows/s (typed Debezium events) against `COPY ... TO STDOUT (FORMAT binary)`;
//! * streaming rows/s against `pg_recvlogical` reading the same WAL (pgoutput, binary).
//!
//! Usage: bench-types [ROWS] (default 100000). Prints a JSON line.

use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use tensorcdc_bench::{capture_rows, create_capture_slot, create_reference_slot, median, recvlogical_rate};
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_postgres::{CaptureConfig, SnapshotMode};
use tokio_postgres::NoTls;

const CREATE: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE mixed(id bigint PRIMARY KEY, i integer, f float8, n numeric(12,3), t text, ts timestamptz,
        d date, u uuid, j jsonb, b boolean, a float4[], e mood)";

fn insert(from: i64, rows: i64) -> String {
    format!(
        "INSERT INTO mixed SELECT g, g % 1000, g * 0.5, g * 1.125, 'row number ' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', \
         date '2024-01-01' + (g % 365)::int, md5(g::text)::uuid, jsonb_build_object('k', g, 'tag', 'x'), g % 2 = 0, \
         ARRAY[g::float4, 0.5, -1], (ARRAY['sad','ok','happy'])[1 + g % 3]::mood FROM generate_series({from}, {}) g",
        from + rows - 1
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows: i64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() })?;
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute(CREATE).await?;
    c.batch_execute(&insert(1, rows)).await?;
    c.batch_execute("VACUUM ANALYZE mixed").await?;
    c.batch_execute("CREATE PUBLICATION dbz_publication FOR ALL TABLES").await?;
    let mut base = CaptureConfig::default();
    base.set_connection(&pg.url("postgres"))?;
    base.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.mixed")?;

    let (mut copy_rates, mut snap_rates) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let t = Instant::now();
        let s = c.copy_out("COPY mixed TO STDOUT (FORMAT binary)").await?;
        futures::pin_mut!(s);
        while let Some(chunk) = s.next().await {
            chunk?;
        }
        copy_rates.push(rows as f64 / t.elapsed().as_secs_f64());
        let mut cfg = base.clone();
        cfg.slot_name = format!("snap_{round}");
        cfg.snapshot_mode = SnapshotMode::InitialOnly;
        snap_rates.push(capture_rows(cfg, rows as u64, false).await?);
    }

    // Streaming: both slots exist before the same inserts.
    create_reference_slot(&pg)?;
    let mut cfg = base.clone();
    cfg.slot_name = "tc".into();
    cfg.snapshot_mode = SnapshotMode::Never;
    create_capture_slot(&cfg).await?;
    // 1,000 rows a transaction, as an application writes them.
    for from in (0..rows).step_by(1000) {
        c.batch_execute(&insert(rows + 1 + from, 1000.min(rows - from))).await?;
    }
    let end: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0);
    let recv_rate = recvlogical_rate(&pg, &end, rows as u64)?;
    let stream_rate = capture_rows(cfg, rows as u64, false).await?;
    let (copy, snap) = (median(&mut copy_rates), median(&mut snap_rates));
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "columns": 12,
            "snapshot_rows_per_s": snap.round(),
            "copy_binary_rows_per_s": copy.round(),
            "snapshot_vs_copy": (snap / copy * 100.0).round() / 100.0,
            "stream_rows_per_s": stream_rate.round(),
            "pg_recvlogical_rows_per_s": recv_rate.round(),
            "stream_vs_pg_recvlogical": (stream_rate / recv_rate * 100.0).round() / 100.0,
        })
    );
    Ok(())
}
