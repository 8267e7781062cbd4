//! Bounded reads: everything available now, as MNIST examples or as the rows of any table.
//! Both are keyed as the table is: an update replaces its row, a delete removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tensorcdc_change::Key;
use tensorcdc_dataset::decode::key_text;
use tensorcdc_dataset::features::cell::{change_of_json, change_of_message, CsvColumns};
use tensorcdc_dataset::features::KeyedRecords;
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::{decode, from_message, Examples, KeyedExamples, Position};
use tensorcdc_kafka::{read_bounded, Record};

use crate::{bad_record, Report, SourceConfig, SourceError};

/// How long a bounded read waits for its topic to appear.
const TOPIC_WAIT: Duration = Duration::from_secs(60);

/// A record's row key: the `tensorcdc.key` header (MnistToCsv keys records by label), or a
/// Debezium JSON key (an object). Other keys (the blog's CSV records keyed by label) name no row.
pub fn record_key(r: &Record) -> Option<String> {
    r.source_key.clone().or_else(|| r.key.as_deref().filter(|k| k.first() == Some(&b'{')).map(key_text))
}

/// The change a Kafka record stands for: Debezium JSON (with or without schemas, a
/// tombstone is a delete), or a CSV line with `csv`'s columns. A CSV topic without known
/// columns takes its first record as a header line when `header_ok`, and is an error otherwise.
pub fn record_change(
    r: &Record,
    csv: &mut CsvColumns,
    header_ok: bool,
) -> Result<Option<tensorcdc_dataset::features::Change>, tensorcdc_dataset::DatasetError> {
    let what = format!("{}/{}@{}", r.topic, r.partition, r.offset);
    let key = record_key(r);
    let json = r.value.as_deref().is_none_or(|v| v.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{'));
    if json {
        change_of_json(r.value.as_deref(), key, &what).map(Some)
    } else if csv.0.is_none() && !header_ok {
        Err(tensorcdc_dataset::DatasetError::BadRecord { what, reason: "a CSV record; give its columns (--columns)".into() })
    } else {
        csv.change(r.value.as_deref(), key, &what)
    }
}

/// The MNIST examples available now: IDX files, a Kafka topic to its high watermark, or a
/// snapshot of the table (default: the split's table).
pub async fn bounded_examples(cfg: &SourceConfig, split: Split) -> Result<(Examples, Report), SourceError> {
    let truncate = |ex: Examples| match cfg.limit {
        Some(n) => ex.truncate(n),
        None => ex,
    };
    let mut report = Report::default();
    if let Some(dir) = &cfg.data {
        let ex = truncate(mnist::load(dir, split)?);
        report.records = ex.len() as u64;
        return Ok((ex, report));
    }
    if let Some(url) = &cfg.source {
        let table = cfg.table.clone().unwrap_or_else(|| split.table().into());
        let (mut rx, run) = cfg.snapshot(url, &table)?;
        let mut ex = Examples::default();
        while let Some(m) = rx.recv().await {
            report.records += 1;
            match from_message(&m, &cfg.decode) {
                Ok(Some(e)) => ex.push(&e),
                Ok(None) => {}
                Err(e) => bad_record(cfg.on_error, &mut report, e.to_string())?,
            }
        }
        run.await??;
        return Ok((truncate(ex), report));
    }
    if cfg.kafka.is_none() {
        return Err(SourceError::Config("give a source: --data DIR, --kafka HOST:PORT --topic T, or --source postgres://...".into()));
    }
    let (set, report, _) = read_topic_into(cfg, KeyedExamples::default(), cfg.offset).await?;
    Ok((truncate_keyed(set, cfg.limit), report))
}

/// A keyed set a Kafka topic is read into, record by record.
pub trait TopicSet: Default + Send + 'static {
    /// Applies one record (a bad one is counted in `report`, or is the error).
    fn apply(&mut self, r: &Record, cfg: &SourceConfig, csv: &mut CsvColumns, report: &mut Report) -> Result<(), SourceError>;
    /// True when the set holds all it may (`limit`).
    fn full(&self, _cfg: &SourceConfig) -> bool {
        false
    }
}

impl TopicSet for KeyedExamples {
    fn apply(&mut self, r: &Record, cfg: &SourceConfig, _csv: &mut CsvColumns, report: &mut Report) -> Result<(), SourceError> {
        let what = Position::Kafka { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
        let key = record_key(r);
        match decode(r.key.as_deref(), r.value.as_deref(), &what, &cfg.decode) {
            Ok(Some(mut e)) => {
                e.key = key;
                self.upsert(&e);
                Ok(())
            }
            Ok(None) => {
                if let Ok(tensorcdc_dataset::features::Change::Delete(k)) = change_of_json(r.value.as_deref(), key, &what) {
                    self.delete(&k);
                }
                Ok(())
            }
            Err(e) => bad_record(cfg.on_error, report, e),
        }
    }

    fn full(&self, cfg: &SourceConfig) -> bool {
        cfg.limit.is_some_and(|n| self.len() >= n)
    }
}

impl TopicSet for Rows {
    fn apply(&mut self, r: &Record, cfg: &SourceConfig, csv: &mut CsvColumns, report: &mut Report) -> Result<(), SourceError> {
        // Every key of a table has the same columns: read them from the first one.
        if self.key_columns.is_empty() {
            self.key_columns.extend(json_key_columns(r.key.as_deref()));
        }
        match record_change(r, csv, true) {
            Ok(Some(c)) => {
                self.set.apply(c);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => bad_record(cfg.on_error, report, e),
        }
    }
}

/// Reads `cfg`'s topic from `offset` up to its high watermark now into `set`. Returns the set,
/// what the read saw, and per partition the offset after the last record read.
pub async fn read_topic_into<S: TopicSet>(cfg: &SourceConfig, mut set: S, offset: i64) -> Result<(S, Report, BTreeMap<i32, i64>), SourceError> {
    let Some(brokers) = cfg.kafka.clone() else { return Err(SourceError::Config("a Kafka source needs --kafka HOST:PORT".into())) };
    let topic = cfg.topic()?.to_string();
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let mut report = Report::default();
        let mut next = BTreeMap::new();
        let mut csv = CsvColumns(cfg.columns.clone());
        let mut err = None;
        read_bounded(&brokers, &topic, cfg.partition, offset, cfg.strict, &cfg.kafka_settings, cfg.topic_wait.unwrap_or(TOPIC_WAIT), |r| {
            next.insert(r.partition, r.offset + 1);
            if err.is_some() || set.full(&cfg) {
                return Ok(());
            }
            report.records += 1;
            err = set.apply(&r, &cfg, &mut csv, &mut report).err();
            Ok(())
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok((set, report, next)),
        }
    })
    .await?
}

/// A topic read again and again as a table: the keyed set is kept, and each
/// [`TopicTable::refresh`] reads only the records added since the last one (up to the high
/// watermark at that moment). With no partition given it reads every partition from the start
/// again each time.
pub struct TopicTable<S: TopicSet> {
    cfg: SourceConfig,
    set: Option<S>,
    next: Option<i64>,
    /// What every refresh saw, in all.
    pub report: Report,
}

impl<S: TopicSet> TopicTable<S> {
    pub fn new(cfg: &SourceConfig) -> Self {
        TopicTable { cfg: cfg.clone(), set: None, next: None, report: Report::default() }
    }

    /// Brings the set up to the topic's high watermark now.
    pub async fn refresh(&mut self) -> Result<&S, SourceError> {
        let incremental = self.cfg.partition.is_some();
        let (set, from) = match (incremental, self.set.take(), self.next) {
            (true, Some(set), Some(n)) => (set, n),
            (true, Some(set), None) => (set, self.cfg.offset),
            _ => (S::default(), self.cfg.offset),
        };
        let (set, report, next) = read_topic_into(&self.cfg, set, from).await?;
        self.report.records += report.records;
        self.report.skipped += report.skipped;
        if let Some(p) = self.cfg.partition {
            if let Some(&n) = next.get(&p) {
                self.next = Some(n);
            }
        }
        Ok(self.set.insert(set))
    }
}
fn truncate_keyed(ex: KeyedExamples, limit: Option<usize>) -> Examples {
    let ex = ex.into_examples();
    match limit {
        Some(n) => ex.truncate(n),
        None => ex,
    }
}

/// The rows of any table available now, keyed, with the key's column names.
#[derive(Default)]
pub struct Rows {
    pub set: KeyedRecords,
    pub report: Report,
    pub key_columns: BTreeSet<String>,
}

/// Reads everything available now: the table through an in-process snapshot, or a Kafka
/// topic of Debezium JSON or CSV up to its high watermark.
pub async fn bounded_rows(cfg: &SourceConfig) -> Result<Rows, SourceError> {
    let mut rows = Rows::default();
    if let Some(url) = &cfg.source {
        let table = cfg.table.clone().ok_or_else(|| SourceError::Config("--source needs --table T (the table to read)".into()))?;
        let (mut rx, run) = cfg.snapshot(url, &table)?;
        while let Some(m) = rx.recv().await {
            rows.report.records += 1;
            if let Key::Row(k) = &m.key {
                rows.key_columns.extend(k.fields.iter().map(|f| f.name.clone()));
            }
            // `limit`: the first rows of the snapshot; the rest are read (the snapshot is one
            // transaction) and left out.
            if cfg.limit.is_some_and(|n| rows.set.len() >= n) {
                continue;
            }
            rows.set.apply(change_of_message(&m));
        }
        run.await??;
        return Ok(rows);
    }
    if cfg.kafka.is_none() {
        return Err(SourceError::Config("give a source: --source postgres://... --table T, or --kafka HOST:PORT --topic T".into()));
    }
    let (mut rows, report, _) = read_topic_into(cfg, rows, cfg.offset).await?;
    rows.report = report;
    Ok(rows)
}

/// The column names of a Debezium JSON key (with or without its schema).
fn json_key_columns(key: Option<&[u8]>) -> Vec<String> {
    match key.and_then(|k| serde_json::from_slice(k).ok()) {
        Some(serde_json::Value::Object(k)) => match k.get("payload") {
            Some(serde_json::Value::Object(p)) if k.contains_key("schema") => p.keys().cloned().collect(),
            _ => k.keys().cloned().collect(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            timestamp_ms: None,
            source_key: None,
        }
    }

    #[test]
    fn json_key_columns_with_and_without_schema() {
        assert_eq!(json_key_columns(Some(br#"{"id":1}"#)), vec!["id"]);
        assert_eq!(json_key_columns(Some(br#"{"schema":{},"payload":{"a":1,"b":2}}"#)), vec!["a", "b"]);
        assert!(json_key_columns(Some(b"5")).is_empty());
    }

    #[test]
    fn a_stream_refuses_csv_without_columns_and_a_tombstone_deletes() {
        let mut csv = CsvColumns(None);
        let e = record_change(&rec(Some("3"), Some("1,2")), &mut csv, false).unwrap_err().to_string();
        assert!(e.contains("t/0@7") && e.contains("columns"), "{e}");
        let d = record_change(&rec(Some(r#"{"id":4}"#), None), &mut csv, false).unwrap();
        assert!(matches!(d, Some(tensorcdc_dataset::features::Change::Delete(_))), "{d:?}");
    }
}
