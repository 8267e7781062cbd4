//! Column defaults in field schemas, as Debezium's `PostgresDefaultValueConverter` derives
//! them from a column's default expression (`pg_get_expr(adbin, adrelid)`):
//!
//! * a literal (`'x'::text`, `42`, `'2020-01-01'::date`) is read as the column's type;
//! * a function call (`nextval(…)`, `now()`) or `CURRENT_TIMESTAMP`-like keyword gives the
//!   type's placeholder (`0`, `""`, `1970-01-01`, …), so a `SERIAL` key has `"default": 0`;
//! * `NULL::type`, a struct value (`VariableScaleDecimal`, …), a type Debezium has no
//!   mapper for (bytea, money, timetz, arrays, ranges, network types, domains) and a
//!   literal that does not parse give no default.

use tensorcdc_change::Value;

use super::{debezium, oids, text, Kind, PgType, TypeSettings};

/// The placeholder of a generated default, by Debezium's type name; `None`: no mapper.
fn placeholder(t: &PgType) -> Option<&'static str> {
    if let Kind::Enum(_) = t.kind {
        return Some("");
    }
    if t.kind != Kind::Builtin {
        return None;
    }
    Some(match t.oid {
        oids::BIT => "00",
        oids::VARBIT => "0",
        oids::BOOL => "false",
        oids::BPCHAR | oids::VARCHAR | oids::TEXT | oids::XML => "",
        oids::NUMERIC | oids::FLOAT4 | oids::FLOAT8 => "0.0",
        oids::INT2 | oids::INT4 | oids::INT8 => "0",
        oids::JSON | oids::JSONB => "{}",
        oids::UUID => "00000000-0000-0000-0000-000000000000",
        oids::DATE | oids::TIMESTAMP | oids::TIMESTAMPTZ => "1970-01-01",
        oids::TIME => "00:00",
        oids::INTERVAL => "epoch",
        _ => return None,
    })
}

/// `^[(]?[A-Za-z0-9_.]+\((?:.+(?:, ?.+)*)?\)`: the expression starts with a function call.
fn is_function_call(e: &str) -> bool {
    let s = e.strip_prefix('(').unwrap_or(e);
    let name_len = s.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.').count();
    name_len > 0 && s[name_len..].starts_with('(') && s[name_len..].contains(')')
}

/// The literal text of a default expression, or the placeholder for a generated one;
/// `Ok(None)` for `NULL::…`.
fn literal<'a>(e: &'a str, placeholder: &'a str) -> Option<&'a str> {
    const NOW: [&str; 5] = ["current_timestamp", "current_time", "current_date", "localtime", "localtimestamp"];
    if is_function_call(e) || NOW.contains(&e.to_ascii_lowercase().as_str()) {
        return Some(placeholder);
    }
    if !e.contains('\'') {
        return (!e.starts_with("NULL::")).then_some(e);
    }
    let start = e.find('\'')? + 1;
    let end = start + e[start..].find('\'')?;
    Some(&e[start..end])
}

/// The default value Debezium puts in the schema of a column of type `t` whose default
/// expression is `expr`.
pub fn default_value(t: &PgType, expr: &str, s: &TypeSettings) -> Option<Value> {
    let ph = placeholder(t)?;
    let e = expr.trim();
    if let Kind::Enum(_) = t.kind {
        // `'happy'::mood` only; anything else is no default.
        let (lit, _) = e.rsplit_once("::")?;
        return Some(Value::String(lit.strip_prefix('\'')?.strip_suffix('\'')?.to_string()));
    }
    let lit = literal(e, ph)?;
    let lit = match t.oid {
        // Debezium reads these with Java's parsers: `true`/`false` (any case), plain numbers.
        oids::BOOL => {
            if lit.eq_ignore_ascii_case("true") {
                "t"
            } else {
                "f"
            }
        }
        oids::DATE => lit.get(..10).unwrap_or(lit),
        oids::TIMESTAMP | oids::TIMESTAMPTZ if lit.len() == 10 => return default_value(t, &format!("'{lit} 00:00:00+00'"), s),
        oids::TIME if lit.len() == 5 => return default_value(t, &format!("'{lit}:00'"), s),
        _ => lit,
    };
    if t.oid == oids::BIT && lit.len() == 1 {
        return Some(Value::Boolean(lit == "1"));
    }
    let v = debezium::value(t, text::decode(t, lit).ok()?, s).ok()?;
    // Kafka Connect cannot hold a struct as a default (KAFKA-12694): Debezium leaves it out
    // (a VariableScaleDecimal is one).
    (!matches!(v, Value::Struct(_)) && !debezium::is_variable_scale(t, s)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(oid: u32, typmod: i32) -> PgType {
        PgType::builtin(oid, typmod)
    }

    #[test]
    fn literals_and_placeholders() {
        let s = TypeSettings::default();
        assert_eq!(default_value(&t(oids::INT4, -1), "nextval('t_id_seq'::regclass)", &s), Some(Value::Int32(0)));
        assert_eq!(default_value(&t(oids::TEXT, -1), "'x'::text", &s), Some(Value::String("x".into())));
        assert_eq!(default_value(&t(oids::INT8, -1), "'9223372036854775807'::bigint", &s), Some(Value::Int64(i64::MAX)));
        assert_eq!(default_value(&t(oids::BOOL, -1), "true", &s), Some(Value::Boolean(true)));
        assert_eq!(default_value(&t(oids::DATE, -1), "CURRENT_DATE", &s), Some(Value::Int32(0)));
        assert_eq!(default_value(&t(oids::DATE, -1), "'2020-01-02'::date", &s), Some(Value::Int32(18263)));
        assert_eq!(default_value(&t(oids::TIMESTAMPTZ, -1), "now()", &s), Some(Value::String("1970-01-01T00:00:00.000000Z".into())));
        assert_eq!(default_value(&t(oids::INT4, -1), "NULL::integer", &s), None);
        assert_eq!(default_value(&t(oids::BYTEA, -1), "'\\x00'::bytea", &s), None);
        // numeric without a scale is a VariableScaleDecimal struct: no default.
        assert_eq!(default_value(&t(oids::NUMERIC, -1), "1.5", &s), None);
    }
}
