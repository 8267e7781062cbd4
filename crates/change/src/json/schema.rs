//! The Kafka Connect JSON schemas of fields, rows and Debezium's envelope, as
//! `JsonConverter` writes them (key order: type, items/fields, optional, name, version, doc,
//! parameters, field).

use serde_json::{json, Map, Value as J};

use super::{BinaryMode, EnvelopeVersion};
use crate::{ChangeEvent, Field, FieldType};

/// True when `binary.handling.mode` applies to this field: plain `bytes` (BYTEA), not a
/// semantic type that is carried as bytes (`Decimal`, `Bits`).
pub(super) fn is_plain_bytes(f: &Field) -> bool {
    f.ty == FieldType::Bytes && f.semantic().is_none()
}

/// The Kafka Connect JSON schema of a field (`field` key omitted when `name` is `None`).
fn field_schema_json(f: &Field, binary: BinaryMode, with_name: bool) -> J {
    let ty = if is_plain_bytes(f) && binary != BinaryMode::Bytes { "string" } else { f.ty.connect_name() };
    let mut m = Map::new();
    m.insert("type".into(), J::from(ty));
    if let Some(l) = &f.logical {
        if let Some(items) = &l.items {
            m.insert("items".into(), field_schema_json(items, binary, false));
        }
        if f.ty == FieldType::Struct {
            // binary.handling.mode is for bytea columns: struct members (a
            // VariableScaleDecimal's value, a Point's wkb) stay bytes.
            m.insert("fields".into(), J::Array(l.fields.iter().map(|x| field_schema_json(x, BinaryMode::Bytes, true)).collect()));
        }
    }
    m.insert("optional".into(), J::from(f.optional));
    if let Some(l) = &f.logical {
        if let Some(n) = &l.name {
            m.insert("name".into(), J::from(n.as_str()));
        }
        if let Some(v) = l.version {
            m.insert("version".into(), J::from(v));
        }
        if let Some(d) = &l.doc {
            m.insert("doc".into(), J::from(d.as_str()));
        }
        if !l.params.is_empty() {
            m.insert("parameters".into(), J::Object(l.params.iter().map(|(k, v)| (k.clone(), J::from(v.as_str()))).collect()));
        }
        if let Some(d) = l.default.as_deref().and_then(|d| serde_json::from_str::<J>(d).ok()) {
            m.insert("default".into(), d);
        }
    }
    if with_name {
        m.insert("field".into(), J::from(f.name.as_str()));
    }
    J::Object(m)
}

fn field_schema(f: &Field, binary: BinaryMode) -> J {
    field_schema_json(f, binary, true)
}

pub(super) fn struct_schema(fields: &[Field], name: &str, optional: bool, binary: BinaryMode, field: Option<&str>) -> J {
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

fn source_schema(version: EnvelopeVersion) -> J {
    if version == EnvelopeVersion::V2 {
        return json!({
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
        });
    }
    json!({
        "type": "struct",
        "fields": [
            {"type": "string", "optional": false, "field": "version"},
            {"type": "string", "optional": false, "field": "connector"},
            {"type": "string", "optional": false, "field": "name"},
            {"type": "int64", "optional": false, "field": "ts_ms"},
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"}, "default": "false", "field": "snapshot"},
            {"type": "string", "optional": false, "field": "db"},
            {"type": "string", "optional": true, "field": "sequence"},
            {"type": "int64", "optional": true, "field": "ts_us"},
            {"type": "int64", "optional": true, "field": "ts_ns"},
            {"type": "string", "optional": false, "field": "schema"},
            {"type": "string", "optional": false, "field": "table"},
            {"type": "int64", "optional": true, "field": "txId"},
            {"type": "int64", "optional": true, "field": "lsn"},
            {"type": "int64", "optional": true, "field": "xmin"},
            {"type": "string", "optional": true, "field": "origin"},
            {"type": "int64", "optional": true, "field": "origin_lsn"}
        ],
        "optional": false,
        "name": "io.debezium.connector.postgresql.Source",
        "version": 1,
        "field": "source"
    })
}

fn transaction_schema() -> J {
    json!({"type": "struct", "fields": [
        {"type": "string", "optional": false, "field": "id"},
        {"type": "int64", "optional": false, "field": "total_order"},
        {"type": "int64", "optional": false, "field": "data_collection_order"}
     ], "optional": true, "name": "event.block", "version": 1, "field": "transaction"})
}

pub(super) fn envelope_schema(e: &ChangeEvent, topic: &str, binary: BinaryMode, version: EnvelopeVersion) -> J {
    let fields: &[Field] = e.after.as_ref().or(e.before.as_ref()).map_or(&[], |r| &r.fields[..]);
    let value_name = format!("{topic}.Value");
    let before = struct_schema(fields, &value_name, true, binary, Some("before"));
    let after = struct_schema(fields, &value_name, true, binary, Some("after"));
    let int64 = |f: &str| json!({"type": "int64", "optional": true, "field": f});
    let (envelope_fields, v) = match version {
        EnvelopeVersion::V3 => (
            vec![
                before,
                after,
                source_schema(version),
                transaction_schema(),
                json!({"type": "string", "optional": false, "field": "op"}),
                int64("ts_ms"),
                int64("ts_us"),
                int64("ts_ns"),
            ],
            2,
        ),
        EnvelopeVersion::V2 => {
            (vec![before, after, source_schema(version), json!({"type": "string", "optional": false, "field": "op"}), int64("ts_ms"), transaction_schema()], 1)
        }
    };
    json!({
        "type": "struct",
        "fields": envelope_fields,
        "optional": false,
        "name": format!("{topic}.Envelope"),
        "version": v
    })
}
