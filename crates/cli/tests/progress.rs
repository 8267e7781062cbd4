//! `tensorcdc capture` says what it is doing: the snapshot, the LSN streaming starts from,
//! then a status line with events/s and the lag behind the server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_reports_snapshot_streaming_and_status() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(
        "CREATE TABLE mnist_train(id serial PRIMARY KEY, label smallint); INSERT INTO mnist_train(label) SELECT g % 10 FROM generate_series(1, 500) g",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .env("TENSORCDC_STATE_DIR", dir.path())
        .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_train", "--slot-name", "prog", "--progress-interval", "1"])
        .args(["--sink", &format!("file:{}", dir.path().join("out.jsonl").display())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut inserted = false;
    while !lines.iter().any(|l: &String| l.starts_with("streaming: ") && l.contains("events/s") && l.contains("bytes behind the server")) {
        assert!(Instant::now() < deadline, "no status line in 30 s: {lines:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        if !inserted && lines.iter().any(|l| l.contains("streaming from LSN")) {
            c.batch_execute("INSERT INTO mnist_train(label) VALUES (1)").await.unwrap();
            inserted = true;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.iter().any(|l| l.starts_with("snapshot done: 500 rows; streaming from LSN ")), "{lines:?}");
}
