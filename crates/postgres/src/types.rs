//! Column values by type OID, from pgoutput's text or binary tuples and binary COPY.
//! Types without a Kafka Connect equivalent keep their text form (binary mode: known
//! types only; others are sent as text by asking the server for text when needed).

use bytes::Bytes;
use tensorcdc_change::{FieldType, Value};

use crate::pgoutput::TupleValue;

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const VARCHAR: u32 = 1043;
pub const BPCHAR: u32 = 1042;
pub const NAME: u32 = 19;

/// The Connect type a Postgres type maps to.
pub fn field_type(oid: u32) -> FieldType {
    match oid {
        BOOL => FieldType::Boolean,
        BYTEA => FieldType::Bytes,
        INT2 => FieldType::Int16,
        INT4 => FieldType::Int32,
        INT8 | OID => FieldType::Int64,
        FLOAT4 => FieldType::Float32,
        FLOAT8 => FieldType::Float64,
        _ => FieldType::String,
    }
}

/// True when tensorcdc decodes this type's binary form (otherwise ask for text).
pub fn binary_supported(oid: u32) -> bool {
    matches!(oid, BOOL | BYTEA | INT2 | INT4 | INT8 | OID | FLOAT4 | FLOAT8 | TEXT | VARCHAR | BPCHAR | NAME)
}

fn bad(oid: u32, what: &str, got: &[u8]) -> String {
    format!("type oid {oid}: {what} (got {} bytes)", got.len())
}

/// Decodes a binary value.
pub fn from_binary(oid: u32, b: &[u8]) -> Result<Value, String> {
    let fixed = |n: usize| -> Result<(), String> { if b.len() == n { Ok(()) } else { Err(bad(oid, &format!("expected {n} bytes"), b)) } };
    Ok(match oid {
        BOOL => {
            fixed(1)?;
            Value::Boolean(b[0] != 0)
        }
        BYTEA => Value::Bytes(b.to_vec()),
        INT2 => {
            fixed(2)?;
            Value::Int16(i16::from_be_bytes([b[0], b[1]]))
        }
        INT4 => {
            fixed(4)?;
            Value::Int32(i32::from_be_bytes(b.try_into().expect("4 bytes")))
        }
        OID => {
            fixed(4)?;
            Value::Int64(u32::from_be_bytes(b.try_into().expect("4 bytes")) as i64)
        }
        INT8 => {
            fixed(8)?;
            Value::Int64(i64::from_be_bytes(b.try_into().expect("8 bytes")))
        }
        FLOAT4 => {
            fixed(4)?;
            Value::Float32(f32::from_be_bytes(b.try_into().expect("4 bytes")))
        }
        FLOAT8 => {
            fixed(8)?;
            Value::Float64(f64::from_be_bytes(b.try_into().expect("8 bytes")))
        }
        _ => Value::String(String::from_utf8_lossy(b).into_owned()),
    })
}

/// Decodes a text value.
pub fn from_text(oid: u32, b: &[u8]) -> Result<Value, String> {
    let s = std::str::from_utf8(b).map_err(|e| format!("type oid {oid}: invalid UTF-8: {e}"))?;
    let num = |what: &str| format!("type oid {oid}: {s:?} is not {what}");
    Ok(match oid {
        BOOL => Value::Boolean(s == "t"),
        BYTEA => {
            let h = s.strip_prefix("\\x").ok_or_else(|| format!("bytea text {s:.20?} is not in hex format"))?;
            Value::Bytes(hex::decode(h).map_err(|e| format!("bytea hex: {e}"))?)
        }
        INT2 => Value::Int16(s.parse().map_err(|_| num("an int2"))?),
        INT4 => Value::Int32(s.parse().map_err(|_| num("an int4"))?),
        INT8 | OID => Value::Int64(s.parse().map_err(|_| num("an int8"))?),
        FLOAT4 => Value::Float32(s.parse().map_err(|_| num("a float4"))?),
        FLOAT8 => Value::Float64(s.parse().map_err(|_| num("a float8"))?),
        _ => Value::String(s.to_string()),
    })
}

/// Decodes a pgoutput tuple column.
pub fn from_tuple(oid: u32, v: &TupleValue) -> Result<Value, String> {
    match v {
        TupleValue::Null => Ok(Value::Null),
        TupleValue::Unchanged => Ok(Value::Unchanged),
        TupleValue::Text(b) => from_text(oid, b),
        TupleValue::Binary(b) => from_binary(oid, b),
    }
}

/// Decodes an optional binary COPY field.
pub fn from_copy(oid: u32, v: Option<Bytes>) -> Result<Value, String> {
    match v {
        None => Ok(Value::Null),
        Some(b) => from_binary(oid, &b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn text_and_binary_agree() {
        assert_eq!(from_text(INT2, b"5").unwrap(), from_binary(INT2, &5i16.to_be_bytes()).unwrap());
        assert_eq!(from_text(BYTEA, b"\\x00ff").unwrap(), Value::Bytes(vec![0, 255]));
        assert_eq!(from_binary(INT8, &(-3i64).to_be_bytes()).unwrap(), Value::Int64(-3));
        assert!(from_binary(INT4, &[0, 1]).unwrap_err().contains("expected 4 bytes"));
        assert!(from_text(INT4, b"x").is_err());
        assert_eq!(from_text(1700, b"1.50").unwrap(), Value::String("1.50".into()));
    }
}
