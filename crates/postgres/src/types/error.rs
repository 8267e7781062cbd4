//! Why a column value could not be read: its bytes or its text do not hold a value of its
//! type, or Debezium's mapping refuses it. The capture wraps it with the table, the column and
//! the LSN or snapshot it came from (`CaptureError::Protocol`).

/// A value of type `what` (a type's name, or the part of a binary form being read) that did
/// not decode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// A binary form ended before a field it announces.
    #[error("{what}: expected {want} more bytes, got {got}")]
    Short { what: String, want: usize, got: usize },
    /// A binary form has bytes after its last field.
    #[error("{what}: {left} bytes left over")]
    LeftOver { what: String, left: usize },
    /// A fixed-size binary form of the wrong size.
    #[error("{what}: expected {want} bytes, got {got}")]
    Length { what: String, want: usize, got: usize },
    #[error("{what}: invalid UTF-8: {detail}")]
    Utf8 { what: String, detail: String },
    /// A text form that is not one of the type's (the text cut to 60 characters).
    #[error("type {ty}: {text:?} is not {expected}")]
    Text { ty: String, text: String, expected: &'static str },
    /// A type only known by name (an extension's) sent in binary.
    #[error("type {ty} (oid {oid}) has no binary decoder")]
    NoBinaryDecoder { ty: String, oid: u32 },
    /// A value the binary form holds but Rust's or Debezium's types cannot.
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
    /// NaN or infinity in a numeric column under `decimal.handling.mode=precise`.
    #[error(
        "got a special value (NaN/Infinity) for a Decimal column of type {ty}, but decimal.handling.mode=precise cannot represent it; \
         set decimal.handling.mode to string or double"
    )]
    SpecialDecimal { ty: String },
}

impl ValueError {
    pub(crate) fn invalid(what: &str, detail: impl std::fmt::Display) -> ValueError {
        ValueError::Invalid { what: what.to_string(), detail: detail.to_string() }
    }
}
