//! Kafka Connect converters: JSON (`schemas.enable` true: `{"schema":…,"payload":…}`;
//! false: the payload alone) and string, laid out as the Debezium Postgres connector's
//! events are (<https://debezium.io/documentation/reference/stable/connectors/postgresql.html>).
//!
//! BYTEA follows `binary.handling.mode`: `bytes` (schema type `bytes`, base64 in JSON, as
//! Kafka Connect's JsonConverter writes bytes), `base64` or `hex` (schema type `string`).

use base64::Engine;
use serde_json::{json, Map, Value as J};

use crate::{ChangeEvent, Field, FieldType, Key, Message, Payload, Row, Value, VERSION};

/// How BYTEA columns are represented (Debezium's `binary.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinaryMode {
    #[default]
    Bytes,
    Base64,
    Hex,
}

impl std::str::FromStr for BinaryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bytes" => Ok(BinaryMode::Bytes),
            "base64" => Ok(BinaryMode::Base64),
            "hex" => Ok(BinaryMode::Hex),
            other => Err(format!("binary.handling.mode {other:?}: expected bytes, base64 or hex")),
        }
    }
}

/// The value converter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converter {
    /// `org.apache.kafka.connect.json.JsonConverter` with `schemas.enable`.
    Json { schemas: bool },
    /// `org.apache.kafka.connect.storage.StringConverter`.
    String,
}

impl Default for Converter {
    fn default() -> Self {
        Converter::Json { schemas: true }
    }
}

/// Converter settings for keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConverterConfig {
    pub key: Converter,
    pub value: Converter,
    pub binary: BinaryMode,
}

/// Placeholder Debezium writes for an unchanged TOASTed value.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

fn field_schema(f: &Field, binary: BinaryMode) -> J {
    let ty = match (f.ty, binary) {
        (FieldType::Bytes, BinaryMode::Base64 | BinaryMode::Hex) => "string",
        (t, _) => t.connect_name(),
    };
    json!({"type": ty, "optional": f.optional, "field": f.name})
}

fn struct_schema(fields: &[Field], name: &str, optional: bool, binary: BinaryMode, field: Option<&str>) -> J {
    let mut m = Map::new();
    m.insert("type".into(), J::from("struct"));
    m.insert("fields".into(), J::Array(fields.iter().map(|f| field_schema(f, binary)).collect()));
    m.insert("optional".into(), J::from(optional));
    m.insert("name".into(), J::from(name));
    if let Some(fl) = field {
        m.insert("field".into(), J::from(fl));
    }
    J::Object(m)
}

/// The JSON of one value.
pub fn value_json(v: &Value, binary: BinaryMode) -> J {
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::from(*b),
        Value::Int16(i) => J::from(*i),
        Value::Int32(i) => J::from(*i),
        Value::Int64(i) => J::from(*i),
        Value::Float32(f) => J::from(*f),
        Value::Float64(f) => J::from(*f),
        Value::String(s) => J::from(s.as_str()),
        Value::Bytes(b) => match binary {
            BinaryMode::Bytes | BinaryMode::Base64 => J::from(base64::engine::general_purpose::STANDARD.encode(b)),
            BinaryMode::Hex => J::from(hex::encode(b)),
        },
        Value::Unchanged => J::from(UNAVAILABLE),
    }
}

/// A row as a JSON object, fields in order.
pub fn row_json(row: &Row, binary: BinaryMode) -> J {
    let mut m = Map::with_capacity(row.values.len());
    for (f, v) in row.fields.iter().zip(&row.values) {
        m.insert(f.name.clone(), value_json(v, binary));
    }
    J::Object(m)
}

fn source_schema() -> J {
    json!({
        "type": "struct",
        "fields": [
            {"type": "string", "optional": false, "field": "version"},
            {"type": "string", "optional": false, "field": "connector"},
            {"type": "string", "optional": false, "field": "name"},
            {"type": "int64", "optional": false, "field": "ts_ms"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,last,false,incremental"}, "default": "false", "field": "snapshot"},
            {"type": "string", "optional": false, "field": "db"},
            {"type": "string", "optional": true, "field": "sequence"},
            {"type": "string", "optional": false, "field": "schema"},
            {"type": "string", "optional": false, "field": "table"},
            {"type": "int64", "optional": true, "field": "txId"},
            {"type": "int64", "optional": true, "field": "lsn"},
            {"type": "int64", "optional": true, "field": "xmin"}
        ],
        "optional": false,
        "name": "io.debezium.connector.postgresql.Source",
        "field": "source"
    })
}

fn envelope_payload(e: &ChangeEvent, binary: BinaryMode) -> J {
    let s = &e.source;
    json!({
        "before": e.before.as_ref().map_or(J::Null, |r| row_json(r, binary)),
        "after": e.after.as_ref().map_or(J::Null, |r| row_json(r, binary)),
        "source": {
            "version": VERSION,
            "connector": "postgresql",
            "name": &*s.name,
            "ts_ms": s.ts_ms,
            "snapshot": s.snapshot.as_str(),
            "db": &*s.db,
            "sequence": s.lsn.map_or(J::Null, |l| J::from(format!("[null,\"{}\"]", l.0))),
            "schema": &*s.schema,
            "table": &*s.table,
            "txId": s.tx_id,
            "lsn": s.lsn.map(|l| l.0),
            "xmin": J::Null
        },
        "op": e.op.code(),
        "ts_ms": e.ts_ms,
        "transaction": J::Null
    })
}

fn envelope_schema(e: &ChangeEvent, topic: &str, binary: BinaryMode) -> J {
    let fields: &[Field] = e.after.as_ref().or(e.before.as_ref()).map_or(&[], |r| &r.fields[..]);
    let value_name = format!("{topic}.Value");
    json!({
        "type": "struct",
        "fields": [
            struct_schema(fields, &value_name, true, binary, Some("before")),
            struct_schema(fields, &value_name, true, binary, Some("after")),
            source_schema(),
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"},
            {"type": "struct", "fields": [
                {"type": "string", "optional": false, "field": "id"},
                {"type": "int64", "optional": false, "field": "total_order"},
                {"type": "int64", "optional": false, "field": "data_collection_order"}
             ], "optional": true, "name": "event.block", "version": 1, "field": "transaction"}
        ],
        "optional": false,
        "name": format!("{topic}.Envelope"),
        "version": 1
    })
}

fn wrap(schemas: bool, schema: impl FnOnce() -> J, payload: J) -> Vec<u8> {
    let doc = if schemas { json!({"schema": schema(), "payload": payload}) } else { payload };
    serde_json::to_vec(&doc).expect("JSON values serialise")
}

/// Serialises a message's key and value as Kafka record bytes (`None` = null).
pub fn serialize(msg: &Message, cfg: &ConverterConfig) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let key = match (&msg.key, cfg.key) {
        (Key::None, _) => None,
        (Key::Text(t), _) => Some(t.clone().into_bytes()),
        (Key::Row(r), Converter::String) => Some(row_json(r, cfg.binary).to_string().into_bytes()),
        (Key::Row(r), Converter::Json { schemas }) => Some(wrap(
            schemas,
            || struct_schema(&r.fields, &format!("{}.Key", msg.topic), false, cfg.binary, None),
            row_json(r, cfg.binary),
        )),
    };
    let value = match (&msg.payload, cfg.value) {
        (Payload::Tombstone, _) => None,
        (Payload::Text(t), _) => Some(t.clone().into_bytes()),
        (Payload::Envelope(e), Converter::Json { schemas }) => {
            Some(wrap(schemas, || envelope_schema(e, &msg.topic, cfg.binary), envelope_payload(e, cfg.binary)))
        }
        (Payload::Envelope(e), Converter::String) => Some(envelope_payload(e, cfg.binary).to_string().into_bytes()),
        (Payload::Row(r), Converter::Json { schemas }) => Some(wrap(
            schemas,
            || struct_schema(&r.fields, &format!("{}.Value", msg.topic), false, cfg.binary, None),
            row_json(r, cfg.binary),
        )),
        (Payload::Row(r), Converter::String) => Some(row_json(r, cfg.binary).to_string().into_bytes()),
    };
    (key, value)
}

/// Decodes a JSON field holding binary data, as written by [`value_json`]: `schema_type`
/// is the field's Connect type when known (`bytes` = base64); otherwise hex is tried when
/// the text is all hex digits of even length and `expect_len` matches, then base64.
pub fn decode_binary(text: &str, schema_type: Option<&str>, expect_len: Option<usize>) -> Result<Vec<u8>, String> {
    let b64 = || base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("not base64: {e}"));
    let hexd = || hex::decode(text.strip_prefix("\\x").unwrap_or(text)).map_err(|e| format!("not hex: {e}"));
    match schema_type {
        Some("bytes") => b64(),
        _ => {
            let t = text.strip_prefix("\\x").unwrap_or(text);
            let hex_like = t.len() % 2 == 0 && t.bytes().all(|c| c.is_ascii_hexdigit());
            if hex_like && expect_len.is_none_or(|n| t.len() == 2 * n) {
                hexd()
            } else {
                b64()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lsn, Op, Snapshot, Source};
    use std::sync::Arc;

    fn fields() -> Arc<Vec<Field>> {
        Arc::new(vec![
            Field::new("id", FieldType::Int32, false),
            Field::new("label", FieldType::Int16, true),
            Field::new("pixels", FieldType::Bytes, true),
        ])
    }

    fn event() -> ChangeEvent {
        let f = fields();
        ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(Row::new(f.clone(), vec![Value::Int32(1), Value::Int16(5), Value::Bytes(vec![0, 255, 16])])),
            source: Source {
                name: "tf".into(),
                ts_ms: 1,
                snapshot: Snapshot::False,
                db: "postgres".into(),
                schema: "public".into(),
                table: "mnist_train".into(),
                tx_id: Some(7),
                lsn: Some(Lsn(100)),
            },
            ts_ms: 2,
            key: Some(Row::new(Arc::new(vec![f[0].clone()]), vec![Value::Int32(1)])),
        }
    }

    #[test]
    fn binary_modes() {
        let msg = Message::from_event(event(), None);
        for (mode, expect) in [(BinaryMode::Bytes, "AP8Q"), (BinaryMode::Base64, "AP8Q"), (BinaryMode::Hex, "00ff10")] {
            let cfg = ConverterConfig { binary: mode, value: Converter::Json { schemas: false }, ..Default::default() };
            let v: J = serde_json::from_slice(&serialize(&msg, &cfg).1.unwrap()).unwrap();
            assert_eq!(v["after"]["pixels"], expect);
            assert_eq!(decode_binary(expect, None, Some(3)).unwrap(), vec![0, 255, 16]);
        }
        assert_eq!(decode_binary("AP8Q", Some("bytes"), None).unwrap(), vec![0, 255, 16]);
    }

    #[test]
    fn tombstone_and_text() {
        let mut msg = Message::from_event(event(), None);
        msg.payload = Payload::Tombstone;
        let (k, v) = serialize(&msg, &ConverterConfig::default());
        assert!(v.is_none());
        let k: J = serde_json::from_slice(&k.unwrap()).unwrap();
        assert_eq!(k["payload"], json!({"id": 1}));
        assert_eq!(k["schema"]["name"], "tf.public.mnist_train.Key");
        msg.payload = Payload::Text("1,2".into());
        msg.key = Key::Text("5".into());
        let (k, v) = serialize(&msg, &ConverterConfig::default());
        assert_eq!((k.unwrap(), v.unwrap()), (b"5".to_vec(), b"1,2".to_vec()));
    }
}
