//! Heartbeats (issue 21): a captured table with no writes while another database on the same
//! server writes 1 GB of WAL. With `heartbeat.interval.ms` the slot stays less than 64 MB
//! behind the server; the heartbeat records are Debezium's (topic, key and value schemas), and
//! `heartbeat.action.query` runs on the captured database every interval.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

mod common;
use common::Kill;

async fn client(pg: &LocalPg, db: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&pg.conninfo(db), NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// Bytes of WAL between the server's position and the slot's confirmed one.
async fn behind(c: &tokio_postgres::Client) -> i64 {
    // No slot yet (the capture is starting): as far behind as can be.
    let r = c
        .query_opt("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 FROM pg_replication_slots WHERE slot_name = 'beats'", &[])
        .await
        .unwrap();
    r.and_then(|r| r.get::<_, Option<i64>>(0)).unwrap_or(i64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_table_on_a_busy_server_keeps_its_slot_close() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    pg.create_db("other").unwrap();
    let c = client(&pg, "postgres").await;
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_train")).await.unwrap();
    c.batch_execute("CREATE TABLE heartbeat(id int PRIMARY KEY, ts timestamptz)").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let _capture = Kill(
        Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .env("TENSORCDC_STATE_DIR", dir.path().join("state"))
            .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_train", "--slot-name", "beats"])
            .args(["--set", "heartbeat.interval.ms=500"])
            .args(["--set", "heartbeat.action.query=INSERT INTO heartbeat VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET ts = now()"])
            .arg("--sink")
            .arg(format!("file:{}", events.display()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while behind(&c).await > 1 << 20 {
        assert!(Instant::now() < deadline, "the slot never caught up at the start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 1 GB of WAL in another database, about 90 MB per transaction; the captured table is idle.
    let other = client(&pg, "other").await;
    other.batch_execute("CREATE TABLE big(x text)").await.unwrap();
    let start: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
    let mut written = 0i64;
    for _ in 0..30 {
        other.batch_execute("INSERT INTO big SELECT repeat(md5(i::text), 60) FROM generate_series(1, 45000) i").await.unwrap();
        written = c.query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::int8", &[&start]).await.unwrap().get(0);
        if written >= 1 << 30 {
            break;
        }
    }
    assert!(written >= 1 << 30, "only {written} bytes of WAL written");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let b = behind(&c).await;
        if b < 64 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot is {} MB behind 10 s after {} MB of WAL", b >> 20, written >> 20);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The action query ran on the captured database.
    let beats: i64 = c.query_one("SELECT count(*) FROM heartbeat WHERE ts > now() - interval '1 minute'", &[]).await.unwrap().get(0);
    assert_eq!(beats, 1);
    // Debezium's heartbeat records: its topic, key and value, with the JSON converter's schemas.
    let text = std::fs::read_to_string(&events).unwrap();
    let beat: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["topic"] == "__debezium-heartbeat.tf")
        .expect("a heartbeat record");
    assert_eq!(
        beat["key"],
        serde_json::json!({"schema": {"type": "struct", "fields": [{"type": "string", "optional": false, "field": "serverName"}], "optional": false,
            "name": "io.debezium.connector.common.ServerNameKey", "version": 1}, "payload": {"serverName": "tf"}})
    );
    assert_eq!(beat["value"]["schema"]["name"], "io.debezium.connector.common.Heartbeat");
    let ts = beat["value"]["payload"]["ts_ms"].as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now - 120_000..=now).contains(&ts), "ts_ms {ts} is not a recent time");
}
