//! Kafka Connect converters: JSON (`schemas.enable` true: `{"schema":…,"payload":…}`;
//! false: the payload alone) and string, laid out as the Debezium Postgres connector's
//! events are (<https://debezium.io/documentation/reference/stable/connectors/postgresql.html>).
//!
//! BYTEA follows `binary.handling.mode`: `bytes` (schema type `bytes`, base64 in JSON, as
//! Kafka Connect's JsonConverter writes bytes), `base64` or `hex` (schema type `string`).

use base64::Engine;
use serde_json::Value as J;

use crate::{ChangeEvent, Field, Key, Message, Payload, Row, UnknownName, Value};

mod envelope;
mod schema;
use envelope::write_envelope;
use schema::{envelope_schema, is_plain_bytes, struct_schema};

/// How BYTEA columns are represented (Debezium's `binary.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinaryMode {
    #[default]
    Bytes,
    Base64,
    /// URL-safe alphabet, padded (Java's `Base64.getUrlEncoder()`).
    Base64UrlSafe,
    Hex,
}

impl std::str::FromStr for BinaryMode {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "bytes" => Ok(BinaryMode::Bytes),
            "base64" => Ok(BinaryMode::Base64),
            "base64-url-safe" => Ok(BinaryMode::Base64UrlSafe),
            "hex" => Ok(BinaryMode::Hex),
            other => Err(UnknownName::new("binary.handling.mode", other, "bytes, base64, base64-url-safe or hex")),
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

/// The envelope layout: Debezium 3's (the default) or Debezium 2's, for consumers that
/// need it (`tensorcdc.envelope.version=2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvelopeVersion {
    /// `source` and the envelope carry `ts_us`/`ts_ns`, `source` has `origin`/`origin_lsn`,
    /// snapshot markers `first`, `first_in_data_collection`, …; envelope schema version 2.
    #[default]
    V3,
    /// Debezium 2.7's layout: `ts_ms` only, markers `true`/`last`, envelope version 1.
    V2,
}

impl std::str::FromStr for EnvelopeVersion {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "3" | "3.x" => Ok(EnvelopeVersion::V3),
            "2" | "2.x" => Ok(EnvelopeVersion::V2),
            other => Err(UnknownName::new("envelope version", other, "3 (Debezium 3.x's envelope) or 2 (Debezium 2.x's)")),
        }
    }
}

/// Converter settings for keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConverterConfig {
    pub key: Converter,
    pub value: Converter,
    pub binary: BinaryMode,
    pub envelope: EnvelopeVersion,
}

/// Placeholder Debezium writes for an unchanged TOASTed value.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// A float as Kafka Connect's JsonConverter writes it: Jackson quotes NaN and the
/// infinities (`"NaN"`, `"Infinity"`, `"-Infinity"`).
fn float_json(f: f64, v: J) -> J {
    if f.is_nan() {
        J::from("NaN")
    } else if f.is_infinite() {
        J::from(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        v
    }
}

/// The JSON of one value of field `f` (`None`: no schema known, bytes follow `binary`).
pub fn value_json_of(v: &Value, f: Option<&Field>, binary: BinaryMode) -> J {
    let plain = f.is_none_or(is_plain_bytes);
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::from(*b),
        Value::Int16(i) => J::from(*i),
        Value::Int32(i) => J::from(*i),
        Value::Int64(i) => J::from(*i),
        Value::Float32(x) => float_json(*x as f64, J::from(*x)),
        Value::Float64(x) => float_json(*x, J::from(*x)),
        Value::String(s) => J::from(s.as_str()),
        Value::Bytes(b) => match (binary, plain) {
            (BinaryMode::Hex, true) => J::from(hex::encode(b)),
            (BinaryMode::Base64UrlSafe, true) => J::from(base64::engine::general_purpose::URL_SAFE.encode(b)),
            _ => J::from(base64::engine::general_purpose::STANDARD.encode(b)),
        },
        Value::Decimal { unscaled, scale } => {
            let value = J::from(base64::engine::general_purpose::STANDARD.encode(Value::decimal_bytes(unscaled)));
            if is_variable_scale(f) {
                J::Object([("scale".to_string(), J::from(*scale)), ("value".to_string(), value)].into_iter().collect())
            } else {
                value
            }
        }
        Value::Array(items) => {
            let inner = f.and_then(|f| f.logical.as_ref()).and_then(|l| l.items.as_deref());
            J::Array(items.iter().map(|x| value_json_of(x, inner, binary)).collect())
        }
        Value::Struct(vals) => {
            let fields = f.and_then(|f| f.logical.as_ref()).map_or(&[][..], |l| &l.fields[..]);
            J::Object(fields.iter().zip(vals).map(|(sf, x)| (sf.name.clone(), value_json_of(x, Some(sf), BinaryMode::Bytes))).collect())
        }
        Value::Unchanged => J::from(UNAVAILABLE),
    }
}

/// Debezium's `VariableScaleDecimal`: a struct of `scale` and `value` (the unscaled bytes).
fn is_variable_scale(f: Option<&Field>) -> bool {
    f.and_then(Field::semantic) == Some("io.debezium.data.VariableScaleDecimal")
}

/// The JSON of one value (no schema: bytes follow `binary`).
pub fn value_json(v: &Value, binary: BinaryMode) -> J {
    value_json_of(v, None, binary)
}

/// Serialises messages as Kafka record bytes, writing JSON directly into buffers and
/// caching each table's schema JSON (the schema is most of an event's bytes and the same
/// for every row of a table).
#[derive(Debug, Default)]
pub struct JsonWriter {
    cfg: ConverterConfig,
    /// (fields fingerprint, kind, topic) -> the fields (kept alive, so the addresses the
    /// fingerprint hashes cannot be reused by other schemas) and their schema JSON.
    schemas: SchemaCache,
}

/// The schema JSON of each field list seen, by (fields fingerprint, kind, topic).
type SchemaCache = std::collections::HashMap<(u64, u8, String), (std::sync::Arc<Vec<Field>>, Box<str>)>;

/// The fields, kind, topic and event a schema is written for.
type SchemaOf<'a> = Option<(&'a std::sync::Arc<Vec<Field>>, u8, &'a str, Option<&'a ChangeEvent>)>;

pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

pub(super) fn write_num<T: serde::Serialize>(out: &mut Vec<u8>, v: T) {
    serde_json::to_writer(&mut *out, &v).expect("writing to a Vec cannot fail");
}

fn write_float(out: &mut Vec<u8>, x: f64, write: impl FnOnce(&mut Vec<u8>)) {
    if x.is_finite() {
        write(out)
    } else {
        out.extend_from_slice(if x.is_nan() {
            b"\"NaN\""
        } else if x > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value, f: Option<&Field>, binary: BinaryMode) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int16(i) => write_num(out, i),
        Value::Int32(i) => write_num(out, i),
        Value::Int64(i) => write_num(out, i),
        Value::Float32(x) => write_float(out, *x as f64, |o| write_num(o, x)),
        Value::Float64(x) => write_float(out, *x, |o| write_num(o, x)),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => {
            out.push(b'"');
            match (binary, f.is_none_or(is_plain_bytes)) {
                (BinaryMode::Hex, true) => {
                    let start = out.len();
                    out.resize(start + 2 * b.len(), 0);
                    hex::encode_to_slice(b, &mut out[start..]).expect("sized for hex");
                }
                (mode, plain) => {
                    let engine = if plain && mode == BinaryMode::Base64UrlSafe {
                        &base64::engine::general_purpose::URL_SAFE
                    } else {
                        &base64::engine::general_purpose::STANDARD
                    };
                    let start = out.len();
                    out.resize(start + b.len().div_ceil(3) * 4, 0);
                    let n = engine.encode_slice(b, &mut out[start..]).expect("sized for base64");
                    out.truncate(start + n);
                }
            }
            out.push(b'"');
        }
        Value::Decimal { unscaled, scale } => {
            let variable = is_variable_scale(f);
            if variable {
                out.extend_from_slice(b"{\"scale\":");
                write_num(out, scale);
                out.extend_from_slice(b",\"value\":");
            }
            write_str(out, &base64::engine::general_purpose::STANDARD.encode(Value::decimal_bytes(unscaled)));
            if variable {
                out.push(b'}');
            }
        }
        Value::Array(_) | Value::Struct(_) => {
            serde_json::to_writer(&mut *out, &value_json_of(v, f, binary)).expect("writing to a Vec cannot fail");
        }
        Value::Unchanged => write_str(out, UNAVAILABLE),
    }
}

fn write_row(out: &mut Vec<u8>, row: &Row, binary: BinaryMode) {
    out.push(b'{');
    for (i, (f, v)) in row.fields.iter().zip(&row.values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &f.name);
        out.push(b':');
        // Kafka Connect's JsonConverter writes a null as the field's default when it has one
        // (`replace.null.with.default`, true by default): so does Debezium's every event.
        match (v, f.logical.as_ref().and_then(|l| l.default.as_deref())) {
            (Value::Null, Some(d)) => out.extend_from_slice(d.as_bytes()),
            _ => write_value(out, v, Some(f), binary),
        }
    }
    out.push(b'}');
}

pub(super) fn write_opt_row(out: &mut Vec<u8>, row: Option<&Row>, binary: BinaryMode) {
    match row {
        Some(r) => write_row(out, r, binary),
        None => out.extend_from_slice(b"null"),
    }
}

/// A hash of field names, types and optionality (a table altered gets a new schema).
fn fingerprint(fields: &[Field]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in fields {
        f.name.hash(&mut h);
        f.ty.hash(&mut h);
        f.optional.hash(&mut h);
        // Same fields from one relation share their Arc: hashing the pointer is cheap.
        f.logical.as_ref().map(std::sync::Arc::as_ptr).hash(&mut h);
    }
    h.finish()
}

const KIND_KEY: u8 = 0;
const KIND_ENVELOPE: u8 = 1;
const KIND_ROW: u8 = 2;

impl JsonWriter {
    pub fn new(cfg: ConverterConfig) -> Self {
        JsonWriter { cfg, schemas: Default::default() }
    }

    pub fn config(&self) -> &ConverterConfig {
        &self.cfg
    }

    fn schema(&mut self, fields: &std::sync::Arc<Vec<Field>>, kind: u8, topic: &str, e: Option<&ChangeEvent>) -> &str {
        let binary = self.cfg.binary;
        let version = self.cfg.envelope;
        let key = (fingerprint(fields), kind, topic.to_string());
        self.schemas
            .entry(key)
            .or_insert_with(|| {
                let j = match (kind, e) {
                    (KIND_ENVELOPE, Some(e)) => envelope_schema(e, topic, binary, version),
                    (KIND_KEY, _) => struct_schema(fields, &format!("{topic}.Key"), false, binary, None),
                    _ => struct_schema(fields, &format!("{topic}.Value"), false, binary, None),
                };
                (fields.clone(), j.to_string().into_boxed_str())
            })
            .1
            .as_ref()
    }

    fn wrap(&mut self, schemas: bool, schema_of: SchemaOf<'_>, payload: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::with_capacity(2048);
        match (schemas, schema_of) {
            (true, Some((fields, kind, topic, e))) => {
                out.extend_from_slice(b"{\"schema\":");
                out.extend_from_slice(self.schema(fields, kind, topic, e).as_bytes());
                out.extend_from_slice(b",\"payload\":");
                payload(&mut out);
                out.push(b'}');
            }
            (true, None) => {
                out.extend_from_slice(b"{\"schema\":null,\"payload\":");
                payload(&mut out);
                out.push(b'}');
            }
            (false, _) => payload(&mut out),
        }
        out
    }

    /// A message's key and value as Kafka record bytes (`None` = null).
    pub fn serialize(&mut self, msg: &Message) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let binary = self.cfg.binary;
        let key = match (&msg.key, self.cfg.key) {
            (Key::None, _) => None,
            (Key::Text(t) | Key::Derived { text: t, .. }, _) => Some(t.clone().into_bytes()),
            (Key::Row(r), Converter::String) => {
                let mut out = Vec::new();
                write_row(&mut out, r, binary);
                Some(out)
            }
            (Key::Row(r), Converter::Json { schemas }) => Some(self.wrap(schemas, Some((&r.fields, KIND_KEY, &msg.topic, None)), |o| write_row(o, r, binary))),
        };
        let value = match (&msg.payload, self.cfg.value) {
            (Payload::Tombstone, _) => None,
            (Payload::Text(t), _) => Some(t.clone().into_bytes()),
            (Payload::Envelope(e), Converter::Json { schemas }) => {
                let fields = e.after.as_ref().or(e.before.as_ref()).map(|r| &r.fields).or(e.fields.as_ref());
                let schema_of = fields.map(|f| (f, KIND_ENVELOPE, msg.topic.as_str(), Some(e)));
                let version = self.cfg.envelope;
                Some(self.wrap(schemas, schema_of, |o| write_envelope(o, e, binary, version)))
            }
            (Payload::Envelope(e), Converter::String) => {
                let mut out = Vec::with_capacity(2048);
                write_envelope(&mut out, e, binary, self.cfg.envelope);
                Some(out)
            }
            (Payload::Row(r), Converter::Json { schemas }) => {
                Some(self.wrap(schemas, Some((&r.fields, KIND_ROW, &msg.topic, None)), |o| write_row(o, r, binary)))
            }
            (Payload::Row(r), Converter::String) => {
                let mut out = Vec::new();
                write_row(&mut out, r, binary);
                Some(out)
            }
        };
        (key, value)
    }
}

/// Serialises one message (no schema cache; see [`JsonWriter`] for streams of messages).
pub fn serialize(msg: &Message, cfg: &ConverterConfig) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    JsonWriter::new(*cfg).serialize(msg)
}

/// Why a JSON string did not decode as the binary value it stands for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryTextError {
    #[error("not base64: {0}")]
    Base64(String),
    #[error("not hex: {0}")]
    Hex(String),
}

/// Decodes a JSON field holding binary data, as written by [`value_json`]: `schema_type`
/// is the field's Connect type when known (`bytes` = base64); otherwise hex is tried when
/// the text is all hex digits of even length and `expect_len` matches, then base64.
pub fn decode_binary(text: &str, schema_type: Option<&str>, expect_len: Option<usize>) -> Result<Vec<u8>, BinaryTextError> {
    let b64 = || base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| BinaryTextError::Base64(e.to_string()));
    let hexd = || hex::decode(text.strip_prefix("\\x").unwrap_or(text)).map_err(|e| BinaryTextError::Hex(e.to_string()));
    match schema_type {
        Some("bytes") => b64(),
        _ => {
            let t = text.strip_prefix("\\x").unwrap_or(text);
            let hex_like = t.len().is_multiple_of(2) && t.bytes().all(|c| c.is_ascii_hexdigit());
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
    use crate::FieldType;
    use crate::{Lsn, Op, Snapshot, Source};
    use serde_json::json;
    use std::sync::Arc;

    fn fields() -> Arc<Vec<Field>> {
        Arc::new(vec![Field::new("id", FieldType::Int32, false), Field::new("label", FieldType::Int16, true), Field::new("pixels", FieldType::Bytes, true)])
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
                ts_us: 1000,
                snapshot: Snapshot::False,
                db: "postgres".into(),
                schema: "public".into(),
                table: "mnist_train".into(),
                tx_id: Some(7),
                lsn: Some(Lsn(100)),
                last_commit_lsn: None,
            },
            ts_ms: 2,
            ts_ns: 2_000_000,
            key: Some(Row::new(Arc::new(vec![f[0].clone()]), vec![Value::Int32(1)])),
            fields: None,
            transaction: None,
        }
    }

    #[test]
    fn binary_modes() {
        let msg = Message::from_event(event(), None);
        for (mode, expect) in [(BinaryMode::Bytes, "AP8Q"), (BinaryMode::Base64, "AP8Q"), (BinaryMode::Hex, "00ff10"), (BinaryMode::Base64UrlSafe, "AP8Q")] {
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

    /// A decimal is written as Connect's JsonConverter writes a `BigDecimal`: base64 of the
    /// unscaled value's big-endian two's complement (12.34 at scale 2 is 1234 = 0x04D2,
    /// `BNI=`; -0.5 at scale 1 is -5 = 0xFB, `+w==`), and under Debezium's
    /// `VariableScaleDecimal` as its struct of `scale` and `value`; both writers agree.
    #[test]
    fn decimals_are_written_as_debezium_writes_them() {
        use num_bigint::BigInt;
        let fixed =
            Field::new("price", FieldType::Bytes, true).with_logical(crate::Logical::named("org.apache.kafka.connect.data.Decimal").param("scale", "2"));
        let variable = Field::new("ratio", FieldType::Struct, true).with_logical(crate::Logical::named("io.debezium.data.VariableScaleDecimal"));
        let cases = [
            (Value::Decimal { unscaled: BigInt::from(1234), scale: 2 }, &fixed, json!("BNI=")),
            (Value::Decimal { unscaled: BigInt::from(-5), scale: 1 }, &variable, json!({"scale": 1, "value": "+w=="})),
        ];
        for (v, f, want) in cases {
            assert_eq!(value_json_of(&v, Some(f), BinaryMode::Bytes), want);
            let mut out = Vec::new();
            write_value(&mut out, &v, Some(f), BinaryMode::Hex);
            assert_eq!(serde_json::from_slice::<J>(&out).unwrap(), want, "{}", String::from_utf8_lossy(&out));
        }
        assert_eq!(Value::decimal_f64(&BigInt::from(-5), 1), -0.5);
        // Wider than f64's exact integers: through the text, correctly rounded.
        let big: BigInt = "123456789012345678901234567890".parse().unwrap();
        assert_eq!(Value::decimal_f64(&big, 10), 12345678901234567890.123456789);
    }
}
