//! Typed values and rows that carry their schema.
//!
//! A [`Field`] is a Kafka Connect field schema: a literal [`FieldType`], whether it is
//! optional, and for Debezium's semantic types a [`Logical`] part (schema `name`,
//! `version`, `parameters`, and the element or field schemas of arrays and structs).

use std::sync::Arc;

/// The Kafka Connect literal type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    /// Elements described by [`Logical::items`].
    Array,
    /// Fields described by [`Logical::fields`].
    Struct,
}

impl FieldType {
    /// The Kafka Connect schema type name (`int16`, `bytes`, ...).
    pub fn connect_name(self) -> &'static str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Int16 => "int16",
            FieldType::Int32 => "int32",
            FieldType::Int64 => "int64",
            FieldType::Float32 => "float",
            FieldType::Float64 => "double",
            FieldType::String => "string",
            FieldType::Bytes => "bytes",
            FieldType::Array => "array",
            FieldType::Struct => "struct",
        }
    }
}

/// The semantic part of a schema (Debezium's `io.debezium.time.Date`, Kafka Connect's
/// `Decimal`, ...), and the inner schemas of arrays and structs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Logical {
    /// The schema `name` (`org.apache.kafka.connect.data.Decimal`, ...).
    pub name: Option<String>,
    pub version: Option<i32>,
    /// The schema `doc`.
    pub doc: Option<String>,
    /// The schema `parameters`, in order.
    pub params: Vec<(String, String)>,
    /// The element schema of an array (its `name` is unused).
    pub items: Option<Box<Field>>,
    /// The fields of a struct.
    pub fields: Vec<Field>,
    /// The column's default as the JSON the converter writes for it (the schema's
    /// `default`), when Debezium would give one.
    pub default: Option<String>,
}

impl Logical {
    /// A semantic name with version 1, as Debezium's builders write it.
    pub fn named(name: &str) -> Self {
        Logical { name: Some(name.into()), version: Some(1), ..Default::default() }
    }

    pub fn param(mut self, key: &str, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// The value of parameter `key`.
    pub fn get_param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// One column of a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub optional: bool,
    /// Semantic name, parameters and inner schemas; `None` for a plain literal type.
    pub logical: Option<Arc<Logical>>,
}

impl Field {
    pub fn new(name: impl Into<String>, ty: FieldType, optional: bool) -> Self {
        Field { name: name.into(), ty, optional, logical: None }
    }

    pub fn with_logical(mut self, logical: Logical) -> Self {
        self.logical = Some(Arc::new(logical));
        self
    }

    /// The field with a `default` in its schema (`json`: the value as the converter writes it).
    pub fn with_default_json(mut self, json: String) -> Self {
        let mut l = self.logical.as_deref().cloned().unwrap_or_default();
        l.default = Some(json);
        self.logical = Some(Arc::new(l));
        self
    }

    /// The schema's semantic name, if any.
    pub fn semantic(&self) -> Option<&str> {
        self.logical.as_ref().and_then(|l| l.name.as_deref())
    }
}

/// A value of a column, as Kafka Connect holds it: Debezium's semantic types are their
/// literal values (a `Date` its int32 days, ...), except decimals, which are held as the
/// number they are ([`Value::Decimal`], as Connect's `Struct` holds a `BigDecimal`); the
/// converters write Debezium's forms of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bytes(Vec<u8>),
    /// `unscaled` x 10^-`scale`: Connect's `Decimal` (written as the unscaled big-endian
    /// two's-complement bytes) or, under a field named `io.debezium.data.VariableScaleDecimal`,
    /// Debezium's struct of `scale` and `value`.
    Decimal {
        unscaled: num_bigint::BigInt,
        scale: u32,
    },
    Array(Vec<Value>),
    /// Values of a struct's fields, in the order of its schema's fields.
    Struct(Vec<Value>),
    /// A TOASTed value that did not change and was not sent by Postgres (Debezium writes
    /// the placeholder `__debezium_unavailable_value`).
    Unchanged,
}

impl Value {
    /// A decimal's unscaled bytes as Connect's `Decimal.fromLogical` writes them (Java's
    /// `BigInteger.toByteArray`: big-endian two's complement, shortest form).
    pub fn decimal_bytes(unscaled: &num_bigint::BigInt) -> Vec<u8> {
        unscaled.to_signed_bytes_be()
    }

    /// A decimal, `unscaled` x 10^-`scale`, as the nearest `f64`. Both ways a decimal reaches
    /// a feature (this value in-process, its Debezium bytes through Kafka:
    /// [`Value::decimal_bytes_f64`]) round here, so a row gives the same number from either.
    pub fn decimal_f64(unscaled: &num_bigint::BigInt, scale: i32) -> f64 {
        use num_traits::ToPrimitive;
        match unscaled.to_f64() {
            // Exact while both are exact (integers up to 2^53, powers of ten up to 10^22).
            Some(u) if u.abs() < 9.0e15 && (0..=22).contains(&scale) => u / 10f64.powi(scale),
            // Otherwise through the text, which Rust's parser rounds correctly.
            _ => {
                let digits = unscaled.magnitude().to_string();
                let sign = if unscaled.sign() == num_bigint::Sign::Minus { "-" } else { "" };
                format!("{sign}{digits}e{}", -i64::from(scale)).parse().unwrap_or(f64::NAN)
            }
        }
    }

    /// Connect's `Decimal` bytes (big-endian two's complement) at `scale`, as the nearest `f64`.
    pub fn decimal_bytes_f64(bytes: &[u8], scale: i32) -> f64 {
        Value::decimal_f64(&num_bigint::BigInt::from_signed_bytes_be(bytes), scale)
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int16(v) => Some(v as i64),
            Value::Int32(v) => Some(v as i64),
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }
}

/// A row: field definitions (shared between rows of one table) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub fields: Arc<Vec<Field>>,
    pub values: Vec<Value>,
}

impl Row {
    pub fn new(fields: Arc<Vec<Field>>, values: Vec<Value>) -> Self {
        debug_assert_eq!(fields.len(), values.len());
        Row { fields, values }
    }

    /// The value of the field called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().position(|f| f.name == name).map(|i| &self.values[i])
    }
}
