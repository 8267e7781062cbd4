//! Debezium-style connector configuration.
//!
//! [`CaptureConfig::from_properties`] takes the `config` map of a Debezium connector
//! registration file as-is (`{"name": …, "config": {…}}` or the bare map): `database.*`,
//! `topic.prefix`, `table.include.list`, `slot.name`, `publication.*`, `snapshot.mode`,
//! `binary.handling.mode`, the converters, and the `transforms.*` keys (kept raw for the
//! transforms crate). Unknown keys are returned so the caller can warn; invalid values are
//! errors naming the key.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value as J;
use tensorcdc_change::json::{BinaryMode, Converter, ConverterConfig};

use crate::CaptureError;

/// How the publication is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationMode {
    /// `CREATE PUBLICATION … FOR ALL TABLES` (tables created later are included).
    AllTables,
    /// `FOR TABLE` the tables matching the include list at start.
    Filtered,
    /// The publication must exist already.
    Disabled,
}

/// Debezium's `snapshot.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Snapshot when the slot is new, then stream.
    Initial,
    /// Never snapshot; stream from the slot.
    Never,
    /// Snapshot, then stop.
    InitialOnly,
    /// Snapshot at every start (the slot is made anew), then stream.
    Always,
    /// As `Initial`, and snapshot again when the slot is gone although the offsets say it
    /// existed (dropped by hand, or a failover to a server without it): the user's consent
    /// to start over, where `Initial` refuses.
    WhenNeeded,
}

/// Everything capture needs.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub topic_prefix: String,
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub slot_name: String,
    pub publication_name: String,
    pub publication_mode: PublicationMode,
    pub snapshot_mode: SnapshotMode,
    pub converter: ConverterConfig,
    /// Emit a tombstone after each delete (`tombstones.on.delete`, default true).
    pub tombstones_on_delete: bool,
    /// Ops not emitted (`skipped.operations`: c,u,d,t; default none).
    pub skipped_ops: Vec<String>,
    /// Ask pgoutput for binary tuples (PG 14+).
    pub binary_tuples: bool,
    /// Milliseconds between standby status updates (`status.interval.ms`, default 10000).
    pub status_interval_ms: u64,
    /// Largest batch handed to the sink (`max.batch.size`, default 2048).
    pub max_batch_size: usize,
    /// `offset.storage.file.filename`: records whether the initial snapshot completed, so
    /// a capture killed during its snapshot redoes it.
    pub offset_file: Option<std::path::PathBuf>,
    /// `transforms` in order, each with its `transforms.<name>.*` keys (name stripped).
    pub transforms: Vec<(String, BTreeMap<String, String>)>,
    /// `bootstrap.servers` and `kafka.*`/`producer.*` settings for a Kafka sink.
    pub kafka: BTreeMap<String, String>,
    /// `slot.drop.on.stop`: drop the slot when capture stops.
    pub drop_slot_on_stop: bool,
    /// `errors.max.retries`: retryable failures in a row before capture gives up (Debezium's
    /// key; `-1`, the default, retries for ever). Batch readers use 0: fail fast.
    pub errors_max_retries: Option<u32>,
    /// `slot.max.retries` and `slot.retry.delay.ms` (Debezium's keys and defaults, 6 and
    /// 10,000): how long a slot held by another connection (a process killed a moment ago
    /// whose server side has not noticed yet) is waited for, saying so, before it is an error.
    pub slot_max_retries: u32,
    pub slot_retry_delay_ms: u64,
    /// `slot.temporary` (tensorcdc's key): a TEMPORARY slot, which the server drops when the
    /// replication connection ends, even after `kill -9` (throwaway readers use it).
    pub temporary_slot: bool,
    /// `decimal.handling.mode`, `time.precision.mode`, `interval.handling.mode`,
    /// `money.fraction.digits`.
    pub types: crate::types::TypeSettings,
    /// TLS: `database.sslmode`, `database.sslrootcert`, `database.sslcert`, `database.sslkey`
    /// (or the URL's `sslmode`, ...), defaulting to libpq's `PGSSLMODE`, ... environment.
    pub tls: crate::tls::TlsSettings,
    /// `message.key.columns`: the key of a table's events from these columns instead of its
    /// primary key (Debezium's `schema.table:col1,col2;...`, tables as regular expressions).
    pub message_key_columns: Vec<(Regex, Vec<String>)>,
    /// `heartbeat.interval.ms` (0, the default: none), `heartbeat.action.query` and
    /// `topic.heartbeat.prefix` (default `__debezium-heartbeat`): see [`crate::heartbeat`].
    pub heartbeat_interval_ms: u64,
    pub heartbeat_action_query: Option<String>,
    pub heartbeat_topic_prefix: String,
    /// `provide.transaction.metadata`: BEGIN/END records and each event's `transaction` block.
    pub provide_transaction_metadata: bool,
    /// `topic.transaction`: the BEGIN/END topic is `<topic.prefix>.<this>`.
    pub transaction_topic: String,
    /// `signal.data.collection`, `signal.enabled.channels`, `incremental.snapshot.chunk.size`.
    pub signals: crate::signal::SignalSettings,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            host: "localhost".into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: "postgres".into(),
            topic_prefix: "tf".into(),
            include: vec![],
            exclude: vec![],
            slot_name: "tensorcdc".into(),
            publication_name: "dbz_publication".into(),
            publication_mode: PublicationMode::AllTables,
            snapshot_mode: SnapshotMode::Initial,
            converter: ConverterConfig::default(),
            tombstones_on_delete: true,
            // Debezium's default `skipped.operations`: truncates are not emitted.
            skipped_ops: vec!["t".into()],
            binary_tuples: true,
            status_interval_ms: 10_000,
            max_batch_size: 2048,
            offset_file: None,
            transforms: vec![],
            kafka: BTreeMap::new(),
            drop_slot_on_stop: false,
            slot_max_retries: 6,
            slot_retry_delay_ms: 10_000,
            temporary_slot: false,
            errors_max_retries: None,
            types: Default::default(),
            tls: Default::default(),
            message_key_columns: vec![],
            heartbeat_interval_ms: 0,
            heartbeat_action_query: None,
            heartbeat_topic_prefix: "__debezium-heartbeat".into(),
            provide_transaction_metadata: false,
            transaction_topic: "transaction".into(),
            signals: Default::default(),
        }
    }
}

fn bad(key: &str, reason: impl std::fmt::Display) -> CaptureError {
    CaptureError::Config { key: key.into(), reason: reason.to_string() }
}

/// Compiles a comma-separated list of regular expressions, each anchored to the whole
/// `schema.table` name, as Debezium does.
pub fn parse_table_list(key: &str, list: &str) -> Result<Vec<Regex>, CaptureError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| bad(key, format!("{p:?} is not a valid regular expression: {e}"))))
        .collect()
}

/// Debezium's `message.key.columns`: `<table regex>:<col>,<col>;<table regex>:<col>...`.
pub fn parse_key_columns(key: &str, v: &str) -> Result<Vec<(Regex, Vec<String>)>, CaptureError> {
    v.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (table, cols) = entry.rsplit_once(':').ok_or_else(|| bad(key, format!("{entry:?}: expected schema.table:col1,col2")))?;
            let cols: Vec<String> = cols.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
            if cols.is_empty() {
                return Err(bad(key, format!("{entry:?}: no columns after ':'")));
            }
            let re = parse_table_list(key, table)?.pop().ok_or_else(|| bad(key, format!("{entry:?}: no table before ':'")))?;
            Ok((re, cols))
        })
        .collect()
}

fn parse_bool(key: &str, v: &str) -> Result<bool, CaptureError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        o => Err(bad(key, format!("{o:?} is not true or false"))),
    }
}

fn parse_converter(key: &str, v: &str, schemas: bool) -> Result<Converter, CaptureError> {
    match v {
        "org.apache.kafka.connect.json.JsonConverter" | "json" => Ok(Converter::Json { schemas }),
        "org.apache.kafka.connect.storage.StringConverter" | "string" => Ok(Converter::String),
        o => Err(bad(
            key,
            format!("{o:?}: supported converters are org.apache.kafka.connect.json.JsonConverter and org.apache.kafka.connect.storage.StringConverter"),
        )),
    }
}

/// The properties of a Debezium registration document (`{"name", "config"}` or a bare map),
/// values as strings.
pub fn json_properties(doc: &J) -> Result<BTreeMap<String, String>, CaptureError> {
    let map = doc.get("config").unwrap_or(doc).as_object().ok_or_else(|| bad("config", "expected a JSON object of connector properties"))?;
    let mut props = BTreeMap::new();
    for (k, v) in map {
        let s = match v {
            J::String(s) => expand_providers(k, s)?,
            J::Number(n) => n.to_string(),
            J::Bool(b) => b.to_string(),
            other => return Err(bad(k, format!("expected a string, number or boolean, got {other}"))),
        };
        props.insert(k.clone(), s);
    }
    Ok(props)
}

impl CaptureConfig {
    /// True when `schema.table` is captured.
    pub fn includes(&self, schema: &str, table: &str) -> bool {
        let name = format!("{schema}.{table}");
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(&name))) && !self.exclude.iter().any(|r| r.is_match(&name))
    }

    /// A tokio-postgres config for the SQL connection.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        if self.host.starts_with('/') {
            c.host_path(&self.host);
        } else {
            c.host(&self.host);
        }
        c.port(self.port).user(&self.user).dbname(&self.dbname).application_name("tensorcdc");
        // Text forms read by `types::text` (snapshot `::text` casts) assume these settings.
        c.options(crate::types::SESSION_OPTIONS);
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    /// Sets the connection from a `postgres://` URL or libpq `key=value` string, completed
    /// from libpq's environment and password file (see [`crate::conn`]).
    pub fn set_connection(&mut self, url: &str) -> Result<(), CaptureError> {
        let (c, tls) = crate::conn::resolve(url)?;
        self.tls = tls;
        if let Some(h) = c.get_hosts().first() {
            self.host = match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            };
        }
        if let Some(p) = c.get_ports().first() {
            self.port = *p;
        }
        if let Some(u) = c.get_user() {
            self.user = u.into();
        }
        if let Some(p) = c.get_password() {
            self.password = Some(String::from_utf8_lossy(p).into_owned());
        }
        if let Some(d) = c.get_dbname() {
            self.dbname = d.into();
        }
        Ok(())
    }

    /// Reads a Debezium registration JSON document (`{"name", "config"}` or a bare map).
    /// Returns the config and the keys it did not know.
    pub fn from_json(doc: &J) -> Result<(CaptureConfig, Vec<String>), CaptureError> {
        Self::from_properties(&json_properties(doc)?)
    }

    /// Reads connector properties. Returns the config and the keys it did not know.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<(CaptureConfig, Vec<String>), CaptureError> {
        let mut c = CaptureConfig { tls: crate::tls::TlsSettings::from_env().map_err(|e| bad("database.sslmode", e))?, ..CaptureConfig::default() };
        let mut unknown = Vec::new();
        let get_schemas = |k: &str| props.get(k).map(|v| parse_bool(k, v)).transpose();
        let key_schemas = get_schemas("key.converter.schemas.enable")?.unwrap_or(true);
        let value_schemas = get_schemas("value.converter.schemas.enable")?.unwrap_or(true);
        c.converter.key = Converter::Json { schemas: key_schemas };
        c.converter.value = Converter::Json { schemas: value_schemas };
        let transform_names: Vec<String> =
            props.get("transforms").map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        for name in &transform_names {
            let prefix = format!("transforms.{name}.");
            let sub: BTreeMap<String, String> = props.iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|rest| (rest.to_string(), v.clone()))).collect();
            if !sub.contains_key("type") {
                return Err(bad(&format!("{prefix}type"), "missing: every transform named in `transforms` needs a type"));
            }
            c.transforms.push((name.clone(), sub));
        }
        for (k, v) in props {
            match k.as_str() {
                "connector.class" => {
                    if !v.ends_with("PostgresConnector") {
                        return Err(bad(k, format!("{v:?}: tensorcdc implements io.debezium.connector.postgresql.PostgresConnector")));
                    }
                }
                "plugin.name" => {
                    if v != "pgoutput" {
                        return Err(bad(k, format!("{v:?}: only pgoutput is supported")));
                    }
                }
                "database.hostname" => c.host = v.clone(),
                "database.port" => c.port = v.parse().map_err(|_| bad(k, format!("{v:?} is not a port number")))?,
                "database.user" => c.user = v.clone(),
                "database.password" => c.password = Some(v.clone()),
                "database.dbname" => c.dbname = v.clone(),
                "database.url" => c.set_connection(v)?,
                // Applied after the loop: `database.url` (sorted before them) must not undo them.
                "database.sslmode" | "database.sslrootcert" | "database.sslcert" | "database.sslkey" => {}
                "topic.prefix" | "database.server.name" => {
                    if v.is_empty() || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)) {
                        return Err(bad(k, format!("{v:?}: use letters, digits, '.', '_' or '-'")));
                    }
                    c.topic_prefix = v.clone();
                }
                "table.include.list" | "table.whitelist" => c.include = parse_table_list(k, v)?,
                "table.exclude.list" | "table.blacklist" => c.exclude = parse_table_list(k, v)?,
                "message.key.columns" => c.message_key_columns = parse_key_columns(k, v)?,
                "slot.name" => {
                    if v.is_empty() || !v.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_') {
                        return Err(bad(k, format!("{v:?}: slot names use lower-case letters, digits and '_'")));
                    }
                    c.slot_name = v.clone();
                }
                "publication.name" => c.publication_name = v.clone(),
                "publication.autocreate.mode" => {
                    c.publication_mode = match v.as_str() {
                        "all_tables" => PublicationMode::AllTables,
                        "filtered" => PublicationMode::Filtered,
                        "disabled" => PublicationMode::Disabled,
                        o => return Err(bad(k, format!("{o:?}: expected all_tables, filtered or disabled"))),
                    }
                }
                "snapshot.mode" => {
                    c.snapshot_mode = match v.as_str() {
                        "initial" => SnapshotMode::Initial,
                        "never" | "no_data" => SnapshotMode::Never,
                        "initial_only" => SnapshotMode::InitialOnly,
                        "always" => SnapshotMode::Always,
                        "when_needed" => SnapshotMode::WhenNeeded,
                        o => return Err(bad(k, format!("{o:?}: expected initial, never (no_data), initial_only, always or when_needed"))),
                    }
                }
                "binary.handling.mode" => c.converter.binary = v.parse::<BinaryMode>().map_err(|e| bad(k, e))?,
                "tensorcdc.envelope.version" => c.converter.envelope = v.parse().map_err(|e| bad(k, e))?,
                "key.converter" => c.converter.key = parse_converter(k, v, key_schemas)?,
                "value.converter" => c.converter.value = parse_converter(k, v, value_schemas)?,
                "key.converter.schemas.enable" | "value.converter.schemas.enable" | "transforms" | "name" | "tasks.max" => {}
                "slot.drop.on.stop" => c.drop_slot_on_stop = parse_bool(k, v)?,
                "slot.temporary" => c.temporary_slot = parse_bool(k, v)?,
                "slot.max.retries" => c.slot_max_retries = v.parse().map_err(|_| bad(k, format!("{v:?} is not a count")))?,
                "slot.retry.delay.ms" => c.slot_retry_delay_ms = v.parse().map_err(|_| bad(k, format!("{v:?} is not a number of milliseconds")))?,
                "errors.max.retries" => {
                    let n: i64 = v.parse().map_err(|_| bad(k, format!("{v:?} is not a number (-1: no limit)")))?;
                    c.errors_max_retries = (n >= 0).then_some(n as u32);
                }
                "tombstones.on.delete" => c.tombstones_on_delete = parse_bool(k, v)?,
                "skipped.operations" => {
                    c.skipped_ops = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s != "none").collect();
                    if let Some(o) = c.skipped_ops.iter().find(|o| !["c", "u", "d", "t"].contains(&o.as_str())) {
                        return Err(bad(k, format!("{o:?}: expected a list of c, u, d, t or none")));
                    }
                }
                "binary.tuples" => c.binary_tuples = parse_bool(k, v)?,
                "heartbeat.interval.ms" => c.heartbeat_interval_ms = v.parse().map_err(|_| bad(k, format!("{v:?} is not a number of milliseconds")))?,
                "heartbeat.action.query" => c.heartbeat_action_query = Some(v.clone()).filter(|q| !q.trim().is_empty()),
                "topic.heartbeat.prefix" => c.heartbeat_topic_prefix = v.clone(),
                "provide.transaction.metadata" => c.provide_transaction_metadata = parse_bool(k, v)?,
                "topic.transaction" => c.transaction_topic = v.clone(),
                "status.interval.ms" => c.status_interval_ms = v.parse().map_err(|_| bad(k, format!("{v:?} is not a number of milliseconds")))?,
                "max.batch.size" => c.max_batch_size = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad(k, format!("{v:?} is not a positive number")))?,
                "offset.storage.file.filename" => c.offset_file = Some(v.into()),
                "bootstrap.servers" => {
                    c.kafka.insert(k.clone(), v.clone());
                }
                _ if c.types.set(k, v).map_err(|e| bad(k, e))? => {}
                _ if c.signals.set(k, v).map_err(|e| bad(k, e))? => {}
                _ if k.starts_with("transforms.") => {
                    if !transform_names.iter().any(|n| k.starts_with(&format!("transforms.{n}."))) {
                        unknown.push(k.clone());
                    }
                }
                _ if k.starts_with("kafka.") || k.starts_with("producer.") => {
                    let stripped = k.split_once('.').map(|x| x.1).unwrap_or(k);
                    c.kafka.insert(stripped.to_string(), v.clone());
                }
                _ => unknown.push(k.clone()),
            }
        }
        for k in ["database.sslmode", "database.sslrootcert", "database.sslcert", "database.sslkey"] {
            if let Some(v) = props.get(k) {
                c.tls.set(&k["database.".len()..], v).map_err(|e| bad(k, e))?;
            }
        }
        if c.password.is_none() {
            c.password =
                std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()).or_else(|| crate::conn::pgpass_password(&c.host, c.port, &c.dbname, &c.user));
        }
        Ok((c, unknown))
    }
}

/// Kafka Connect's config providers in a property value: `${env:VAR}` (an environment
/// variable) and `${file:/path:key}` (`key` of a Java properties file, as
/// `FileConfigProvider` reads it).
pub fn expand_providers(key: &str, v: &str) -> Result<String, CaptureError> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| bad(key, "unclosed ${...}"))? + start;
        let spec = &rest[start + 2..end];
        let value = if let Some(var) = spec.strip_prefix("env:") {
            std::env::var(var).map_err(|_| bad(key, format!("${{env:{var}}}: environment variable {var} is not set")))?
        } else if let Some(path_key) = spec.strip_prefix("file:") {
            let (path, k) = path_key.rsplit_once(':').ok_or_else(|| bad(key, "${file:...} needs /path:key"))?;
            let text = std::fs::read_to_string(path).map_err(|e| bad(key, format!("${{file:{path}:{k}}}: {e}")))?;
            text.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#') && !l.starts_with('!'))
                .find_map(|l| l.split_once(['=', ':']).filter(|(a, _)| a.trim() == k).map(|(_, b)| b.trim().to_string()))
                .ok_or_else(|| bad(key, format!("${{file:{path}:{k}}}: no key {k:?} in {path}")))?
        } else {
            return Err(bad(key, format!("${{{spec}}}: supported providers are env: and file:")));
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blog_registration_file() {
        let doc = json!({
            "name": "mnist-connector",
            "config": {
                "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "tasks.max": "1",
                "database.hostname": "postgres",
                "database.port": "5432",
                "database.user": "postgres",
                "database.password": "postgres",
                "database.dbname": "postgres",
                "topic.prefix": "tf",
                "table.include.list": "public.mnist_.*",
                "key.converter": "org.apache.kafka.connect.storage.StringConverter",
                "value.converter": "org.apache.kafka.connect.storage.StringConverter",
                "transforms": "unwrap,mnist",
                "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
                "transforms.mnist.type": "io.debezium.transforms.MnistToCsv",
                "something.else": 3
            }
        });
        let (c, unknown) = CaptureConfig::from_json(&doc).unwrap();
        assert_eq!(c.port, 5432);
        assert_eq!(c.topic_prefix, "tf");
        assert!(c.includes("public", "mnist_train") && c.includes("public", "mnist_manual"));
        assert!(!c.includes("public", "other") && !c.includes("xpublic", "mnist_train"));
        assert_eq!(c.converter.value, Converter::String);
        assert_eq!(c.transforms.len(), 2);
        assert_eq!(c.transforms[0].1["type"], "io.debezium.transforms.ExtractNewRecordState");
        assert_eq!(unknown, vec!["something.else".to_string()]);
    }

    #[test]
    fn debezium_tls_keys_win_over_the_url() {
        let props: BTreeMap<String, String> =
            [("database.url", "postgres://u@h:5/db?sslmode=prefer"), ("database.sslmode", "verify-full"), ("database.sslrootcert", "/ca.pem")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let (c, _) = CaptureConfig::from_properties(&props).unwrap();
        assert_eq!((c.tls.mode, c.tls.rootcert.as_deref()), (crate::tls::SslMode::VerifyFull, Some("/ca.pem")));
    }

    #[test]
    fn message_key_columns_as_debezium_writes_them() {
        let k = parse_key_columns("message.key.columns", "inventory.customers:pk1,pk2;(.*).purchaseorders:pk3").unwrap();
        assert_eq!(k.len(), 2);
        assert!(k[0].0.is_match("inventory.customers") && !k[0].0.is_match("inventory.customers2"));
        assert_eq!(k[0].1, ["pk1", "pk2"]);
        assert!(k[1].0.is_match("sales.purchaseorders"));
        assert_eq!(k[1].1, ["pk3"]);
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (k, v) in [
            ("database.port", "abc"),
            ("snapshot.mode", "sometimes"),
            ("table.include.list", "public.(unclosed"),
            ("binary.handling.mode", "base32"),
            ("slot.name", "Bad-Name"),
            ("value.converter", "avro"),
            ("decimal.handling.mode", "exact"),
            ("time.precision.mode", "nanos"),
            ("interval.handling.mode", "iso"),
            ("message.key.columns", "public.t"),
            ("message.key.columns", "public.t:"),
        ] {
            let props = BTreeMap::from([(k.to_string(), v.to_string())]);
            let e = CaptureConfig::from_properties(&props).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
        let props = BTreeMap::from([("transforms".to_string(), "x".to_string())]);
        assert!(CaptureConfig::from_properties(&props).unwrap_err().to_string().contains("transforms.x.type"));
    }
}
