//! `tensorcdc capture` beside the real Debezium 3.6.3 (embedded engine, `crates/dbzref`), on
//! the same server, in the same run: Debezium's records are the expectation, nothing of
//! them is committed. Each case starts one Debezium engine and two captures (binary and
//! text tuples) with the same connector properties, lets all three snapshot the same rows,
//! then runs the same statements while they stream, and compares every record field by
//! field: key and value, schema and payload, in order. Only the fields of [`may_differ`]
//! (processing times, the connector's version string, and the snapshot position each
//! capture took for itself) may differ; the streamed LSNs, `txId`s and commit times must
//! be equal. The count of compared fields is printed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as J;
use tensorcdc_dbzref::{read_records, Debezium, Record};
use tensorcdc_localpg::{LocalPg, Options};

/// Paths (in `value.payload…` / `key…` form, array indices left out) whose values may
/// differ, and why: every other field must be equal.
fn may_differ(path: &str, snapshot: bool) -> bool {
    // Processing time of the event, and the connector's own version string.
    if matches!(path, "value.payload.ts_ms" | "value.payload.ts_us" | "value.payload.ts_ns" | "value.payload.source.version") {
        return true;
    }
    // A snapshot row carries the point and the transaction its own snapshot was taken at
    // (each capture has its slot): the time, txId, LSN and sequence of that point.
    snapshot
        && matches!(
            path,
            "value.payload.source.ts_ms"
                | "value.payload.source.ts_us"
                | "value.payload.source.ts_ns"
                | "value.payload.source.txId"
                | "value.payload.source.lsn"
                | "value.payload.source.sequence"
        )
}

/// Compares `ours` with `theirs` (Debezium's) below `path`; counts the leaves compared and
/// collects differences.
fn compare(path: &str, ours: &J, theirs: &J, snapshot: bool, count: &mut usize, diffs: &mut Vec<String>) {
    match (ours, theirs) {
        (J::Object(a), J::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            if ka != kb {
                diffs.push(format!("{path}: fields {ka:?}, Debezium's {kb:?}"));
            }
            for (k, vb) in b {
                if let Some(va) = a.get(k) {
                    compare(&format!("{path}.{k}"), va, vb, snapshot, count, diffs);
                }
            }
        }
        (J::Array(a), J::Array(b)) if a.len() == b.len() => {
            for (x, y) in a.iter().zip(b) {
                compare(path, x, y, snapshot, count, diffs);
            }
        }
        _ => {
            *count += 1;
            if ours != theirs && !(may_differ(path, snapshot) && ours.is_null() == theirs.is_null()) {
                diffs.push(format!("{path}: ours {ours}, Debezium's {theirs}"));
            }
        }
    }
}

/// Compares two captures' records topic by topic, in order. Returns the fields compared.
fn compare_records(case: &str, ours: &[Record], theirs: &[Record]) -> (usize, Vec<String>) {
    let mut diffs = Vec::new();
    let mut count = 0;
    let topics: std::collections::BTreeSet<&str> = theirs.iter().chain(ours).map(|r| r.topic.as_str()).collect();
    for t in topics {
        let a: Vec<&Record> = ours.iter().filter(|r| r.topic == t).collect();
        let b: Vec<&Record> = theirs.iter().filter(|r| r.topic == t).collect();
        if a.len() != b.len() {
            diffs.push(format!("{case} {t}: {} records, Debezium {}", a.len(), b.len()));
            continue;
        }
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let snapshot = y.value_json()["payload"]["op"] == "r";
            let mut d = Vec::new();
            compare("key", &x.key_json(), &y.key_json(), snapshot, &mut count, &mut d);
            compare("value", &x.value_json(), &y.value_json(), snapshot, &mut count, &mut d);
            let kind = if snapshot { "snapshot record" } else { "record" };
            diffs.extend(d.into_iter().map(|d| format!("{case} {t} {kind} {i}: {d}")));
        }
    }
    (count, diffs)
}

/// A capture by tensorcdc's CLI, to a file.
struct Capture {
    child: common::Kill,
    out: std::path::PathBuf,
}

fn start_ours(dir: &Path, props: &BTreeMap<String, String>) -> Capture {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({"name": "tensorcdc", "config": props});
    let path = dir.join("register-postgres.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = dir.join("records.jsonl");
    let log = std::fs::File::create(dir.join("capture.log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .arg("capture")
        .arg("--config")
        .arg(&path)
        .arg("--sink")
        .arg(format!("file:{}", out.display()))
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Capture { child: common::Kill(child), out }
}

/// One comparison: tables made by `setup`, captured with `settings`, then `stream` run
/// while all three capture; `marker` is a table whose row is inserted first after the
/// snapshot (so each capture is known to have snapshotted) and again at the end.
struct Case {
    name: String,
    /// Differences we keep on purpose (README, "Beside Debezium"): a path below
    /// `value.payload`, whether only in snapshot records, and why.
    known: Vec<(String, bool, &'static str)>,
    settings: Vec<(String, String)>,
    setup: String,
    include: String,
    stream: Vec<String>,
}

fn base_props(pg: &LocalPg, name: &str, include: &str, prefix_slot: &str) -> BTreeMap<String, String> {
    tensorcdc_dbzref::connector_props(pg.port(), "dbz", &format!("{prefix_slot}_{name}"), &format!("{include},public.marker_{name}"))
}

/// Splits the differences the case names on purpose (printed) from the others (returned).
fn unnamed(case: &Case, tag: &str, diffs: Vec<String>) -> Vec<String> {
    let (named, rest): (Vec<String>, Vec<String>) = diffs.into_iter().partition(|d| {
        case.known
            .iter()
            .any(|(path, snapshot_only, _)| d.contains(&format!(": value.payload.{path}: ")) && (!snapshot_only || d.contains(" snapshot record ")))
    });
    if !named.is_empty() {
        println!("{tag}: {} named differences:\n  {}", named.len(), named.join("\n  "));
    }
    rest
}

/// Runs one case: the fields compared, the differences, and the records of Debezium and of
/// the binary-tuple capture (for the Connect round trip).
async fn run_case(pg: &LocalPg, client: &tokio_postgres::Client, dir: &Path, case: &Case) -> (usize, Vec<String>, Vec<Record>, Vec<Record>) {
    let marker = format!("marker_{}", case.name);
    client.batch_execute(&format!("CREATE TABLE {marker}(id int PRIMARY KEY); {}", case.setup)).await.unwrap();
    let mut dprops = base_props(pg, &case.name, &case.include, "dbz");
    dprops.extend(case.settings.iter().cloned());
    let mut dbz = Debezium::start(&dir.join(format!("{}-debezium", case.name)), &dprops).unwrap();
    let mut ours = Vec::new();
    for binary in [true, false] {
        let mut p = base_props(pg, &case.name, &case.include, if binary { "tcdcb" } else { "tcdct" });
        p.extend(case.settings.iter().cloned());
        p.insert("binary.tuples".into(), binary.to_string());
        let d = dir.join(format!("{}-tensorcdc-{}", case.name, if binary { "binary" } else { "text" }));
        p.insert("offset.storage.file.filename".into(), d.join("offsets.json").display().to_string());
        ours.push((binary, start_ours(&d, &p), d));
    }
    // All three have created their slots once each has read the (empty) marker table's
    // publication and streams: the first marker row reaches all three.
    let topic = format!("dbz.public.{marker}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Repeat the first marker until every capture has it (a capture still snapshotting
        // may not have its slot yet; rows before the slot would be missing from it only).
        let have = |p: &Path| read_records(p).iter().any(|r| r.topic == topic);
        if have(dbz.records_path()) && ours.iter().all(|(_, c, _)| have(&c.out)) {
            break;
        }
        assert!(Instant::now() < deadline, "{}: the captures did not all start streaming in 120 s; Debezium:\n{}", case.name, dbz.log_tail());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let slots: i64 = client.query_one("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%\\_' || $1", &[&case.name]).await.unwrap().get(0);
        if slots == 3 {
            client.batch_execute(&format!("INSERT INTO {marker} VALUES (0) ON CONFLICT DO NOTHING")).await.unwrap();
        }
    }
    for s in &case.stream {
        client.batch_execute(s).await.unwrap_or_else(|e| panic!("{}: {s}: {e}", case.name));
    }
    client.batch_execute(&format!("INSERT INTO {marker} VALUES (1)")).await.unwrap();
    let end = |r: &[Record]| r.iter().filter(|r| r.topic == topic).count() >= 2;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(end(&dbz.records()) && ours.iter().all(|(_, c, _)| end(&read_records(&c.out)))) {
        assert!(Instant::now() < deadline, "{}: the last marker did not reach every capture in 120 s; Debezium:\n{}", case.name, dbz.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dbz.stop().unwrap();
    let theirs = dbz.records();
    let mut count = 0;
    let mut diffs = Vec::new();
    let mut binary_records = Vec::new();
    for (binary, c, d) in ours {
        drop(c.child);
        let mine = read_records(&c.out);
        let tag = format!("{} ({} tuples)", case.name, if binary { "binary" } else { "text" });
        let (n, dd) = compare_records(&tag, &mine, &theirs);
        assert!(n > 0 || theirs.is_empty(), "{tag}: nothing compared; capture log:\n{}", std::fs::read_to_string(d.join("capture.log")).unwrap_or_default());
        count += n;
        diffs.extend(unnamed(case, &tag, dd));
        if binary {
            binary_records = mine;
        }
    }
    (count, diffs, binary_records, theirs)
}

/// Where Debezium 3.6.3 loses a value that tensorcdc keeps: its pgoutput decoder streams a
/// `name` column as null, and its snapshot (JDBC's `java.sql.Date`) turns BC dates into AD
/// ones and ±infinity into arbitrary day numbers, while its stream writes them as tensorcdc
/// does in both.
fn known_type_differences(cases: &[J]) -> Vec<(String, bool, &'static str)> {
    let mut out = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (ty, lit) = (c["type"].as_str().unwrap(), c["literal"].as_str().unwrap());
        if ty == "name" {
            out.push((format!("after.c{i}"), false, "Debezium streams a name column as null"));
        }
        if ty == "date" && (lit.contains("BC") || lit.contains("infinity")) {
            out.push((format!("after.c{i}"), true, "Debezium's snapshot misreads BC and infinite dates (its stream does not)"));
        }
    }
    out
}

/// The type catalogue of `crates/postgres/tests/golden/types.json` (types and literals
/// only: the expectation is Debezium's output), one case per group of settings.
fn type_cases() -> Vec<Case> {
    let g: J = serde_json::from_str(include_str!("../../postgres/tests/golden/types.json")).unwrap();
    let mut out = Vec::new();
    for group in g["groups"].as_array().unwrap() {
        let name = group["name"].as_str().unwrap().to_lowercase();
        let cases = group["cases"].as_array().unwrap();
        let cols: Vec<String> = cases.iter().enumerate().map(|(i, k)| format!("c{i} {}", k["type"].as_str().unwrap())).collect();
        let values: Vec<&str> = cases.iter().map(|k| k["literal"].as_str().unwrap()).collect();
        let nulls = vec!["NULL"; values.len()].join(", ");
        let table = format!("types_{name}");
        let settings = group["settings"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        out.push(Case {
            name: name.clone(),
            known: known_type_differences(cases),
            settings,
            setup: format!(
                "CREATE TABLE {table}(id integer PRIMARY KEY, {}); INSERT INTO {table} VALUES (1, {}), (2, {nulls});",
                cols.join(", "),
                values.join(", ")
            ),
            include: format!("public.{table}"),
            stream: vec![
                format!("INSERT INTO {table} VALUES (3, {}), (4, {nulls})", values.join(", ")),
                format!("UPDATE {table} SET c0 = NULL WHERE id = 3"),
                format!("DELETE FROM {table} WHERE id = 4"),
            ],
        });
    }
    out
}

/// Keys changed, deletes and tombstones, truncate, unchanged TOAST, REPLICA IDENTITY FULL,
/// a keyless table, column defaults, several tables in one snapshot.
fn event_case() -> Case {
    Case {
        name: "events".into(),
        known: vec![],
        settings: vec![("skipped.operations".into(), "none".into())],
        setup: "CREATE TYPE ev_mood AS ENUM ('sad', 'ok');
            CREATE TABLE ev_keyed(id serial PRIMARY KEY, name text DEFAULT 'x', n integer DEFAULT 7 NOT NULL, r real DEFAULT 1.5,
              d date DEFAULT CURRENT_DATE, ts timestamptz DEFAULT now(), m ev_mood DEFAULT 'ok', ok boolean DEFAULT true,
              amount numeric(8,2) DEFAULT 3.5, u uuid DEFAULT '0e4f5a9c-2b1d-4c8e-9f3a-6d7b8c9d0e1f');
            INSERT INTO ev_keyed(name) SELECT 'row ' || g FROM generate_series(1, 5) g;
            CREATE TABLE ev_full(id integer PRIMARY KEY, v text); ALTER TABLE ev_full REPLICA IDENTITY FULL;
            INSERT INTO ev_full VALUES (1, 'a'), (2, 'b');
            CREATE TABLE ev_toast(id integer PRIMARY KEY, big text, n integer);
            INSERT INTO ev_toast SELECT 1, string_agg(md5(g::text), ''), 0 FROM generate_series(1, 400) g;
            CREATE TABLE ev_nokey(a integer, b text); ALTER TABLE ev_nokey REPLICA IDENTITY FULL;
            INSERT INTO ev_nokey VALUES (1, 'one');
            CREATE TABLE ev_trunc(id integer PRIMARY KEY);
            INSERT INTO ev_trunc VALUES (1);"
            .into(),
        include: "public.ev_.*".into(),
        stream: vec![
            "INSERT INTO ev_keyed(name, n) VALUES ('new', 1)".into(),
            "UPDATE ev_keyed SET name = 'changed' WHERE id = 1".into(),
            "UPDATE ev_keyed SET id = 100 WHERE id = 2".into(),
            "DELETE FROM ev_keyed WHERE id = 3".into(),
            "BEGIN; INSERT INTO ev_keyed(name) VALUES ('tx1'), ('tx2'); UPDATE ev_full SET v = 'c' WHERE id = 1; COMMIT".into(),
            "UPDATE ev_full SET id = 20 WHERE id = 2".into(),
            "DELETE FROM ev_full WHERE id = 1".into(),
            "UPDATE ev_toast SET n = 1 WHERE id = 1".into(),
            "UPDATE ev_nokey SET b = 'uno' WHERE a = 1".into(),
            "DELETE FROM ev_nokey WHERE a = 1".into(),
            "TRUNCATE ev_trunc".into(),
        ],
    }
}

/// `provide.transaction.metadata`: BEGIN/END records on `dbz.transaction` and each event's
/// `transaction` block, for transactions over two tables.
fn transaction_case() -> Case {
    Case {
        name: "txmeta".into(),
        known: vec![],
        settings: vec![("provide.transaction.metadata".into(), "true".into())],
        setup: "CREATE TABLE tx_a(id integer PRIMARY KEY, v text); CREATE TABLE tx_b(id integer PRIMARY KEY, n integer);
            INSERT INTO tx_a VALUES (1, 'one'); INSERT INTO tx_b VALUES (1, 1);"
            .into(),
        include: "public.tx_.*".into(),
        stream: vec![
            "BEGIN; INSERT INTO tx_a VALUES (2, 'two'); INSERT INTO tx_b VALUES (2, 2), (3, 3); UPDATE tx_a SET v = 'uno' WHERE id = 1; DELETE FROM tx_b WHERE id = 1; COMMIT".into(),
            "INSERT INTO tx_b VALUES (4, 4)".into(),
            "UPDATE tx_a SET id = 10 WHERE id = 2".into(),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_equals_debeziums_field_for_field() {
    if tensorcdc_dbzref::libs_dir().is_none() {
        panic!("Debezium 3.6.3's jars are not installed: run scripts/install-deps.sh");
    }
    let pg = LocalPg::start(Options {
        no_fsync: true,
        settings: vec![("max_replication_slots".into(), "40".into()), ("max_wal_senders".into(), "40".into())],
        ..Default::default()
    })
    .unwrap();
    let (client, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE DOMAIN posint AS integer CHECK (VALUE > 0); CREATE DOMAIN price AS numeric(4,2);",
        )
        .await
        .unwrap();
    // TENSORCDC_KEEP_DIFF=1 keeps every capture's records for a look after a failure.
    let tmp = tempfile::tempdir().unwrap();
    let (_guard, root) = if std::env::var_os("TENSORCDC_KEEP_DIFF").is_some() {
        let p = tmp.keep();
        println!("records kept in {}", p.display());
        (None, p)
    } else {
        let p = tmp.path().to_path_buf();
        (Some(tmp), p)
    };
    let mut cases = type_cases();
    cases.push(event_case());
    cases.push(transaction_case());
    let mut total = 0;
    let mut diffs = Vec::new();
    let mut per_case = Vec::new();
    let mut all = Vec::new();
    for case in &cases {
        let (n, d, mine, theirs) = run_case(&pg, &client, &root, case).await;
        per_case.push(format!("{}: {n} fields, {} differences", case.name, d.len()));
        total += n;
        diffs.extend(d);
        all.push((mine, theirs));
    }
    // Ours read by Connect: every record of ours and of Debezium's through the real
    // JsonConverter (toConnectData, then fromConnectData) gives the same Connect data.
    let mine: Vec<Record> = all.iter().flat_map(|(m, _)| m.clone()).collect();
    let theirs: Vec<Record> = all.iter().flat_map(|(_, t)| t.clone()).collect();
    let mine_rt = tensorcdc_dbzref::connect_roundtrip(&mine, &root.join("connect-ours")).unwrap_or_else(|e| panic!("ours: {e}"));
    let theirs_rt = tensorcdc_dbzref::connect_roundtrip(&theirs, &root.join("connect-debezium")).unwrap_or_else(|e| panic!("Debezium's: {e}"));
    assert_eq!((mine_rt.len(), theirs_rt.len()), (mine.len(), theirs.len()), "JsonConverter gave back every record");
    let (mut at_m, mut at_t, mut connect_fields) = (0, 0, 0);
    for (case, (m, t)) in cases.iter().zip(&all) {
        let tag = format!("{} (through Connect)", case.name);
        let (n, d) = compare_records(&tag, &mine_rt[at_m..at_m + m.len()], &theirs_rt[at_t..at_t + t.len()]);
        (at_m, at_t) = (at_m + m.len(), at_t + t.len());
        connect_fields += n;
        diffs.extend(unnamed(case, &tag, d));
    }
    per_case.push(format!("through Kafka Connect's JsonConverter: {connect_fields} fields"));
    println!("compared with Debezium 3.6.3: {total} fields in {} cases\n  {}", cases.len(), per_case.join("\n  "));
    let report = std::env::temp_dir().join("tensorcdc-debezium-diff.txt");
    std::fs::write(&report, diffs.join("\n")).unwrap();
    let short: Vec<String> = diffs.iter().take(60).map(|d| if d.len() > 400 { format!("{}…", &d[..d.floor_char_boundary(400)]) } else { d.clone() }).collect();
    assert!(diffs.is_empty(), "{} differences from Debezium 3.6.3 (of {total} fields; all in {}):\n{}", diffs.len(), report.display(), short.join("\n"));
}
