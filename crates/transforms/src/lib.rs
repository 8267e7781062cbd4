//! Transforms: plain functions over one message, as Kafka Connect SMTs are.
//!
//! * [`Transform::Unwrap`]: Debezium's `ExtractNewRecordState` — the envelope becomes its
//!   `after` row; deletes are dropped, rewritten or kept as tombstones (Debezium 3's
//!   `delete.tombstone.handling.mode`, default `tombstone`; Debezium 2's
//!   `delete.handling.mode` and `drop.tombstones`); `add.fields` appends `__op`, `__table`, `__lsn`, `__source_ts_ms`...
//! * [`Transform::Filter`]: keep messages whose table matches a regex and whose op is listed.
//! * [`Transform::MnistCsv`]: the blog's MnistToCsv — key = the label as text, value = the
//!   784 pixel values 0..255 joined by commas (field names configurable).
//!
//! [`Chain::from_config`] builds a chain from Debezium's `transforms` keys.

use std::collections::BTreeMap;
use std::fmt::Write;

use regex::Regex;
use tensorcdc_change::{Field, FieldType, Key, Message, Op, Payload, Row, Value};

/// A transform configuration error, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("config key `transforms.{name}.{key}`: {reason}")]
pub struct TransformError {
    pub name: String,
    pub key: String,
    pub reason: String,
}

/// What `unwrap` does with deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteHandling {
    /// Drop the delete event (the tombstone follows unless `drop.tombstones`).
    Drop,
    /// Keep the `before` row with `__deleted: true` added.
    Rewrite,
    /// Pass the delete on as a tombstone.
    None,
}

/// One transform.
#[derive(Debug, Clone)]
pub enum Transform {
    Unwrap { drop_tombstones: bool, delete_handling: DeleteHandling, add_fields: Vec<String> },
    Filter { tables: Option<Regex>, ops: Option<Vec<Op>> },
    MnistCsv { label_field: String, pixels_field: String },
}

/// Transforms applied in order.
#[derive(Debug, Clone, Default)]
pub struct Chain(pub Vec<Transform>);

fn err(name: &str, key: &str, reason: impl Into<String>) -> TransformError {
    TransformError { name: name.into(), key: key.into(), reason: reason.into() }
}

fn parse_bool(name: &str, key: &str, v: &str) -> Result<bool, TransformError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        o => Err(err(name, key, format!("{o:?} is not true or false"))),
    }
}

impl Transform {
    /// Builds a transform from its `transforms.<name>.*` keys (name stripped).
    pub fn from_config(name: &str, props: &BTreeMap<String, String>) -> Result<Transform, TransformError> {
        let ty = props.get("type").map(String::as_str).unwrap_or_default();
        let mut known = vec!["type"];
        let t = if ty.ends_with("ExtractNewRecordState") || ty == "unwrap" {
            known.extend(["drop.tombstones", "delete.handling.mode", "delete.tombstone.handling.mode", "add.fields"]);
            // Debezium 3's `delete.tombstone.handling.mode` (default `tombstone`: the delete
            // is dropped, its tombstone kept); Debezium 2's `drop.tombstones` (default true)
            // and `delete.handling.mode` (default drop) when only those are given.
            let legacy = props.contains_key("drop.tombstones") || props.contains_key("delete.handling.mode");
            let (drop_tombstones, delete_handling) = match props.get("delete.tombstone.handling.mode").map(String::as_str) {
                Some("drop") => (true, DeleteHandling::Drop),
                Some("tombstone") => (false, DeleteHandling::Drop),
                Some("rewrite") => (true, DeleteHandling::Rewrite),
                Some("rewrite-with-tombstone") => (false, DeleteHandling::Rewrite),
                Some("delete-to-tombstone") => (true, DeleteHandling::None),
                Some(o) => {
                    return Err(err(
                        name,
                        "delete.tombstone.handling.mode",
                        format!("{o:?}: expected drop, tombstone, rewrite, rewrite-with-tombstone or delete-to-tombstone"),
                    ))
                }
                None if !legacy => (false, DeleteHandling::Drop),
                None => (
                    props.get("drop.tombstones").map(|v| parse_bool(name, "drop.tombstones", v)).transpose()?.unwrap_or(true),
                    match props.get("delete.handling.mode").map(String::as_str).unwrap_or("drop") {
                        "drop" => DeleteHandling::Drop,
                        "rewrite" => DeleteHandling::Rewrite,
                        "none" => DeleteHandling::None,
                        o => return Err(err(name, "delete.handling.mode", format!("{o:?}: expected drop, rewrite or none"))),
                    },
                ),
            };
            let add_fields =
                props.get("add.fields").map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
            Transform::Unwrap { drop_tombstones, delete_handling, add_fields }
        } else if ty.ends_with("MnistToCsv") || ty == "mnist-csv" {
            known.extend(["label.field", "pixels.field"]);
            Transform::MnistCsv {
                label_field: props.get("label.field").cloned().unwrap_or_else(|| "label".into()),
                pixels_field: props.get("pixels.field").cloned().unwrap_or_else(|| "pixels".into()),
            }
        } else if ty.ends_with("tensorcdc.transforms.Filter") || ty == "filter" {
            known.extend(["tables", "ops"]);
            let tables = props.get("tables").map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| err(name, "tables", format!("{p:?}: {e}")))).transpose()?;
            let ops = props
                .get("ops")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .map(|o| Op::from_code(o).ok_or_else(|| err(name, "ops", format!("{o:?}: expected c, u, d, r or t"))))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
            Transform::Filter { tables, ops }
        } else {
            return Err(err(
                name,
                "type",
                format!("{ty:?}: supported types are io.debezium.transforms.ExtractNewRecordState (unwrap), MnistToCsv (mnist-csv) and tensorcdc.transforms.Filter (filter)"),
            ));
        };
        if let Some(k) = props.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(err(name, k, "unknown setting for this transform type"));
        }
        Ok(t)
    }

    /// Applies the transform to one message.
    pub fn apply(&self, msg: Message) -> Option<Message> {
        match self {
            Transform::Unwrap { drop_tombstones, delete_handling, add_fields } => unwrap(msg, *drop_tombstones, *delete_handling, add_fields),
            Transform::Filter { tables, ops } => {
                if let Some(re) = tables {
                    if !re.is_match(table_of(&msg.topic)) {
                        return None;
                    }
                }
                if let (Some(ops), Payload::Envelope(e)) = (ops, &msg.payload) {
                    if !ops.contains(&e.op) {
                        return None;
                    }
                }
                Some(msg)
            }
            Transform::MnistCsv { label_field, pixels_field } => mnist_csv(msg, label_field, pixels_field),
        }
    }
}

/// `schema.table` from `prefix.schema.table`.
fn table_of(topic: &str) -> &str {
    topic.split_once('.').map(|x| x.1).unwrap_or(topic)
}

fn unwrap(msg: Message, drop_tombstones: bool, delete: DeleteHandling, add_fields: &[String]) -> Option<Message> {
    let Message { topic, key, payload, ack_lsn, commit_ts_ms } = msg;
    let e = match payload {
        Payload::Tombstone => return (!drop_tombstones).then_some(Message { topic, key, payload: Payload::Tombstone, ack_lsn, commit_ts_ms }),
        Payload::Envelope(e) => e,
        other => return Some(Message { topic, key, payload: other, ack_lsn, commit_ts_ms }),
    };
    let (row, deleted) = match (e.op, delete) {
        (Op::Delete, DeleteHandling::Drop) => return None,
        (Op::Delete, DeleteHandling::None) => return Some(Message { topic, key, payload: Payload::Tombstone, ack_lsn, commit_ts_ms }),
        (Op::Delete, DeleteHandling::Rewrite) => (e.before.clone()?, true),
        (Op::Truncate, _) => return None,
        _ => (e.after.clone()?, false),
    };
    let mut fields = (*row.fields).clone();
    let mut values = row.values;
    for f in add_fields {
        let (ty, v) = match f.as_str() {
            "op" => (FieldType::String, Value::String(e.op.code().into())),
            "table" => (FieldType::String, Value::String(e.source.table.to_string())),
            "schema" => (FieldType::String, Value::String(e.source.schema.to_string())),
            "db" => (FieldType::String, Value::String(e.source.db.to_string())),
            "lsn" => (FieldType::Int64, e.source.lsn.map_or(Value::Null, |l| Value::Int64(l.0 as i64))),
            "txId" => (FieldType::Int64, e.source.tx_id.map_or(Value::Null, Value::Int64)),
            "source.ts_ms" => (FieldType::Int64, Value::Int64(e.source.ts_ms)),
            "ts_ms" => (FieldType::Int64, Value::Int64(e.ts_ms)),
            _ => continue,
        };
        fields.push(Field::new(format!("__{}", f.replace('.', "_")), ty, true));
        values.push(v);
    }
    if delete == DeleteHandling::Rewrite {
        fields.push(Field::new("__deleted", FieldType::String, true));
        values.push(Value::String(deleted.to_string()));
    }
    Some(Message { topic, key, payload: Payload::Row(Row::new(fields.into(), values)), ack_lsn, commit_ts_ms })
}

fn mnist_csv(msg: Message, label_field: &str, pixels_field: &str) -> Option<Message> {
    let row = match &msg.payload {
        Payload::Row(r) => r,
        Payload::Envelope(e) => e.after.as_ref()?,
        Payload::Text(_) => return Some(msg),
        // A deleted row's tombstone passes, keyed by the row: readers remove its example.
        Payload::Tombstone => return Some(msg),
    };
    let label = row.get(label_field).and_then(Value::as_i64)?;
    let pixels = match row.get(pixels_field)? {
        Value::Bytes(b) => b,
        _ => return None,
    };
    let mut csv = String::with_capacity(pixels.len() * 4);
    for (i, p) in pixels.iter().enumerate() {
        if i > 0 {
            csv.push(',');
        }
        let _ = write!(csv, "{p}");
    }
    let key = match msg.key {
        Key::Row(source) => Key::Derived { text: label.to_string(), source },
        _ => Key::Text(label.to_string()),
    };
    Some(Message { key, payload: Payload::Text(csv), ..msg })
}

impl Chain {
    /// Builds the chain from `(name, keys)` pairs in `transforms` order.
    pub fn from_config(list: &[(String, BTreeMap<String, String>)]) -> Result<Chain, TransformError> {
        list.iter().map(|(n, p)| Transform::from_config(n, p)).collect::<Result<Vec<_>, _>>().map(Chain)
    }

    /// Applies every transform in order; a message dropped by one is gone.
    pub fn apply(&self, msg: Message) -> Vec<Message> {
        let mut m = msg;
        for t in &self.0 {
            match t.apply(m) {
                Some(next) => m = next,
                None => return vec![],
            }
        }
        vec![m]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tensorcdc_change::{ChangeEvent, Lsn, Snapshot, Source};

    fn event(op: Op) -> Message {
        let f = Arc::new(vec![
            Field::new("id", FieldType::Int32, false),
            Field::new("label", FieldType::Int16, true),
            Field::new("pixels", FieldType::Bytes, true),
        ]);
        let row = Row::new(f, vec![Value::Int32(3), Value::Int16(7), Value::Bytes(vec![0, 128, 255])]);
        let (before, after) = if op == Op::Delete { (Some(row), None) } else { (None, Some(row)) };
        Message::from_event(
            ChangeEvent {
                op,
                before,
                after,
                source: Source {
                    name: "tf".into(),
                    ts_ms: 1,
                    ts_us: 1000,
                    snapshot: Snapshot::False,
                    db: "db".into(),
                    schema: "public".into(),
                    table: "mnist_test".into(),
                    tx_id: Some(9),
                    lsn: Some(Lsn(42)),
                    last_commit_lsn: None,
                },
                ts_ms: 2,
                ts_ns: 2_000_000,
                key: Some(Row::new(Arc::new(vec![Field::new("id", FieldType::Int32, false)]), vec![Value::Int32(3)])),
                fields: None,
                transaction: None,
            },
            Some(Lsn(50)),
        )
    }

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn blog_chain_unwrap_then_csv() {
        let chain = Chain::from_config(&[
            ("unwrap".into(), props(&[("type", "io.debezium.transforms.ExtractNewRecordState")])),
            ("mnist".into(), props(&[("type", "mnist-csv")])),
        ])
        .unwrap();
        let out = chain.apply(event(Op::Create));
        assert_eq!(out.len(), 1);
        // The record key is the label (the blog's); the row's key travels with it.
        assert!(matches!(&out[0].key, Key::Derived { text, .. } if text == "7"), "{:?}", out[0].key);
        assert_eq!(out[0].key.to_text().as_deref(), Some("3"));
        assert_eq!(out[0].payload, Payload::Text("0,128,255".into()));
        assert_eq!(out[0].ack_lsn, Some(Lsn(50)));
        assert!(chain.apply(event(Op::Delete)).is_empty());
    }

    #[test]
    fn unwrap_options() {
        let t = Transform::from_config("u", &props(&[("type", "unwrap"), ("add.fields", "op,lsn"), ("delete.handling.mode", "rewrite")])).unwrap();
        let Payload::Row(r) = t.apply(event(Op::Create)).unwrap().payload else { panic!() };
        assert_eq!(r.get("__op"), Some(&Value::String("c".into())));
        assert_eq!(r.get("__lsn"), Some(&Value::Int64(42)));
        assert_eq!(r.get("__deleted"), Some(&Value::String("false".into())));
        let Payload::Row(r) = t.apply(event(Op::Delete)).unwrap().payload else { panic!() };
        assert_eq!(r.get("__deleted"), Some(&Value::String("true".into())));
        let keep = Transform::from_config("u", &props(&[("type", "unwrap"), ("drop.tombstones", "false")])).unwrap();
        let mut tomb = event(Op::Create);
        tomb.payload = Payload::Tombstone;
        assert!(keep.apply(tomb.clone()).is_some());
        // Debezium 3's default (`delete.tombstone.handling.mode=tombstone`): the delete goes,
        // its tombstone stays; Debezium 2's (`drop.tombstones` alone, default true) dropped it.
        let v3 = Transform::from_config("u", &props(&[("type", "unwrap")])).unwrap();
        assert!(v3.apply(tomb.clone()).is_some() && v3.apply(event(Op::Delete)).is_none());
        assert!(Transform::from_config("u", &props(&[("type", "unwrap"), ("delete.handling.mode", "drop")])).unwrap().apply(tomb.clone()).is_none());
        let rw = Transform::from_config("u", &props(&[("type", "unwrap"), ("delete.tombstone.handling.mode", "rewrite")])).unwrap();
        assert!(rw.apply(tomb).is_none() && matches!(rw.apply(event(Op::Delete)).unwrap().payload, Payload::Row(_)));
    }

    #[test]
    fn filter_and_errors() {
        let f = Transform::from_config("f", &props(&[("type", "filter"), ("tables", "public\\.mnist_test"), ("ops", "c,r")])).unwrap();
        assert!(f.apply(event(Op::Create)).is_some());
        assert!(f.apply(event(Op::Delete)).is_none());
        let e = Transform::from_config("f", &props(&[("type", "filter"), ("ops", "x")])).unwrap_err().to_string();
        assert!(e.contains("transforms.f.ops"), "{e}");
        let e = Transform::from_config("z", &props(&[("type", "com.Other")])).unwrap_err().to_string();
        assert!(e.contains("transforms.z.type"), "{e}");
        let e = Transform::from_config("z", &props(&[("type", "unwrap"), ("nope", "1")])).unwrap_err().to_string();
        assert!(e.contains("transforms.z.nope"), "{e}");
    }
}
