//! Debezium 2.x's mapping of Postgres types to Kafka Connect schemas and values
//! (`io.debezium.connector.postgresql.PostgresValueConverter` and
//! `io.debezium.jdbc.JdbcValueConverters`), with its settings `decimal.handling.mode`,
//! `time.precision.mode`, `interval.handling.mode` and `money.fraction.digits`.
//! `binary.handling.mode` is applied by the JSON converter (`tensorcdc_change::json`).

use num_bigint::BigInt;
use tensorcdc_change::{Field, FieldType, Logical, Value};

use super::datum::{decimal_string, naive_datetime, pg_time_text, Bits, Date, Datum, Numeric, Ts};
use super::{oids, Kind, PgType, ValueError};
use crate::SettingError;

/// `decimal.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalMode {
    /// `Decimal` bytes (`VariableScaleDecimal` for numeric without a scale).
    #[default]
    Precise,
    Double,
    String,
}

/// `time.precision.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimePrecisionMode {
    /// Milli- or microsecond types by the column's precision.
    #[default]
    Adaptive,
    /// As adaptive, but `time` is always `MicroTime`.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's own Date/Time/Timestamp (milliseconds).
    Connect,
}

/// `interval.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntervalMode {
    /// `io.debezium.time.MicroDuration` (int64 microseconds).
    #[default]
    Numeric,
    /// `io.debezium.time.Interval` (ISO 8601 text).
    String,
}

/// The type-mapping settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeSettings {
    pub decimal: DecimalMode,
    pub time: TimePrecisionMode,
    pub interval: IntervalMode,
    /// `money.fraction.digits` (default 2).
    pub money_fraction_digits: u32,
}

impl Default for TypeSettings {
    fn default() -> Self {
        TypeSettings { decimal: DecimalMode::Precise, time: TimePrecisionMode::Adaptive, interval: IntervalMode::Numeric, money_fraction_digits: 2 }
    }
}

impl TypeSettings {
    /// Applies one connector property; `Ok(false)` when the key is not a type setting.
    pub fn set(&mut self, key: &str, v: &str) -> Result<bool, SettingError> {
        match key {
            "decimal.handling.mode" => {
                self.decimal = match v {
                    "precise" => DecimalMode::Precise,
                    "double" => DecimalMode::Double,
                    "string" => DecimalMode::String,
                    o => return Err(SettingError::value(o, "precise, double or string")),
                }
            }
            "time.precision.mode" => {
                self.time = match v {
                    "adaptive" => TimePrecisionMode::Adaptive,
                    "adaptive_time_microseconds" => TimePrecisionMode::AdaptiveTimeMicroseconds,
                    "connect" => TimePrecisionMode::Connect,
                    o => return Err(SettingError::value(o, "adaptive, adaptive_time_microseconds or connect")),
                }
            }
            "interval.handling.mode" => {
                self.interval = match v {
                    "numeric" => IntervalMode::Numeric,
                    "string" => IntervalMode::String,
                    o => return Err(SettingError::value(o, "numeric or string")),
                }
            }
            "money.fraction.digits" => {
                self.money_fraction_digits = v.parse().ok().filter(|n| *n <= 20).ok_or_else(|| SettingError::value(v, "a number of digits (0 to 20)"))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Names of the semantic types.
mod names {
    pub const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
    pub const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";
    pub const BITS: &str = "io.debezium.data.Bits";
    pub const DATE: &str = "io.debezium.time.Date";
    pub const TIME: &str = "io.debezium.time.Time";
    pub const MICRO_TIME: &str = "io.debezium.time.MicroTime";
    pub const TIMESTAMP: &str = "io.debezium.time.Timestamp";
    pub const MICRO_TIMESTAMP: &str = "io.debezium.time.MicroTimestamp";
    pub const ZONED_TIMESTAMP: &str = "io.debezium.time.ZonedTimestamp";
    pub const ZONED_TIME: &str = "io.debezium.time.ZonedTime";
    pub const MICRO_DURATION: &str = "io.debezium.time.MicroDuration";
    pub const INTERVAL: &str = "io.debezium.time.Interval";
    pub const CONNECT_DATE: &str = "org.apache.kafka.connect.data.Date";
    pub const CONNECT_TIME: &str = "org.apache.kafka.connect.data.Time";
    pub const CONNECT_TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
    pub const UUID: &str = "io.debezium.data.Uuid";
    pub const JSON: &str = "io.debezium.data.Json";
    pub const XML: &str = "io.debezium.data.Xml";
    pub const ENUM: &str = "io.debezium.data.Enum";
    pub const POINT: &str = "io.debezium.data.geometry.Point";
}

/// The semantic kind a column's values take, from its type and the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    /// `Decimal` bytes at this scale.
    Decimal(u32),
    VariableScale,
    Double,
    Text,
    Millis,
    Micros,
}

fn time_repr(t: &PgType, s: &TypeSettings, is_time: bool) -> Repr {
    match s.time {
        TimePrecisionMode::Connect => Repr::Millis,
        TimePrecisionMode::AdaptiveTimeMicroseconds if is_time => Repr::Micros,
        _ if t.time_precision() <= 3 => Repr::Millis,
        _ => Repr::Micros,
    }
}

/// True when a column's values are Debezium's `VariableScaleDecimal` struct (a numeric without
/// a declared scale, in precise mode).
pub fn is_variable_scale(t: &PgType, s: &TypeSettings) -> bool {
    t.oid == oids::NUMERIC && decimal_repr(t, s) == Repr::VariableScale
}

fn decimal_repr(t: &PgType, s: &TypeSettings) -> Repr {
    match s.decimal {
        DecimalMode::Double => Repr::Double,
        DecimalMode::String => Repr::Text,
        DecimalMode::Precise if t.oid == oids::MONEY => Repr::Decimal(s.money_fraction_digits),
        DecimalMode::Precise => match t.numeric_precision_scale() {
            Some((_, scale)) => Repr::Decimal(scale),
            None => Repr::VariableScale,
        },
    }
}

fn variable_scale_fields() -> Vec<Field> {
    vec![Field::new("scale", FieldType::Int32, false), Field::new("value", FieldType::Bytes, false)]
}

/// The field schema of a column (its literal type, semantic name and parameters).
/// False for the types Debezium has no schema for, whose columns it leaves out of its
/// events (`PostgresValueConverter.schemaBuilder` returns null): arrays of money, name,
/// interval, varbit, xml and point.
pub fn supported(t: &PgType) -> bool {
    match &t.kind {
        Kind::Array(e) => !(e.kind == Kind::Builtin && [oids::MONEY, oids::NAME, oids::INTERVAL, oids::VARBIT, oids::XML, oids::POINT].contains(&e.oid)),
        _ => true,
    }
}

pub fn field(name: &str, t: &PgType, optional: bool, s: &TypeSettings) -> Field {
    let (ty, logical) = schema(t, s);
    let f = Field::new(name, ty, optional);
    match logical {
        Some(l) => f.with_logical(l),
        None => f,
    }
}

fn schema(t: &PgType, s: &TypeSettings) -> (FieldType, Option<Logical>) {
    use FieldType as F;
    match &t.kind {
        Kind::Enum(labels) => return (F::String, Some(Logical::named(names::ENUM).param("allowed", labels.join(",")))),
        Kind::Array(elem) => {
            // Debezium makes built-in element schemas optional, enum elements not.
            let item = field("", elem, !matches!(elem.kind, Kind::Enum(_)), s);
            return (F::Array, Some(Logical { items: Some(Box::new(item)), ..Default::default() }));
        }
        Kind::Range(_) | Kind::Other => return (F::String, None),
        Kind::Builtin => {}
    }
    let named = |ty, n: &str| (ty, Some(Logical::named(n)));
    match t.oid {
        oids::BOOL => (F::Boolean, None),
        oids::BIT | oids::VARBIT => match t.length() {
            Some(1) => (F::Boolean, None),
            len => (F::Bytes, Some(Logical::named(names::BITS).param("length", len.unwrap_or(i32::MAX as u32).to_string()))),
        },
        oids::INT2 => (F::Int16, None),
        oids::INT4 => (F::Int32, None),
        oids::INT8 | oids::OID => (F::Int64, None),
        oids::FLOAT4 => (F::Float32, None),
        oids::FLOAT8 => (F::Float64, None),
        oids::NUMERIC | oids::MONEY => match decimal_repr(t, s) {
            Repr::Decimal(scale) => {
                let mut l = Logical::named(names::DECIMAL).param("scale", scale.to_string());
                if let Some((p, _)) = t.numeric_precision_scale() {
                    l = l.param("connect.decimal.precision", p.to_string());
                }
                (F::Bytes, Some(l))
            }
            Repr::VariableScale => (
                F::Struct,
                Some(Logical { fields: variable_scale_fields(), doc: Some("Variable scaled decimal".into()), ..Logical::named(names::VARIABLE_SCALE_DECIMAL) }),
            ),
            Repr::Double => (F::Float64, None),
            _ => (F::String, None),
        },
        oids::BYTEA => (F::Bytes, None),
        oids::DATE => named(F::Int32, if s.time == TimePrecisionMode::Connect { names::CONNECT_DATE } else { names::DATE }),
        oids::TIME => match (time_repr(t, s, true), s.time) {
            (_, TimePrecisionMode::Connect) => named(F::Int32, names::CONNECT_TIME),
            (Repr::Millis, _) => named(F::Int32, names::TIME),
            _ => named(F::Int64, names::MICRO_TIME),
        },
        oids::TIMESTAMP => match (time_repr(t, s, false), s.time) {
            (_, TimePrecisionMode::Connect) => named(F::Int64, names::CONNECT_TIMESTAMP),
            (Repr::Millis, _) => named(F::Int64, names::TIMESTAMP),
            _ => named(F::Int64, names::MICRO_TIMESTAMP),
        },
        oids::TIMESTAMPTZ => named(F::String, names::ZONED_TIMESTAMP),
        oids::TIMETZ => named(F::String, names::ZONED_TIME),
        oids::INTERVAL => match s.interval {
            IntervalMode::Numeric => named(F::Int64, names::MICRO_DURATION),
            IntervalMode::String => named(F::String, names::INTERVAL),
        },
        oids::UUID => named(F::String, names::UUID),
        oids::JSON | oids::JSONB => named(F::String, names::JSON),
        oids::XML => named(F::String, names::XML),
        oids::POINT => {
            let fields = vec![
                Field::new("x", F::Float64, false),
                Field::new("y", F::Float64, false),
                Field::new("wkb", F::Bytes, true),
                Field::new("srid", F::Int32, true),
            ];
            (F::Struct, Some(Logical { fields, doc: Some("Geometry (POINT)".into()), ..Logical::named(names::POINT) }))
        }
        _ => (F::String, None),
    }
}

/// `io.debezium.time.ZonedTimestamp`: ISO 8601 in UTC with exactly the column's precision
/// of fractional digits (`2016-11-04T11:51:30.123456Z`, `…30.120Z` for `timestamptz(3)`).
fn zoned_timestamp(t: Ts, precision: u32) -> Value {
    match t {
        Ts::PosInf => Value::String("infinity".into()),
        Ts::NegInf => Value::String("-infinity".into()),
        Ts::Micros(us) => match naive_datetime(us) {
            Some(dt) => {
                let day_us = us.rem_euclid(86_400_000_000);
                let secs = day_us / 1_000_000;
                let mut out = format!("{}T{:02}:{:02}:{:02}", iso_date(dt.date()), secs / 3600, secs / 60 % 60, secs % 60);
                let p = precision.min(6) as usize;
                if p > 0 {
                    out.push('.');
                    out.push_str(&format!("{:06}", day_us % 1_000_000)[..p]);
                }
                out.push('Z');
                Value::String(out)
            }
            // Beyond chrono's calendar (year 262142): Postgres' own text rather than nothing.
            None => Value::String(super::datum::pg_timestamp_text(t, true)),
        },
    }
}

/// `YYYY-MM-DD` as Java's ISO formatter writes it (year 0 = 1 BC, negative before; `+` above 9999).
fn iso_date(d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    let y = d.year();
    let year = if y > 9999 {
        format!("+{y}")
    } else if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    format!("{year}-{:02}-{:02}", d.month(), d.day())
}

/// `io.debezium.time.Interval`: ISO 8601 `PnYnMnDTnHnMnS`.
fn interval_string(months: i32, days: i32, micros: i64) -> String {
    let (y, m) = (months / 12, months % 12);
    let (h, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
    let (mi, rest) = (rest / 60_000_000, rest % 60_000_000);
    // `BigDecimal.valueOf(seconds).stripTrailingZeros().toPlainString()`.
    let secs = decimal_string(&BigInt::from(rest), 6);
    let secs = secs.trim_end_matches('0').trim_end_matches('.');
    let secs = if secs == "-0" { "0" } else { secs };
    format!("P{y}Y{m}M{days}DT{h}H{mi}M{secs}S")
}

/// `io.debezium.time.MicroDuration`: `MicroDuration.durationMicros` with 365.25/12 days a
/// month, in the same double arithmetic and truncation as Debezium.
fn micro_duration(months: i32, days: i32, micros: i64) -> i64 {
    let (h, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
    let (mi, rest) = (rest / 60_000_000, rest % 60_000_000);
    let seconds = (rest / 1_000_000) as f64 + (rest % 1_000_000) as f64 / 1e6;
    let number_of_days = months as f64 * (365.25 / 12.0) + days as f64;
    let number_of_seconds = ((number_of_days * 24.0 + h as f64) * 60.0 + mi as f64) * 60.0 + seconds;
    (number_of_seconds * 1e6) as i64
}

/// Bits as Debezium writes them (`PostgresValueConverter.convertBits`): bit i counted from
/// the right set in a `BitSet`, written little-endian.
fn bits_bytes(b: &Bits) -> Vec<u8> {
    // Postgres sends the bits first-character-first, high bit first; bit j counted from the
    // right (the last character) goes to byte j / 8, bit j % 8.
    let mut out = vec![0u8; b.len.div_ceil(8)];
    for j in 0..b.len {
        let i = b.len - 1 - j;
        if (b.bytes[i / 8] >> (7 - i % 8)) & 1 == 1 {
            out[j / 8] |= 1 << (j % 8);
        }
    }
    // `BitSet.toByteArray()`: as many bytes as the highest set bit needs (none for zero).
    while out.last() == Some(&0) {
        out.pop();
    }
    out
}

fn point_wkb(x: f64, y: f64) -> Vec<u8> {
    let mut w = vec![1u8];
    w.extend_from_slice(&1u32.to_le_bytes());
    w.extend_from_slice(&x.to_le_bytes());
    w.extend_from_slice(&y.to_le_bytes());
    w
}

fn numeric_value(t: &PgType, n: Numeric, s: &TypeSettings) -> Result<Value, ValueError> {
    let column_scale = if t.oid == oids::MONEY { Some(s.money_fraction_digits) } else { t.numeric_precision_scale().map(|p| p.1) };
    Ok(match (decimal_repr(t, s), n) {
        (Repr::Double, Numeric::NaN) => Value::Float64(f64::NAN),
        (Repr::Double, Numeric::PosInf) => Value::Float64(f64::INFINITY),
        (Repr::Double, Numeric::NegInf) => Value::Float64(f64::NEG_INFINITY),
        (Repr::Double, Numeric::Finite { unscaled, scale }) => Value::Float64(decimal_string(&unscaled, scale).parse().unwrap_or(f64::NAN)),
        // `SpecialValueDecimal`'s enum names, as Debezium writes them in string mode.
        (Repr::Text, Numeric::NaN) => Value::String("NAN".into()),
        (Repr::Text, Numeric::PosInf) => Value::String("POSITIVE_INFINITY".into()),
        (Repr::Text, Numeric::NegInf) => Value::String("NEGATIVE_INFINITY".into()),
        (Repr::Text, Numeric::Finite { unscaled, scale }) => match column_scale {
            Some(to) => Value::String(decimal_string(&Numeric::rescaled(&unscaled, scale, to), to)),
            None => Value::String(decimal_string(&unscaled, scale)),
        },
        (_, Numeric::NaN | Numeric::PosInf | Numeric::NegInf) => return Err(ValueError::SpecialDecimal { ty: t.name.clone() }),
        (Repr::Decimal(to), Numeric::Finite { unscaled, scale }) => Value::Decimal { unscaled: Numeric::rescaled(&unscaled, scale, to), scale: to },
        (_, Numeric::Finite { mut unscaled, mut scale }) => {
            // `stripTrailingZeros()`, never below scale 0.
            let ten = BigInt::from(10);
            while scale > 0 && &unscaled % &ten == BigInt::from(0) {
                unscaled /= &ten;
                scale -= 1;
            }
            Value::Decimal { unscaled, scale }
        }
    })
}

/// The value Debezium writes for a datum of type `t`; an error for a value Debezium
/// refuses (NaN numeric in precise mode).
pub fn value(t: &PgType, d: Datum, s: &TypeSettings) -> Result<Value, ValueError> {
    Ok(match d {
        Datum::Null => Value::Null,
        Datum::Bool(b) => Value::Boolean(b),
        Datum::Int2(v) => Value::Int16(v),
        Datum::Int4(v) => Value::Int32(v),
        Datum::Int8(v) => Value::Int64(v),
        Datum::Float4(v) => Value::Float32(v),
        Datum::Float8(v) => Value::Float64(v),
        Datum::Numeric(n) => numeric_value(t, n, s)?,
        Datum::Money(cents) => numeric_value(t, Numeric::Finite { unscaled: BigInt::from(cents), scale: 2 }, s)?,
        Datum::Text(x) => Value::String(x),
        Datum::Bytes(b) => Value::Bytes(b),
        Datum::Bits(b) if t.length() == Some(1) => Value::Boolean(b.bytes.first().is_some_and(|x| x & 0x80 != 0)),
        Datum::Bits(b) => Value::Bytes(bits_bytes(&b)),
        Datum::Date(Date::Days(n)) => Value::Int32(n),
        // Debezium streams infinite dates as `LocalDate`s -5877611-06-21 and -06-22
        // (`PostgresValueConverter` POSITIVE_INFINITY_LOCAL_DATE / NEGATIVE_…).
        Datum::Date(Date::PosInf) => Value::Int32(-2_147_472_692),
        Datum::Date(Date::NegInf) => Value::Int32(-2_147_472_691),
        Datum::Time(us) => match time_repr(t, s, true) {
            Repr::Millis => Value::Int32((us / 1000) as i32),
            _ => Value::Int64(us),
        },
        Datum::TimeTz(us, off) => {
            let utc = (us - off as i64 * 1_000_000).rem_euclid(86_400_000_000);
            Value::String(format!("{}Z", pg_time_text(utc)))
        }
        Datum::Timestamp(ts) => {
            // Infinity is pgjdbc's `PGStatement.DATE_POSITIVE_INFINITY` read as microseconds.
            let us = match ts {
                Ts::Micros(us) => us,
                Ts::PosInf => 9_223_372_036_825_200_000,
                Ts::NegInf => -9_223_372_036_832_400_000,
            };
            match time_repr(t, s, false) {
                Repr::Millis => Value::Int64(us.div_euclid(1000)),
                _ => Value::Int64(us),
            }
        }
        Datum::TimestampTz(ts) => zoned_timestamp(ts, t.time_precision()),
        Datum::Interval { months, days, micros } => match s.interval {
            IntervalMode::Numeric => Value::Int64(micro_duration(months, days, micros)),
            IntervalMode::String => Value::String(interval_string(months, days, micros)),
        },
        Datum::Uuid(u) => Value::String(format!(
            "{}-{}-{}-{}-{}",
            hex::encode(&u[..4]),
            hex::encode(&u[4..6]),
            hex::encode(&u[6..8]),
            hex::encode(&u[8..10]),
            hex::encode(&u[10..])
        )),
        Datum::Point(x, y) => Value::Struct(vec![Value::Float64(x), Value::Float64(y), Value::Bytes(point_wkb(x, y)), Value::Null]),
        Datum::Array(items) => {
            let elem = match &t.kind {
                Kind::Array(e) => e.as_ref().clone(),
                _ => t.clone(),
            };
            Value::Array(items.into_iter().map(|x| value(&elem, x, s)).collect::<Result<_, _>>()?)
        }
    })
}
