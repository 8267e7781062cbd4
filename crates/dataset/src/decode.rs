//! Records to examples: the blog's CSV records, Debezium JSON envelopes (with or without
//! `schema`, whatever transforms ran), and typed change events in-process.
//!
//! TF-IO's pain in the blog was reading JSON as strings; here BYTEA pixels come back as
//! bytes: base64 when the schema says `bytes` (Kafka Connect's JSON for bytes) or when
//! the text is base64, hex when the text is hex (`binary.handling.mode=hex`).

use std::fmt::Display;

use serde_json::Value as J;
use tensorcdc_change::json::decode_binary;
use tensorcdc_change::{Key, Message, Payload, Value};

use crate::{DatasetError, Example, PIXELS};

/// How records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON when the value starts with `{`, CSV otherwise.
    #[default]
    Auto,
    /// key = label text, value = 784 comma-separated pixel values.
    Csv,
    /// A Debezium JSON envelope or unwrapped row, with or without `schema`.
    Debezium,
}

impl std::str::FromStr for Format {
    type Err = tensorcdc_change::UnknownName;
    fn from_str(s: &str) -> Result<Self, tensorcdc_change::UnknownName> {
        match s {
            "auto" => Ok(Format::Auto),
            "csv" => Ok(Format::Csv),
            "debezium" | "json" => Ok(Format::Debezium),
            o => Err(tensorcdc_change::UnknownName::new("format", o, "auto, csv or debezium")),
        }
    }
}

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub format: Format,
    pub label_field: String,
    pub features_field: String,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { format: Format::Auto, label_field: "label".into(), features_field: "pixels".into() }
    }
}

fn bad(what: &dyn Display, reason: impl Into<String>) -> DatasetError {
    DatasetError::BadExample { what: what.to_string(), reason: reason.into() }
}

/// Parses 784 comma-separated integers 0..=255.
fn parse_csv_pixels(text: &[u8], what: &dyn Display) -> Result<Vec<u8>, DatasetError> {
    let mut out = Vec::with_capacity(PIXELS);
    let mut cur: u32 = 0;
    let mut digits = 0;
    for (i, &c) in text.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                cur = cur * 10 + (c - b'0') as u32;
                digits += 1;
                if cur > 255 {
                    return Err(bad(what, format!("CSV value {} is over 255", out.len() + 1)));
                }
            }
            b',' => {
                if digits == 0 {
                    return Err(bad(what, format!("CSV value {} is empty", out.len() + 1)));
                }
                out.push(cur as u8);
                cur = 0;
                digits = 0;
            }
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => return Err(bad(what, format!("CSV value {} is not a number (byte {:?} at {i})", out.len() + 1, c as char))),
        }
    }
    if digits > 0 {
        out.push(cur as u8);
    }
    Ok(out)
}

fn label_from_text(text: &str, what: &dyn Display) -> Result<i64, DatasetError> {
    text.trim().parse::<i64>().map_err(|_| bad(what, format!("label {text:?} is not a number")))
}

fn decode_csv(key: Option<&[u8]>, value: &[u8], what: &dyn Display) -> Result<Example, DatasetError> {
    let mut px = parse_csv_pixels(value, what)?;
    let label = match key {
        Some(k) => label_from_text(&String::from_utf8_lossy(k), what)?,
        // Without a key, a 785-value line carries the label first.
        None if px.len() == PIXELS + 1 => px.remove(0) as i64,
        None => return Err(bad(what, "CSV record has no key (the label)")),
    };
    Example::new(&px, label, what)
}

/// The Connect type of `field` in a schema (an envelope's `after` struct, or a flat struct).
fn schema_type<'a>(schema: &'a J, field: &str) -> Option<&'a str> {
    let fields = schema.get("fields")?.as_array()?;
    let find = |fs: &'a Vec<J>| fs.iter().find(|f| f.get("field").and_then(J::as_str) == Some(field)).and_then(|f| f.get("type")?.as_str());
    if let Some(after) = fields.iter().find(|f| f.get("field").and_then(J::as_str) == Some("after")) {
        return find(after.get("fields")?.as_array()?);
    }
    find(fields)
}

fn decode_json(value: &[u8], what: &dyn Display, opts: &DecodeOptions) -> Result<Option<Example>, DatasetError> {
    let doc: J = serde_json::from_slice(value).map_err(|e| bad(what, format!("not JSON: {e}")))?;
    let (schema, payload) = match (doc.get("schema"), doc.get("payload")) {
        (Some(s), Some(p)) => (Some(s), p),
        _ => (None, &doc),
    };
    let row = if payload.get("op").is_some() && (payload.get("after").is_some() || payload.get("before").is_some()) {
        match payload.get("op").and_then(J::as_str) {
            Some("d") | Some("t") => return Ok(None),
            _ => {}
        }
        match payload.get("after") {
            Some(J::Null) | None => return Ok(None),
            Some(a) => a,
        }
    } else {
        payload
    };
    // ExtractNewRecordState with `delete.tombstone.handling.mode=rewrite` (or the older
    // `delete.handling.mode=rewrite`): a delete is its old row with `__deleted: "true"`.
    if row.is_null() || row.get("__deleted").is_some_and(|d| d == "true" || d == &J::Bool(true)) {
        return Ok(None);
    }
    let label = match row.get(&opts.label_field) {
        Some(J::Number(n)) => n.as_i64().ok_or_else(|| bad(what, format!("field {:?} is not an integer", opts.label_field)))?,
        Some(J::String(s)) => label_from_text(s, what)?,
        Some(J::Null) => return Err(bad(what, format!("field {:?} is null", opts.label_field))),
        _ => return Err(bad(what, format!("no field {:?} (the label) in the record", opts.label_field))),
    };
    let pixels = match row.get(&opts.features_field) {
        Some(J::String(s)) => {
            let ty = schema.and_then(|s| schema_type(s, &opts.features_field));
            decode_binary(s, ty, Some(PIXELS)).map_err(|e| bad(what, format!("field {:?}: {e}", opts.features_field)))?
        }
        Some(J::Array(a)) => a
            .iter()
            .map(|v| v.as_u64().filter(|x| *x <= 255).map(|x| x as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad(what, format!("field {:?}: array values must be 0..=255", opts.features_field)))?,
        Some(J::Null) => return Err(bad(what, format!("field {:?} is null", opts.features_field))),
        _ => return Err(bad(what, format!("no field {:?} (the pixels) in the record", opts.features_field))),
    };
    Example::new(&pixels, label, what).map(Some)
}

/// A record key as text, the way in-process keys read (`Key::to_text`): a Debezium JSON key
/// (`{"id":5}`, or with its schema `{"schema":…,"payload":{"id":5}}`) gives its values joined
/// by commas ("5"; several columns come in the order of their names); any other key is its
/// bytes as text.
pub fn key_text(key: &[u8]) -> String {
    let parsed: Option<serde_json::Map<String, J>> = serde_json::from_slice::<J>(key).ok().and_then(|j| match j {
        J::Object(mut o) if o.contains_key("schema") && o.contains_key("payload") => match o.remove("payload") {
            Some(J::Object(p)) => Some(p),
            _ => None,
        },
        J::Object(o) => Some(o),
        _ => None,
    });
    match parsed {
        Some(o) => o.values().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect::<Vec<_>>().join(","),
        None => String::from_utf8_lossy(key).into_owned(),
    }
}

/// Decodes one record. `Ok(None)`: nothing to learn from (a tombstone, a delete, a
/// truncate). `what` names the record in errors (topic/partition@offset).
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>, what: &dyn Display, opts: &DecodeOptions) -> Result<Option<Example>, DatasetError> {
    let Some(value) = value else { return Ok(None) };
    let json = match opts.format {
        Format::Auto => value.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{'),
        Format::Csv => false,
        Format::Debezium => true,
    };
    if json {
        decode_json(value, what, opts)
    } else {
        decode_csv(key, value, what).map(Some)
    }
}

/// Decodes a typed in-process message (no serialisation at all).
pub fn from_message(m: &Message, opts: &DecodeOptions) -> Result<Option<Example>, DatasetError> {
    let what = format!("{} (lsn {})", m.topic, m.ack_lsn.map(|l| l.to_string()).unwrap_or_else(|| "-".into()));
    let row = match &m.payload {
        Payload::Tombstone => return Ok(None),
        Payload::Text(t) => {
            let key = match &m.key {
                Key::Text(k) | Key::Derived { text: k, .. } => Some(k.as_bytes()),
                _ => None,
            };
            return decode_csv(key, t.as_bytes(), &what).map(Some);
        }
        Payload::Row(r) if r.get("__deleted") == Some(&Value::String("true".into())) => return Ok(None),
        Payload::Row(r) => r,
        Payload::Envelope(e) => match (e.op, &e.after) {
            (tensorcdc_change::Op::Delete | tensorcdc_change::Op::Truncate, _) | (_, None) => return Ok(None),
            (_, Some(a)) => a,
        },
    };
    let label = row
        .get(&opts.label_field)
        .ok_or_else(|| bad(&what, format!("no field {:?} (the label)", opts.label_field)))?
        .as_i64()
        .ok_or_else(|| bad(&what, format!("field {:?} is not an integer", opts.label_field)))?;
    match row.get(&opts.features_field) {
        Some(Value::Bytes(b)) => Example::new(b, label, &what).map(Some),
        Some(Value::Null) => Err(bad(&what, format!("field {:?} is null", opts.features_field))),
        _ => Err(bad(&what, format!("no bytes field {:?} (the pixels)", opts.features_field))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(px: &[u8]) -> Vec<u8> {
        px.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",").into_bytes()
    }

    #[test]
    fn keys_read_as_in_process() {
        assert_eq!(key_text(br#"{"id":5}"#), "5");
        assert_eq!(key_text(br#"{"schema":{"type":"struct"},"payload":{"id":5}}"#), "5");
        assert_eq!(key_text(br#"{"a":"x","b":2}"#), "x,2");
        assert_eq!(key_text(b"7"), "7");
        assert_eq!(key_text(b"not json"), "not json");
    }

    /// A key of a numeric and a float column reads the same in-process (`Key::to_text`) as
    /// from its Debezium JSON (12.34 at scale 2 is 1234 = 0x04D2, base64 `BNI=`).
    #[test]
    fn numeric_keys_read_the_same_in_process_and_from_json() {
        use std::sync::Arc;
        use tensorcdc_change::{Field, FieldType, Key, Logical, Row};
        let fields = Arc::new(vec![
            Field::new("price", FieldType::Bytes, false).with_logical(Logical::named("org.apache.kafka.connect.data.Decimal").param("scale", "2")),
            Field::new("w", FieldType::Float64, false),
        ]);
        let key = Key::Row(Row::new(fields, vec![Value::Decimal { unscaled: 1234.into(), scale: 2 }, Value::Float64(1.5)]));
        assert_eq!(key.to_text().as_deref(), Some("BNI=,1.5"));
        assert_eq!(key_text(br#"{"price":"BNI=","w":1.5}"#), "BNI=,1.5");
    }

    #[test]
    fn csv_records() {
        let px: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
        let e = decode(Some(b"7"), Some(&csv(&px)), &"t/0@1", &DecodeOptions::default()).unwrap().unwrap();
        assert_eq!((e.label, &e.pixels[..]), (7, &px[..]));
        assert!(decode(Some(b"7"), None, &"t/0@1", &DecodeOptions::default()).unwrap().is_none());
        let err = |k: &[u8], v: &[u8]| decode(Some(k), Some(v), &"t/0@9", &DecodeOptions::default()).unwrap_err().to_string();
        assert!(err(b"7", b"1,2,3").contains("3 pixels, expected 784"));
        assert!(err(b"7", b"1,x,3").contains("t/0@9") && err(b"7", b"1,x,3").contains("not a number"));
        assert!(err(b"7", b"1,256").contains("over 255"));
        assert!(err(b"12", &csv(&px)).contains("label 12 is outside 0..=9"));
        assert!(err(b"a", &csv(&px)).contains("label \"a\" is not a number"));
    }

    #[test]
    fn debezium_envelopes_with_and_without_schema() {
        use base64::Engine;
        let px: Vec<u8> = (0..784).map(|i| (i * 3 % 256) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&px);
        let payload = serde_json::json!({"before": null, "after": {"id": 1, "label": 4, "pixels": b64}, "op": "c", "source": {}});
        let with_schema = serde_json::json!({
            "schema": {"type": "struct", "fields": [{"field": "after", "type": "struct", "fields": [{"field": "pixels", "type": "bytes"}]}]},
            "payload": payload
        });
        for doc in [&payload, &with_schema] {
            let e = decode(None, Some(&serde_json::to_vec(doc).unwrap()), &"x", &DecodeOptions::default()).unwrap().unwrap();
            assert_eq!((e.label, &e.pixels[..]), (4, &px[..]));
        }
        // Unwrapped row, hex pixels.
        let row = serde_json::json!({"id": 2, "label": 9, "pixels": hex::encode(&px)});
        let e = decode(None, Some(&serde_json::to_vec(&row).unwrap()), &"x", &DecodeOptions::default()).unwrap().unwrap();
        assert_eq!((e.label, &e.pixels[..]), (9, &px[..]));
        // Deletes are skipped; missing fields are errors naming the field.
        let del = serde_json::json!({"before": {"id": 1}, "after": null, "op": "d"});
        assert!(decode(None, Some(&serde_json::to_vec(&del).unwrap()), &"x", &DecodeOptions::default()).unwrap().is_none());
        let opts = DecodeOptions { label_field: "digit".into(), ..Default::default() };
        let e = decode(None, Some(&serde_json::to_vec(&row).unwrap()), &"tf.public.t/0@5", &opts).unwrap_err().to_string();
        assert!(e.contains("tf.public.t/0@5") && e.contains("\"digit\""), "{e}");
        let e = decode(None, Some(b"{not json"), &"x", &DecodeOptions::default()).unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }
}
