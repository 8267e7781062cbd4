//! Secrets stay secret: with the password in the URL, in `PGPASSWORD`, in a password file
//! (`PGPASSFILE`) or from a registration file's `${env:...}` provider, capture connects (the
//! password was used) and nothing it prints, at debug level too, or writes contains it.
//! Connection errors name the server with the password hidden.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

const PW: &str = "s3cretPW-7q";

fn run(pg_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
    c.args(args).env("TENSORCDC_LOG", "debug").env("RUST_LOG", "debug").env("TENSORCDC_STATE_DIR", pg_dir.join("state"));
    c.env_remove("PGPASSWORD").env_remove("PGPASSFILE");
    for (k, v) in env {
        c.env(k, v);
    }
    // Every run must end within a minute (a retry loop that never ends is a failure).
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).unwrap();
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).unwrap();
        v
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("tensorcdc {args:?} did not end within 60 s: {}", String::from_utf8_lossy(&e.join().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: o.join().unwrap(), stderr: e.join().unwrap() }
}

fn assert_clean(what: &str, out: &Output, files: &[&Path]) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(PW), "{what}: the password was printed:\n{text}");
    for f in files {
        let data = std::fs::read_to_string(f).unwrap_or_default();
        assert!(!data.contains(PW), "{what}: the password is in {}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_never_printed_or_written() {
    let pg = LocalPg::start(Options { password: Some(PW.into()), no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&format!("{} password={PW}", pg.conninfo("postgres")), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE mnist_train(id int PRIMARY KEY, label smallint); INSERT INTO mnist_train VALUES (1, 3), (2, 4)").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = pg.port().to_string();
    let with_pw = format!("postgres://postgres:{PW}@127.0.0.1:{port}/postgres");
    let without_pw = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let passfile = dir.path().join("pgpass");
    std::fs::write(&passfile, format!("127.0.0.1:{port}:*:postgres:{PW}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let reg = dir.path().join("register.json");
    std::fs::write(
        &reg,
        serde_json::json!({"name": "s", "config": {
        "database.hostname": "127.0.0.1", "database.port": port, "database.user": "postgres",
        "database.password": "${env:DB_SECRET}", "database.dbname": "postgres",
        "table.include.list": "public.mnist_train", "slot.name": "sec_reg", "snapshot.mode": "initial_only"}})
        .to_string(),
    )
    .unwrap();
    let passfile_s = passfile.display().to_string();
    // (what, arguments, environment)
    type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("password in the URL", vec!["--postgres".into(), with_pw.clone(), "--slot-name".into(), "sec_url".into()], vec![]),
        ("PGPASSWORD", vec!["--postgres".into(), without_pw.clone(), "--slot-name".into(), "sec_env".into()], vec![("PGPASSWORD", PW)]),
        ("password file", vec!["--postgres".into(), without_pw.clone(), "--slot-name".into(), "sec_file".into()], vec![("PGPASSFILE", &passfile_s)]),
        ("${env:...} in a registration file", vec!["--config".into(), reg.display().to_string()], vec![("DB_SECRET", PW)]),
    ];
    for (what, conn_args, env) in cases {
        let out_file = dir.path().join(format!("{}.jsonl", what.len()));
        let mut args: Vec<String> = vec!["capture".into()];
        args.extend(conn_args);
        args.extend(["--table-include-list".into(), "public.mnist_train".into(), "--snapshot-mode".into(), "initial_only".into()]);
        args.extend(["--sink".into(), format!("file:{}", out_file.display())]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(dir.path(), &a, &env);
        assert!(out.status.success(), "{what}: capture failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let lines = std::fs::read_to_string(&out_file).unwrap().lines().count();
        assert_eq!(lines, 2, "{what}: both rows captured");
        assert_clean(what, &out, &[&out_file]);
    }
    // Without any password the error says so, and is not retried for ever.
    let out = run(dir.path(), &["capture", "--postgres", &without_pw, "--slot-name", "sec_none", "--sink", "stdout"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("none was supplied"), "{}", String::from_utf8_lossy(&out.stderr));
    // Connection errors of other commands hide the password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bad = format!("postgres://postgres:{PW}@127.0.0.1:{closed}/postgres");
    let out = run(dir.path(), &["mnist", "load", "--data", "/usr/share/datasets/fashion-mnist", "--postgres", &bad, "--limit", "1"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{closed}")) && err.contains("****"), "{err}");
    assert_clean("mnist load at a closed port", &out, &[]);
    // No state file holds it either.
    for e in std::fs::read_dir(dir.path().join("state")).into_iter().flatten().flatten() {
        assert!(!std::fs::read_to_string(e.path()).unwrap_or_default().contains(PW));
    }
}
