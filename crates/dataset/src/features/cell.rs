//! One column value of any source as the feature spec sees it, and the change a record
//! stands for (an upsert of a row, or the delete of a key).
//!
//! Typed rows (in-process capture) and Debezium JSON (with or without schemas) give the same
//! cells: Debezium's `Decimal` (unscaled two's-complement bytes and a `scale` parameter) and
//! `VariableScaleDecimal` (a struct of `scale` and `value`) become numbers, `bytes` become
//! bytes (base64 in JSON), numeric arrays become arrays, `Enum`/`Json`/`Uuid` strings stay text.
//! Without a schema, JSON strings stay text; a column whose kind is bytes decodes them (base64,
//! or hex as `binary.handling.mode=hex` writes) when it is encoded.

use serde_json::Value as J;
use tensorcdc_change::{Field, Message, Op, Payload, Row, Value};

use crate::DatasetError;

/// A column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    /// Integer types (a label of this kind is a class by default).
    Int(i64),
    /// Floating and decimal types, dates and times as Debezium's numbers.
    Number(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// A one-dimensional array (NULL elements as `None`).
    Array(Vec<Option<f64>>),
}

impl Cell {
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// The value as a number, if it is one (booleans as 0/1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Bool(b) => Some(*b as u8 as f64),
            Cell::Int(i) => Some(*i as f64),
            Cell::Number(x) => Some(*x),
            _ => None,
        }
    }

    /// The value as a class name: integers and booleans as text.
    pub fn class_name(&self) -> Option<String> {
        match self {
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Text(t) => Some(t.clone()),
            Cell::Number(x) if x.fract() == 0.0 && x.is_finite() => Some((*x as i64).to_string()),
            _ => None,
        }
    }
}

/// A row's cells by column name, and its key (the primary key's values as text).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    pub key: Option<String>,
    pub cells: Vec<(String, Cell)>,
}

impl Record {
    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.cells.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// True when a column holds an unchanged TOASTed value the change left out.
    pub fn has_unavailable(&self) -> bool {
        self.cells.iter().any(|(_, c)| super::is_unavailable(c))
    }

    /// Takes the cells of `unavailable` columns from `earlier` (the same row, read before);
    /// returns the columns it could not fill.
    pub fn fill_unavailable(&mut self, earlier: &Record) -> Vec<String> {
        let mut left = Vec::new();
        for (n, c) in self.cells.iter_mut().filter(|(_, c)| super::is_unavailable(c)) {
            match earlier.get(n).filter(|e| !super::is_unavailable(e)) {
                Some(e) => *c = e.clone(),
                None => left.push(n.clone()),
            }
        }
        left
    }
}

/// What a change record asks of a keyed set.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A snapshot read, insert or update: the row as it is now.
    Upsert(Record),
    /// A delete (or a tombstone) of the row with this key.
    Delete(String),
    /// Nothing to learn from (a truncate, a transaction marker).
    Skip,
}

/// Debezium's `Decimal`: big-endian two's-complement unscaled bytes.
fn decimal(bytes: &[u8], scale: i32) -> f64 {
    Value::decimal_bytes_f64(bytes, scale)
}

fn scale_param(field: &Field) -> i32 {
    field.logical.as_ref().and_then(|l| l.get_param("scale")).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The cell of a typed value.
pub fn cell_of_value(v: &Value, field: &Field) -> Cell {
    let semantic = field.semantic();
    match v {
        Value::Null => Cell::Null,
        // As Debezium writes it: the run loop fills it from the row's earlier value.
        Value::Unchanged => Cell::Text(tensorcdc_change::json::UNAVAILABLE.into()),
        Value::Boolean(b) => Cell::Bool(*b),
        Value::Int16(i) => Cell::Int(*i as i64),
        Value::Int32(i) => Cell::Int(*i as i64),
        Value::Int64(i) => Cell::Int(*i),
        Value::Float32(x) => Cell::Number(*x as f64),
        Value::Float64(x) => Cell::Number(*x),
        Value::String(s) => Cell::Text(s.clone()),
        // The capture's own decimals: the number, no bytes in between.
        Value::Decimal { unscaled, scale } => Cell::Number(Value::decimal_f64(unscaled, *scale as i32)),
        Value::Bytes(b) if semantic == Some("org.apache.kafka.connect.data.Decimal") => Cell::Number(decimal(b, scale_param(field))),
        Value::Bytes(b) => Cell::Bytes(b.clone()),
        Value::Struct(vals) if semantic == Some("io.debezium.data.VariableScaleDecimal") => match (vals.first(), vals.get(1)) {
            (Some(s), Some(Value::Bytes(b))) => Cell::Number(decimal(b, s.as_i64().unwrap_or(0) as i32)),
            _ => Cell::Null,
        },
        Value::Struct(_) => Cell::Text(format!("{v:?}")),
        Value::Array(items) => {
            let item = field.logical.as_ref().and_then(|l| l.items.as_deref());
            Cell::Array(
                items
                    .iter()
                    .map(|x| match item {
                        Some(f) => cell_of_value(x, f).as_f64(),
                        None => Cell::Null.as_f64(),
                    })
                    .collect(),
            )
        }
    }
}

/// The record of a typed row.
pub fn record_of_row(row: &Row, key: Option<String>) -> Record {
    Record { key, cells: row.fields.iter().zip(&row.values).map(|(f, v)| (f.name.clone(), cell_of_value(v, f))).collect() }
}

/// The change a typed message stands for.
pub fn change_of_message(m: &Message) -> Change {
    let key = m.key.to_text();
    match &m.payload {
        Payload::Tombstone => key.map_or(Change::Skip, Change::Delete),
        Payload::Row(r) => Change::Upsert(record_of_row(r, key)),
        Payload::Envelope(e) => match (e.op, &e.after) {
            (Op::Delete, _) => key.map_or(Change::Skip, Change::Delete),
            (Op::Truncate, _) | (_, None) => Change::Skip,
            (_, Some(a)) => Change::Upsert(record_of_row(a, key)),
        },
        Payload::Text(_) => Change::Skip,
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The cell of a Debezium JSON value, with its field schema when the record has one.
pub fn cell_of_json(v: &J, schema: Option<&J>) -> Cell {
    let ty = schema.and_then(|s| s["type"].as_str());
    let name = schema.and_then(|s| s["name"].as_str());
    match v {
        J::Null => Cell::Null,
        J::Bool(b) => Cell::Bool(*b),
        J::Number(n) => match (n.as_i64(), ty) {
            (Some(i), None | Some("int8" | "int16" | "int32" | "int64")) => Cell::Int(i),
            _ => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        // Kafka's JsonConverter writes NaN and infinities of floats as strings.
        J::String(s) if matches!(ty, Some("float" | "double")) => Cell::Number(s.parse().unwrap_or(f64::NAN)),
        J::String(s) if ty == Some("bytes") && name == Some("org.apache.kafka.connect.data.Decimal") => {
            let scale = schema.and_then(|s| s["parameters"]["scale"].as_str()).and_then(|s| s.parse().ok()).unwrap_or(0);
            b64(s).map_or(Cell::Null, |b| Cell::Number(decimal(&b, scale)))
        }
        J::String(s) if ty == Some("bytes") => b64(s).map_or_else(|| Cell::Text(s.clone()), Cell::Bytes),
        J::String(s) => Cell::Text(s.clone()),
        J::Object(o)
            if name == Some("io.debezium.data.VariableScaleDecimal")
                || (schema.is_none() && o.len() == 2 && o.contains_key("scale") && o.contains_key("value")) =>
        {
            match (o.get("scale").and_then(J::as_i64), o.get("value").and_then(J::as_str).and_then(b64)) {
                (Some(scale), Some(b)) => Cell::Number(decimal(&b, scale as i32)),
                _ => Cell::Null,
            }
        }
        J::Object(_) => Cell::Text(v.to_string()),
        J::Array(items) => {
            let item = schema.map(|s| &s["items"]);
            Cell::Array(items.iter().map(|x| cell_of_json(x, item).as_f64()).collect())
        }
    }
}

/// The record of a Debezium JSON row (`after` or `before`) with its struct schema, if any.
pub fn record_of_json(row: &serde_json::Map<String, J>, schema: Option<&J>, key: Option<String>) -> Record {
    // With a schema, cells come in the table's column order (as typed rows); without, in
    // the order the record has them (serde_json keeps it).
    if let Some(fields) = schema.and_then(|s| s["fields"].as_array()) {
        let cells = fields
            .iter()
            .filter_map(|f| {
                let name = f["field"].as_str()?;
                Some((name.to_string(), row.get(name).map_or(Cell::Null, |v| cell_of_json(v, Some(f)))))
            })
            .collect();
        return Record { key, cells };
    }
    Record { key, cells: row.iter().map(|(k, v)| (k.clone(), cell_of_json(v, None))).collect() }
}

/// The change a Debezium JSON record stands for (`value` null: a tombstone). `key` is the
/// record key as text (see [`crate::decode::key_text`]).
pub fn change_of_json(value: Option<&[u8]>, key: Option<String>, what: &dyn std::fmt::Display) -> Result<Change, DatasetError> {
    let Some(value) = value else { return Ok(key.map_or(Change::Skip, Change::Delete)) };
    let doc: J = serde_json::from_slice(value).map_err(|e| DatasetError::record(what, format!("not JSON: {e}")))?;
    let (payload, schema) = match doc.get("payload") {
        Some(p) if doc.get("schema").is_some() => (p, Some(&doc["schema"])),
        _ => (&doc, None),
    };
    // A tombstone written by JsonConverter with its schema (`ExtractNewRecordState` keeps the
    // value schema of the delete it turns into a tombstone): `{"schema":…,"payload":null}`.
    if payload.is_null() {
        return Ok(key.map_or(Change::Skip, Change::Delete));
    }
    let J::Object(env) = payload else { return Err(DatasetError::record(what, "expected a JSON object")) };
    let op = env.get("op").and_then(J::as_str);
    let envelope = op.is_some() && (env.contains_key("after") || env.contains_key("before"));
    if !envelope {
        // A flattened row (ExtractNewRecordState); `delete.handling.mode=rewrite` marks a
        // delete with `__deleted: "true"`.
        if env.get("__deleted").is_some_and(|d| d == "true" || d == &J::Bool(true)) {
            return Ok(key.map_or(Change::Skip, Change::Delete));
        }
        return Ok(Change::Upsert(record_of_json(env, schema, key)));
    }
    let after_schema = schema.and_then(|s| s["fields"].as_array()).and_then(|fs| fs.iter().find(|f| f["field"] == "after"));
    match (op, env.get("after")) {
        (Some("d"), _) => Ok(key.map_or(Change::Skip, Change::Delete)),
        (Some("t" | "m"), _) => Ok(Change::Skip),
        (_, Some(J::Object(after))) => Ok(Change::Upsert(record_of_json(after, after_schema, key))),
        _ => Err(DatasetError::record(what, "a change event without `after`")),
    }
}

/// The cell of one CSV field: empty is NULL, then an integer, a number, a boolean, or text.
pub fn cell_of_csv(field: &str) -> Cell {
    let f = field.trim();
    if f.is_empty() {
        return Cell::Null;
    }
    if let Ok(i) = f.parse::<i64>() {
        return Cell::Int(i);
    }
    if let Ok(x) = f.parse::<f64>() {
        return Cell::Number(x);
    }
    match f {
        "true" | "TRUE" | "True" => Cell::Bool(true),
        "false" | "FALSE" | "False" => Cell::Bool(false),
        _ => Cell::Text(f.trim_matches('"').to_string()),
    }
}

/// CSV records of a topic: `--columns`, or a header line as the topic's first record.
#[derive(Debug, Clone, Default)]
pub struct CsvColumns(pub Option<Vec<String>>);

impl CsvColumns {
    /// The change a CSV record stands for; `None` when it was the header line (the columns
    /// were not given and none were seen yet). A record whose field count differs from the
    /// columns is an error naming it.
    pub fn change(&mut self, value: Option<&[u8]>, key: Option<String>, what: &dyn std::fmt::Display) -> Result<Option<Change>, DatasetError> {
        let Some(value) = value else { return Ok(Some(key.map_or(Change::Skip, Change::Delete))) };
        let text = std::str::from_utf8(value).map_err(|_| DatasetError::record(what, "CSV record is not UTF-8"))?.trim_end_matches(['\r', '\n']);
        let fields: Vec<&str> = text.split(',').collect();
        let Some(cols) = &self.0 else {
            self.0 = Some(fields.iter().map(|f| f.trim().trim_matches('"').to_string()).collect());
            return Ok(None);
        };
        if fields.len() != cols.len() {
            return Err(DatasetError::record(what, format!("{} CSV fields, expected {} ({})", fields.len(), cols.len(), cols.join(","))));
        }
        Ok(Some(Change::Upsert(Record { key, cells: cols.iter().zip(&fields).map(|(c, f)| (c.clone(), cell_of_csv(f))).collect() })))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_with_a_header_line_or_columns() {
        let mut cols = CsvColumns::default();
        assert_eq!(cols.change(Some(b"age,city,owner,income"), None, &"t/0@0").unwrap(), None);
        let Some(Change::Upsert(r)) = cols.change(Some(b"31,Lyon,true,\r\n"), Some("1".into()), &"t/0@1").unwrap() else { panic!() };
        assert_eq!(r.cells.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(), [Cell::Int(31), Cell::Text("Lyon".into()), Cell::Bool(true), Cell::Null]);
        assert!(cols.change(Some(b"1,2"), None, &"t/0@2").unwrap_err().to_string().contains("t/0@2: 2 CSV fields, expected 4"));
        let mut given = CsvColumns(Some(vec!["x".into(), "y".into()]));
        assert!(matches!(given.change(Some(b"1.5,2"), None, &"t/0@0").unwrap(), Some(Change::Upsert(r)) if r.get("x") == Some(&Cell::Number(1.5))));
    }

    use super::*;
    use tensorcdc_change::{FieldType, Logical};

    #[test]
    fn decimals_from_bytes_and_structs() {
        assert_eq!(decimal(&[0x30, 0x39], 2), 123.45);
        assert_eq!(decimal(&[0xcf, 0xc7], 2), -123.45);
        let f = Field::new("p", FieldType::Bytes, true).with_logical(Logical::named("org.apache.kafka.connect.data.Decimal").param("scale", "3"));
        assert_eq!(cell_of_value(&Value::Bytes(vec![0x04, 0xd2]), &f), Cell::Number(1.234));
        let schema = serde_json::json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "3"}});
        assert_eq!(cell_of_json(&J::String("BNI=".into()), Some(&schema)), Cell::Number(1.234));
        let vsd = serde_json::json!({"scale": 1, "value": "BNI="});
        assert_eq!(cell_of_json(&vsd, None), Cell::Number(123.4));
    }

    /// The capture's own decimal values (in-process) give the cells their Debezium JSON gives
    /// through Kafka: the JSON is written by the converter from the same value (base64 bytes,
    /// or the VariableScaleDecimal struct) and read back by `cell_of_json`.
    #[test]
    fn in_process_decimals_are_the_numbers_their_json_holds() {
        use tensorcdc_change::json::{value_json_of, BinaryMode};
        let fixed = Field::new("p", FieldType::Bytes, true).with_logical(Logical::named("org.apache.kafka.connect.data.Decimal").param("scale", "2"));
        let fixed_schema = serde_json::json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}});
        let vsd = Field::new("r", FieldType::Struct, true).with_logical(Logical::named("io.debezium.data.VariableScaleDecimal"));
        let vsd_schema = serde_json::json!({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"});
        // Beyond f64's exact integers too (38 digits).
        for (unscaled, scale) in [("1234567", 2), ("-5", 2), ("0", 2), ("99999999999999", 2), ("-99999999999999999999999999999999999999", 2)] {
            let v = Value::Decimal { unscaled: unscaled.parse().unwrap(), scale };
            let json = value_json_of(&v, Some(&fixed), BinaryMode::Bytes);
            assert_eq!(cell_of_value(&v, &fixed), cell_of_json(&json, Some(&fixed_schema)), "{unscaled}e-{scale}");
        }
        assert_eq!(cell_of_value(&Value::Decimal { unscaled: 1234567.into(), scale: 2 }, &fixed), Cell::Number(12345.67));
        for (unscaled, scale) in [("101111", 4), ("-123456789", 18), ("100", 0), ("123456789012345678901234567890123456789", 9)] {
            let v = Value::Decimal { unscaled: unscaled.parse().unwrap(), scale };
            let json = value_json_of(&v, Some(&vsd), BinaryMode::Bytes);
            assert_eq!(cell_of_value(&v, &vsd), cell_of_json(&json, Some(&vsd_schema)), "{unscaled}e-{scale}");
        }
    }

    #[test]
    fn json_with_and_without_schema() {
        assert_eq!(cell_of_json(&serde_json::json!(3), None), Cell::Int(3));
        assert_eq!(cell_of_json(&serde_json::json!(3), Some(&serde_json::json!({"type": "double"}))), Cell::Number(3.0));
        assert!(matches!(cell_of_json(&serde_json::json!("NaN"), Some(&serde_json::json!({"type": "float"}))), Cell::Number(x) if x.is_nan()));
        assert_eq!(cell_of_json(&serde_json::json!("AAH/"), Some(&serde_json::json!({"type": "bytes"}))), Cell::Bytes(vec![0, 1, 255]));
        assert_eq!(cell_of_json(&serde_json::json!("AAH/"), None), Cell::Text("AAH/".into()));
        assert_eq!(cell_of_json(&serde_json::json!([1.5, null]), None), Cell::Array(vec![Some(1.5), None]));
    }

    #[test]
    fn envelopes_and_flattened_rows() {
        let what = "t/0@1";
        let v = br#"{"before":null,"after":{"id":1,"x":2.5},"op":"c"}"#;
        let Change::Upsert(r) = change_of_json(Some(v), Some("1".into()), &what).unwrap() else { panic!() };
        assert_eq!(r.get("x"), Some(&Cell::Number(2.5)));
        assert_eq!(change_of_json(Some(br#"{"before":{"id":1},"after":null,"op":"d"}"#), Some("1".into()), &what).unwrap(), Change::Delete("1".into()));
        assert_eq!(change_of_json(None, Some("1".into()), &what).unwrap(), Change::Delete("1".into()));
        let flat = change_of_json(Some(br#"{"id":1,"x":true}"#), None, &what).unwrap();
        assert!(matches!(flat, Change::Upsert(r) if r.get("x") == Some(&Cell::Bool(true))));
        assert!(change_of_json(Some(b"[1]"), None, &what).unwrap_err().to_string().contains("t/0@1"));
    }
}
