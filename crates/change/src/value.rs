//! Typed values and rows that carry their schema.

use std::sync::Arc;

/// The Kafka Connect type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
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
        }
    }

    pub fn from_connect_name(s: &str) -> Option<Self> {
        Some(match s {
            "boolean" => FieldType::Boolean,
            "int8" | "int16" => FieldType::Int16,
            "int32" => FieldType::Int32,
            "int64" => FieldType::Int64,
            "float" => FieldType::Float32,
            "double" => FieldType::Float64,
            "string" => FieldType::String,
            "bytes" => FieldType::Bytes,
            _ => return None,
        })
    }
}

/// One column of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub optional: bool,
}

impl Field {
    pub fn new(name: impl Into<String>, ty: FieldType, optional: bool) -> Self {
        Field { name: name.into(), ty, optional }
    }
}

/// A value of a column. Types Postgres has and Kafka Connect lacks (numeric, dates, json,
/// arrays...) travel as their text form in `String`.
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
    /// A TOASTed value that did not change and was not sent by Postgres (Debezium writes
    /// the placeholder `__debezium_unavailable_value`).
    Unchanged,
}

impl Value {
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
