//! What the CLI tests share.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// Lines of a child's output with a deadline: a thread reads, the test waits on a channel.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    pub fn of(out: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// The next line; `None` at the end of the output; fails after `secs` seconds.
    pub fn next(&self, secs: u64, what: &str) -> Option<String> {
        match self.0.recv_timeout(Duration::from_secs(secs)) {
            Ok(l) => Some(l),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no line in {secs} s"),
        }
    }

    /// The next line if one comes within `ms` (`None` on a timeout or at the end).
    pub fn try_next(&self, ms: u64) -> Option<String> {
        self.0.recv_timeout(Duration::from_millis(ms)).ok()
    }

    /// Every remaining line, failing after `secs` seconds.
    pub fn rest(&self, secs: u64, what: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while let Some(l) = self.next(deadline.saturating_duration_since(Instant::now()).as_secs().max(1), what) {
            out.push(l);
        }
        out
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> std::path::PathBuf {
    let p = std::env::var_os("TENSORCDC_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/var/tmp/tensorcdc-tools/venv/bin/python"));
    assert!(p.exists(), "{} not found: run scripts/install-deps.sh (it installs scikit-learn there)", p.display());
    p
}

/// One of scikit-learn's bundled data sets as CSV (`scripts/sklearn_csv.py`): header, rows.
pub fn sklearn(name: &str, dir: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let out = dir.join(format!("{name}.csv"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sklearn_csv.py");
    let st = std::process::Command::new(python()).arg(script).arg(name).arg(&out).status().unwrap();
    assert!(st.success(), "sklearn_csv.py {name}");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    (header, lines.map(|l| l.split(',').map(String::from).collect()).collect())
}

/// scikit-learn's breast_cancer as table `cancer(id <id_type> PRIMARY KEY, <features> float8,
/// target int)` in a private Postgres: the cluster, a client, the CSV header and rows.
pub async fn cancer_table(dir: &std::path::Path, id_type: &str) -> (tensorcdc_localpg::LocalPg, tokio_postgres::Client, Vec<String>, Vec<Vec<String>>) {
    let (header, rows) = sklearn("breast_cancer", dir);
    let pg = tensorcdc_localpg::LocalPg::start(tensorcdc_localpg::Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let cols: Vec<String> = header.iter().map(|h| if h == "target" { "target int".into() } else { format!("{h} float8") }).collect();
    c.batch_execute(&format!("CREATE TABLE cancer(id {id_type} PRIMARY KEY, {})", cols.join(", "))).await.unwrap();
    (pg, c, header, rows)
}

/// `INSERT INTO cancer` of rows `from..to` of breast_cancer (repeated past its end), ids from
/// `from + 1`; `labelled: false` leaves `target` NULL.
pub fn cancer_insert(header: &[String], rows: &[Vec<String>], from: usize, to: usize, labelled: bool) -> String {
    let values: Vec<String> = (from..to)
        .map(|i| {
            let mut r = rows[i % rows.len()].clone();
            if !labelled {
                *r.last_mut().unwrap() = "NULL".into();
            }
            format!("({},{})", i + 1, r.join(","))
        })
        .collect();
    format!("INSERT INTO cancer(id,{}) VALUES {}", header.join(","), values.join(","))
}

/// A count from `sql`.
pub async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls `sql` (a count) until it reaches `want`, with a deadline.
pub async fn wait_count(c: &tokio_postgres::Client, sql: &str, want: i64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = count(c, sql).await;
        if n >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {n}, expected {want} within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `what` (a line of `run`'s output containing it), with a deadline.
pub fn wait_line(lines: &Lines, what: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs().max(1);
        let l = lines.next(left, what).unwrap_or_else(|| panic!("run ended before {what:?}"));
        if l.contains(what) {
            return l;
        }
    }
}

/// Distinct row ids in a topic (Debezium JSON without schema).
pub fn topic_ids(brokers: &str, topic: &str, expect_records: i64) -> std::collections::HashSet<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "check")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while n < expect_records {
        assert!(Instant::now() < deadline, "read {n} of {expect_records} records of {topic}");
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            n += 1;
            if let Some(v) = m.payload() {
                let v: serde_json::Value = serde_json::from_slice(v).unwrap();
                ids.insert(v["after"]["id"].as_i64().unwrap());
            }
        }
    }
    ids
}

/// Runs the `tensorcdc` binary with `args`.
pub fn tensorcdc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tensorcdc")).args(args).output().expect("run tensorcdc")
}

/// Its stdout; fails the test when it fails.
pub fn ok(args: &[&str]) -> String {
    let out = tensorcdc(args);
    assert!(out.status.success(), "tensorcdc {args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Its stderr; fails the test when it succeeds or panics.
pub fn fails(args: &[&str]) -> String {
    let out = tensorcdc(args);
    assert!(!out.status.success(), "tensorcdc {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}
