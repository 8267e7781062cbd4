//! TLS on every Postgres connection, as libpq's `sslmode` says. The test makes a CA and a
//! server certificate (for `localhost` only) with `openssl`, and starts a cluster with
//! `ssl = on` whose `pg_hba.conf` has `hostssl` lines only, with `log_connections` on.
//! `mnist load`, `train --source`, `capture` and `predict --follow` (with a predictions
//! table) connect with verify-full, verify-ca and require; `pg_stat_ssl` shows TLS on the
//! connections of the running commands, and the server log shows every TCP session it
//! authorised was TLS. verify-full against a host name the certificate does not name
//! fails; against a server without TLS, require fails clearly and prefer connects.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tensorcdc_localpg::{LocalPg, Options};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";
const PW: &str = "tls-s3cret";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and a server certificate it signs for DNS name `localhost` only.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(dir, &[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tensorcdc test CA"]].concat());
    openssl(dir, &[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    (dir.join("ca.pem"), dir.join("server.crt"), dir.join("server.key"))
}

fn tls_cluster(cert: &Path, key: &Path) -> LocalPg {
    let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl replication all 127.0.0.1/32 scram-sha-256\n";
    LocalPg::start(Options {
        no_fsync: true,
        password: Some(PW.into()),
        tls: Some((cert.into(), key.into())),
        hba: Some(hba.into()),
        settings: vec![("log_connections".into(), "on".into()), ("log_line_prefix".into(), "'%r '".into())],
        ..Default::default()
    })
    .unwrap()
}

fn url(host: &str, port: u16, query: &str) -> String {
    format!("postgres://postgres:{PW}@{host}:{port}/postgres?{query}")
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// (TCP connections of other sessions, those without TLS) from `pg_stat_ssl`.
async fn tls_sessions(c: &tokio_postgres::Client) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.client_addr IS NOT NULL AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Waits until `sql` gives `want`, failing after 30 s.
async fn wait_for(c: &tokio_postgres::Client, sql: &str, want: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {sql} gave {n}, expected {want}, after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until at least `n` other TCP sessions are open, then asserts all use TLS.
async fn assert_all_tls(c: &tokio_postgres::Client, n: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (total, plain) = tls_sessions(c).await;
        assert_eq!(plain, 0, "{what}: {plain} of {total} connections without TLS");
        if total >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {total} connections after 30 s, expected {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_uses_tls_as_sslmode_says() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let pg = tls_cluster(&cert, &key);
    let port = pg.port();
    let ca = ca.display().to_string();
    let full = url("localhost", port, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let verify_ca = url("127.0.0.1", port, &format!("sslmode=verify-ca&sslrootcert={ca}"));
    let require = url("127.0.0.1", port, "sslmode=require");
    let state = dir.path().join("state");
    let bin = || {
        let mut c = bin();
        c.env("TENSORCDC_STATE_DIR", &state).env_remove("PGSSLMODE").env_remove("PGSSLROOTCERT");
        c
    };

    // Our own client: verify-full over TLS; libpq's allow and prefer end up on TLS too, and
    // disable is turned away by the hostssl-only pg_hba.conf.
    let c = tensorcdc_postgres::conn::connect(&full).await.unwrap();
    for mode in ["allow", "prefer"] {
        let other = tensorcdc_postgres::conn::connect(&url("127.0.0.1", port, &format!("sslmode={mode}"))).await.unwrap();
        let ssl: bool = other.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
        assert!(ssl, "sslmode={mode} did not use TLS");
    }
    let e = tensorcdc_postgres::conn::connect(&url("127.0.0.1", port, "sslmode=disable")).await.err().unwrap().to_string();
    assert!(e.contains("pg_hba.conf") && e.contains("no encryption"), "{e}");

    // mnist load with verify-full.
    let out = run_ok(bin().args(["mnist", "load", "--data", FASHION, "--postgres", &full, "--limit", "2000", "--chunk", "500"]), "mnist load over verify-full");
    assert!(out.contains("2000"), "{out}");
    // train --source with verify-ca (the address is not the certificate's name; verify-ca
    // does not check names).
    let model = dir.path().join("model");
    let out = run_ok(bin().args(["train", "--source", &verify_ca, "--epochs", "1", "--out", model.to_str().unwrap()]), "train --source over verify-ca");
    assert!(out.contains("training on 2000 examples"), "{out}");

    // capture with require: its SQL and replication connections both use TLS.
    let mut capture = bin()
        .args(["capture", "--postgres", &require, "--table-include-list", "public.mnist_train", "--slot-name", "tls"])
        .args(["--converter", "json-noschema", "--sink", &format!("file:{}", dir.path().join("events.jsonl").display())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = capture.stderr.take().unwrap();
    let lines = std::thread::spawn(move || BufReader::new(err).lines().map_while(Result::ok).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(dir.path().join("events.jsonl")).map_or(0, |s| s.lines().count()) < 2000 {
        assert!(Instant::now() < deadline, "capture wrote fewer than 2000 events in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tls' AND active", 1, "capture's slot streaming").await;
    assert_all_tls(&c, 2, "capture").await;
    let pid = capture.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(capture.wait().unwrap().success());
    let lines = lines.join().unwrap();
    assert!(!lines.iter().any(|l| l.contains(PW)), "{lines:?}");

    // predict --follow with verify-full, writing predictions to a table (a third connection).
    let mut follow = bin()
        .args(["predict", "--follow", "--source", &full, "--table", "mnist_manual", "--max", "2", "--model", model.to_str().unwrap()])
        .args(["--predictions-table", "mnist_predictions"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE 'tensorcdc_mnist_manual_%'", 1, "the follower's slot").await;
    assert_all_tls(&c, 3, "predict --follow").await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS mnist_manual(id serial PRIMARY KEY, label smallint, pixels bytea); INSERT INTO mnist_manual(label, pixels) SELECT label, pixels FROM mnist_train ORDER BY id LIMIT 2")
        .await
        .unwrap();
    let preds: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
    assert!(follow.wait().unwrap().success());
    assert_eq!(preds.len(), 2, "{preds:?}");
    let n: i64 = c.query_one("SELECT count(*) FROM mnist_predictions", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);

    // verify-full refuses a certificate that does not name the host (127.0.0.1).
    let t = Instant::now();
    let out = bin()
        .args(["train", "--source", &url("127.0.0.1", port, &format!("sslmode=verify-full&sslrootcert={ca}")), "--out", model.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && t.elapsed() < Duration::from_secs(10));
    assert!(err.contains("127.0.0.1") && err.contains("not valid for name"), "{err}");
    assert!(!err.contains(PW), "{err}");

    // The server authorised TLS sessions only over TCP (local socket lines are "[local]").
    let log = std::fs::read_to_string(pg.data_dir().join("server.log")).unwrap();
    let authorised: Vec<&str> = log.lines().filter(|l| l.starts_with("127.0.0.1") && l.contains("connection authorized")).collect();
    assert!(authorised.iter().filter(|l| l.contains("replication connection")).count() >= 3, "{authorised:#?}");
    assert!(authorised.len() >= 8, "{authorised:#?}");
    for l in &authorised {
        assert!(l.contains("SSL enabled"), "a session without TLS: {l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_fails_and_prefer_connects_without_server_tls() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let port = pg.port();
    let dir = tempfile::tempdir().unwrap();
    let plain = |mode: &str| format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode={mode}");
    let c = tensorcdc_postgres::conn::connect(&plain("prefer")).await.unwrap();
    let ssl: bool = c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(!ssl);
    let out = bin()
        .env("TENSORCDC_STATE_DIR", dir.path())
        .args(["train", "--source", &plain("require"), "--out", dir.path().join("m").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("does not support TLS, but sslmode=require requires it"), "{err}");
    let out = bin().args(["mnist", "load", "--data", FASHION, "--postgres", &plain("prefer"), "--split", "test", "--limit", "10"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
