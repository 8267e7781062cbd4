//! Column types and values. A column's [`PgType`] is resolved once from the catalog
//! (domains to their base type, enums with their labels, arrays with their element type);
//! its values are decoded from text ([`text`]) or binary ([`binary`]) forms into the same
//! [`datum::Datum`], which [`debezium`] turns into the field schema and value Debezium
//! writes. Types without a binary decoder ([`PgType::binary_supported`]) are read as text:
//! the snapshot casts them with `::text`, the stream falls back to text tuples.

pub mod binary;
pub mod datum;
pub mod debezium;
pub mod defaults;
pub mod error;
pub mod text;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tensorcdc_change::Value;
use tokio_postgres::Client;

pub use debezium::{DecimalMode, IntervalMode, TimePrecisionMode, TypeSettings};
pub use error::ValueError;

use crate::pgoutput::TupleValue;

/// Type OIDs of the built-in types tensorcdc decodes (`pg_type.dat`).
pub mod oids {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const POINT: u32 = 600;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const MACADDR8: u32 = 774;
    pub const MONEY: u32 = 790;
    pub const MACADDR: u32 = 829;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const BIT: u32 = 1560;
    pub const VARBIT: u32 = 1562;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    pub const INT4RANGE: u32 = 3904;
    pub const NUMRANGE: u32 = 3906;
    pub const TSRANGE: u32 = 3908;
    pub const TSTZRANGE: u32 = 3910;
    pub const DATERANGE: u32 = 3912;
    pub const INT8RANGE: u32 = 3926;

    pub const BUILTIN: &[u32] = &[
        BOOL,
        BYTEA,
        NAME,
        INT8,
        INT2,
        INT4,
        TEXT,
        OID,
        JSON,
        XML,
        POINT,
        CIDR,
        FLOAT4,
        FLOAT8,
        MACADDR8,
        MONEY,
        MACADDR,
        INET,
        BPCHAR,
        VARCHAR,
        DATE,
        TIME,
        TIMESTAMP,
        TIMESTAMPTZ,
        INTERVAL,
        TIMETZ,
        BIT,
        VARBIT,
        NUMERIC,
        UUID,
        JSONB,
    ];

    /// The element type of a built-in range type.
    pub fn range_element(oid: u32) -> Option<u32> {
        Some(match oid {
            INT4RANGE => INT4,
            INT8RANGE => INT8,
            NUMRANGE => NUMERIC,
            TSRANGE => TIMESTAMP,
            TSTZRANGE => TIMESTAMPTZ,
            DATERANGE => DATE,
            _ => return None,
        })
    }
}

/// What kind of type a column has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A built-in type in [`oids::BUILTIN`].
    Builtin,
    /// A user-defined enum and its labels in sort order.
    Enum(Arc<Vec<String>>),
    /// A one-dimensional (or flattened) array of the element type.
    Array(Box<PgType>),
    /// A built-in range of the element type (carried as its text form).
    Range(Box<PgType>),
    /// Anything else (extension types, composites): its text form.
    Other,
}

/// A column's type, domains resolved to their base type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    /// The base type's OID (the domain's base for a domain).
    pub oid: u32,
    /// The type modifier (`numeric(10,2)`, `time(3)`, `bit(8)`, `varchar(20)`), -1 if none.
    pub typmod: i32,
    pub kind: Kind,
    /// The type's name (for messages).
    pub name: String,
}

impl PgType {
    /// A built-in type, without a catalog lookup (tests, and the fast path for built-ins).
    pub fn builtin(oid: u32, typmod: i32) -> Self {
        let kind = match oids::range_element(oid) {
            Some(e) => Kind::Range(Box::new(PgType::builtin(e, -1))),
            None if oids::BUILTIN.contains(&oid) => Kind::Builtin,
            None => Kind::Other,
        };
        PgType { oid, typmod, kind, name: format!("oid {oid}") }
    }

    /// True when its binary form is decoded (else it is read as text).
    pub fn binary_supported(&self) -> bool {
        match &self.kind {
            Kind::Builtin | Kind::Enum(_) => true,
            Kind::Array(e) | Kind::Range(e) => e.binary_supported(),
            Kind::Other => false,
        }
    }

    /// `numeric(p, s)`: (precision, scale) from the type modifier.
    pub fn numeric_precision_scale(&self) -> Option<(u32, u32)> {
        (self.typmod >= 4).then(|| {
            let m = (self.typmod - 4) as u32;
            ((m >> 16) & 0xffff, m & 0x7ff)
        })
    }

    /// `time(p)`, `timestamp(p)`: fractional digits (6 when not given).
    pub fn time_precision(&self) -> u32 {
        if self.typmod >= 0 {
            self.typmod as u32
        } else {
            6
        }
    }

    /// `bit(n)`, `varbit(n)`, `char(n)`, `varchar(n)`: the declared length.
    pub fn length(&self) -> Option<u32> {
        match self.oid {
            oids::BIT | oids::VARBIT => (self.typmod >= 0).then_some(self.typmod as u32),
            oids::BPCHAR | oids::VARCHAR => (self.typmod >= 4).then(|| (self.typmod - 4) as u32),
            _ => None,
        }
    }
}

/// Resolves type OIDs through the catalog, once per (oid, typmod).
#[derive(Debug, Default)]
pub struct TypeCache {
    types: HashMap<(u32, i32), PgType>,
}

impl TypeCache {
    /// The type of a column with type `oid` and modifier `typmod`.
    pub async fn resolve(&mut self, client: &Client, oid: u32, typmod: i32) -> Result<PgType, tokio_postgres::Error> {
        if let Some(t) = self.types.get(&(oid, typmod)) {
            return Ok(t.clone());
        }
        let t = Box::pin(self.lookup(client, oid, typmod)).await?;
        self.types.insert((oid, typmod), t.clone());
        Ok(t)
    }

    async fn lookup(&mut self, client: &Client, oid: u32, typmod: i32) -> Result<PgType, tokio_postgres::Error> {
        let mut t = PgType::builtin(oid, typmod);
        if t.kind != Kind::Other {
            return Ok(t);
        }
        let rows = client
            .query(
                "SELECT t.typname::text, t.typtype::text, t.typbasetype, t.typtypmod, t.typelem, t.typcategory::text, t.typlen::int4, \
                 ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) \
                 FROM pg_type t WHERE t.oid = $1",
                &[&oid],
            )
            .await?;
        let Some(r) = rows.first() else { return Ok(t) };
        t.name = r.get(0);
        let (typtype, base, base_mod, elem, category, len): (String, u32, i32, u32, String, i32) = (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6));
        match typtype.as_str() {
            "d" => return self.resolve(client, base, if typmod >= 0 { typmod } else { base_mod }).await,
            "e" => t.kind = Kind::Enum(Arc::new(r.get(7))),
            _ if category == "A" && elem != 0 && len == -1 => t.kind = Kind::Array(Box::new(self.resolve(client, elem, typmod).await?)),
            _ => {}
        }
        Ok(t)
    }
}

/// Decodes a pgoutput tuple column.
pub fn from_tuple(t: &PgType, v: &TupleValue, s: &TypeSettings) -> Result<Value, ValueError> {
    let d = match v {
        TupleValue::Null => return Ok(Value::Null),
        TupleValue::Unchanged => return Ok(Value::Unchanged),
        TupleValue::Text(b) => text::decode(t, std::str::from_utf8(b).map_err(|e| ValueError::Utf8 { what: t.name.clone(), detail: e.to_string() })?)?,
        TupleValue::Binary(b) => binary::decode(t, b)?,
    };
    debezium::value(t, d, s)
}

/// Decodes a binary COPY field of the snapshot (a type without binary decoder was selected
/// as `::text`, and arrives as its text).
pub fn from_copy(t: &PgType, v: Option<Bytes>, s: &TypeSettings) -> Result<Value, ValueError> {
    let Some(b) = v else { return Ok(Value::Null) };
    let d = if t.binary_supported() {
        binary::decode(t, &b)?
    } else {
        text::decode(t, std::str::from_utf8(&b).map_err(|e| ValueError::Utf8 { what: t.name.clone(), detail: e.to_string() })?)?
    };
    debezium::value(t, d, s)
}

/// The session settings under which text forms are read (startup `options`).
pub const SESSION_OPTIONS: &str = "-c DateStyle=ISO -c IntervalStyle=iso_8601 -c TimeZone=UTC -c extra_float_digits=3 -c lc_monetary=C -c bytea_output=hex";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_agree_on_builtins() {
        let s = TypeSettings::default();
        let cases: Vec<(u32, i32, &str, Vec<u8>)> = vec![
            (oids::INT2, -1, "5", 5i16.to_be_bytes().to_vec()),
            (oids::INT8, -1, "-3", (-3i64).to_be_bytes().to_vec()),
            (oids::FLOAT8, -1, "NaN", f64::NAN.to_be_bytes().to_vec()),
            (oids::DATE, -1, "2000-01-02", 1i32.to_be_bytes().to_vec()),
            (oids::TIMESTAMP, -1, "2000-01-01 00:00:00.000001", 1i64.to_be_bytes().to_vec()),
            (oids::UUID, -1, "00010203-0405-0607-0809-0a0b0c0d0e0f", (0u8..16).collect()),
            (oids::VARBIT, -1, "101", [&3i32.to_be_bytes()[..], &[0b1010_0000]].concat()),
        ];
        for (oid, typmod, txt, bin) in cases {
            let t = PgType::builtin(oid, typmod);
            let a = from_tuple(&t, &TupleValue::Text(Bytes::copy_from_slice(txt.as_bytes())), &s).unwrap();
            let b = from_tuple(&t, &TupleValue::Binary(Bytes::from(bin)), &s).unwrap();
            // NaN != NaN: compare the debug forms.
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "oid {oid}: {txt}");
        }
        let int4 = PgType::builtin(oids::INT4, -1);
        assert!(from_tuple(&int4, &TupleValue::Binary(Bytes::from_static(&[0, 1])), &s).unwrap_err().to_string().contains("expected 4 bytes"));
        assert!(from_tuple(&int4, &TupleValue::Text(Bytes::from_static(b"x")), &s).is_err());
        let ext = PgType { oid: 99999, typmod: -1, kind: Kind::Other, name: "hstore".into() };
        assert!(!ext.binary_supported());
        assert_eq!(from_tuple(&ext, &TupleValue::Text(Bytes::from_static(b"\"a\"=>\"1\"")), &s).unwrap(), Value::String("\"a\"=>\"1\"".into()));
        assert!(from_tuple(&ext, &TupleValue::Binary(Bytes::from_static(b"\0\0")), &s).unwrap_err().to_string().contains("no binary decoder"));
    }
}
