//! Text forms (pgoutput text tuples, `::text` in the snapshot) to [`Datum`]s. The
//! connections that produce text set `DateStyle=ISO`, `IntervalStyle=iso_8601`,
//! `TimeZone=UTC`, `extra_float_digits=3` and `lc_monetary=C` (see `session_options`), so
//! each type has one text form to read.

use chrono::NaiveDate;

use super::datum::{days_of, pg_date_text, pg_timestamp_text, Bits, Date, Datum, Numeric, Ts};
use super::{oids, Kind, PgType, ValueError};

fn err(t: &PgType, s: &str, expected: &'static str) -> ValueError {
    ValueError::Text { ty: t.name.clone(), text: truncate(s).to_string(), expected }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `HH:MM:SS[.ffffff]` to microseconds (24:00:00 allowed).
fn time(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec = parts.next()?;
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let s: i64 = whole.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let us: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + us)
}

/// `+HH[:MM[:SS]]` to seconds east of UTC.
fn offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let mut secs = 0;
    for (i, p) in rest.split(':').enumerate() {
        secs += p.parse::<i32>().ok()? * [3600, 60, 1].get(i)?;
    }
    Some(sign * secs)
}

/// `YYYY-MM-DD[ BC]` to a date.
fn date(s: &str) -> Option<Date> {
    match s {
        "infinity" => return Some(Date::PosInf),
        "-infinity" => return Some(Date::NegInf),
        _ => {}
    }
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(x) => (x, true),
        None => (s, false),
    };
    let mut it = s.splitn(3, '-');
    let y: i32 = it.next()?.parse().ok()?;
    let (m, d): (u32, u32) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    Some(Date::Days(days_of(NaiveDate::from_ymd_opt(if bc { 1 - y } else { y }, m, d)?)))
}

/// `YYYY-MM-DD HH:MM:SS[.f][+00][ BC]` to microseconds since 1970 (UTC for `tz`).
fn timestamp(s: &str, tz: bool) -> Option<Ts> {
    match s {
        "infinity" => return Some(Ts::PosInf),
        "-infinity" => return Some(Ts::NegInf),
        _ => {}
    }
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(x) => (x, true),
        None => (s, false),
    };
    let (d, rest) = s.split_once(' ')?;
    let (t, off) = if tz {
        let i = rest.rfind(['+', '-'])?;
        (&rest[..i], offset(&rest[i..])?)
    } else {
        (rest, 0)
    };
    let Date::Days(days) = date(&if bc { format!("{d} BC") } else { d.to_string() })? else { return None };
    Some(Ts::Micros(days as i64 * 86_400_000_000 + time(t)? - off as i64 * 1_000_000))
}

/// IntervalStyle `iso_8601`: `P1Y2M3DT4H5M6.5S`, each part possibly negative.
fn interval(s: &str) -> Option<Datum> {
    let body = s.strip_prefix('P')?;
    let (date_part, time_part) = body.split_once('T').unwrap_or((body, ""));
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let mut num = String::new();
    for c in date_part.chars() {
        match c {
            'Y' => months += std::mem::take(&mut num).parse::<i64>().ok()? * 12,
            'M' => months += std::mem::take(&mut num).parse::<i64>().ok()?,
            'W' => days += std::mem::take(&mut num).parse::<i64>().ok()? * 7,
            'D' => days += std::mem::take(&mut num).parse::<i64>().ok()?,
            _ => num.push(c),
        }
    }
    for c in time_part.chars() {
        match c {
            'H' => micros += std::mem::take(&mut num).parse::<i64>().ok()?.checked_mul(3_600_000_000)?,
            'M' => micros += std::mem::take(&mut num).parse::<i64>().ok()?.checked_mul(60_000_000)?,
            'S' => {
                let n = std::mem::take(&mut num);
                let neg = n.starts_with('-');
                let (w, f) =
                    n.trim_start_matches('-').split_once('.').map_or((n.trim_start_matches('-').to_string(), String::new()), |(a, b)| (a.into(), b.into()));
                if !f.is_ascii() {
                    return None;
                }
                let us = w.parse::<i64>().ok()?.checked_mul(1_000_000)? + if f.is_empty() { 0 } else { format!("{f:0<6}")[..6].parse::<i64>().ok()? };
                micros += if neg { -us } else { us };
            }
            _ => num.push(c),
        }
    }
    if !num.is_empty() {
        return None;
    }
    Some(Datum::Interval { months: months.try_into().ok()?, days: days.try_into().ok()?, micros })
}

/// Money as `lc_monetary=C` writes it (`$1,234.56`, `-$0.05`) to cents.
fn money(s: &str) -> Option<i64> {
    let neg = s.starts_with('-') || s.starts_with('(');
    let digits: String = s.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
    let (w, f) = digits.split_once('.').unwrap_or((&digits, ""));
    let cents = w.parse::<i64>().ok()?.checked_mul(100)?.checked_add(format!("{f:0<2}").get(..2)?.parse::<i64>().ok()?)?;
    Some(if neg { -cents } else { cents })
}

/// `{a,"b c",NULL}` to element texts (`None` = NULL); nested braces are flattened.
fn array_elements(s: &str) -> Option<Vec<Option<String>>> {
    // Text of the form `[1:3]={...}` carries explicit bounds first.
    let s = match s.find("={") {
        Some(i) if s.starts_with('[') => &s[i + 1..],
        _ => s,
    };
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let mut depth = 0;
    let mut cur = String::new();
    let mut quoted = false;
    let mut had = false;
    while let Some(c) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' | ',' => {
                if had || !cur.is_empty() {
                    out.push(if !quoted && cur == "NULL" { None } else { Some(std::mem::take(&mut cur)) });
                }
                cur.clear();
                quoted = false;
                had = false;
                if c == '}' {
                    depth -= 1;
                }
            }
            '"' => {
                quoted = true;
                had = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        x => cur.push(x),
                    }
                }
            }
            x if x.is_whitespace() && cur.is_empty() => {}
            x => cur.push(x),
        }
    }
    (depth == 0).then_some(out)
}

/// Decodes the text form of a value of type `t`.
pub fn decode(t: &PgType, s: &str) -> Result<Datum, ValueError> {
    match &t.kind {
        Kind::Array(elem) => {
            let items = array_elements(s).ok_or_else(|| err(t, s, "an array"))?;
            return items.into_iter().map(|x| x.map_or(Ok(Datum::Null), |x| decode(elem, &x))).collect::<Result<_, _>>().map(Datum::Array);
        }
        Kind::Enum(_) | Kind::Range(_) | Kind::Other => return Ok(Datum::Text(s.to_string())),
        Kind::Builtin => {}
    }
    Ok(match t.oid {
        oids::BOOL => Datum::Bool(match s {
            "t" | "true" => true,
            "f" | "false" => false,
            _ => return Err(err(t, s, "t or f")),
        }),
        oids::BYTEA => {
            let h = s.strip_prefix("\\x").ok_or_else(|| err(t, s, "bytea in hex format"))?;
            Datum::Bytes(hex::decode(h).map_err(|e| ValueError::invalid("bytea hex", e))?)
        }
        oids::INT2 => Datum::Int2(s.parse().map_err(|_| err(t, s, "an int2"))?),
        oids::INT4 => Datum::Int4(s.parse().map_err(|_| err(t, s, "an int4"))?),
        oids::INT8 | oids::OID => Datum::Int8(s.parse().map_err(|_| err(t, s, "an int8"))?),
        oids::FLOAT4 => Datum::Float4(float(s).ok_or_else(|| err(t, s, "a float4"))? as f32),
        oids::FLOAT8 => Datum::Float8(float(s).ok_or_else(|| err(t, s, "a float8"))?),
        oids::NUMERIC => Datum::Numeric(Numeric::parse(s).ok_or_else(|| err(t, s, "a numeric"))?),
        oids::MONEY => Datum::Money(money(s).ok_or_else(|| err(t, s, "money"))?),
        oids::UUID => Datum::Uuid(hex::decode(s.replace('-', "")).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| err(t, s, "a uuid"))?),
        oids::DATE => Datum::Date(date(s).ok_or_else(|| err(t, s, "an ISO date"))?),
        oids::TIME => Datum::Time(time(s).ok_or_else(|| err(t, s, "a time"))?),
        oids::TIMETZ => {
            let i = s.rfind(['+', '-']).ok_or_else(|| err(t, s, "a time with zone"))?;
            Datum::TimeTz(time(&s[..i]).ok_or_else(|| err(t, s, "a time"))?, offset(&s[i..]).ok_or_else(|| err(t, s, "a zone offset"))?)
        }
        oids::TIMESTAMP => Datum::Timestamp(timestamp(s, false).ok_or_else(|| err(t, s, "an ISO timestamp"))?),
        oids::TIMESTAMPTZ => Datum::TimestampTz(timestamp(s, true).ok_or_else(|| err(t, s, "an ISO timestamp with zone"))?),
        oids::INTERVAL => interval(s).ok_or_else(|| err(t, s, "an ISO 8601 interval"))?,
        oids::BIT | oids::VARBIT => {
            if !s.bytes().all(|c| c == b'0' || c == b'1') {
                return Err(err(t, s, "a bit string"));
            }
            let mut bytes = vec![0u8; s.len().div_ceil(8)];
            for (i, c) in s.bytes().enumerate() {
                if c == b'1' {
                    bytes[i / 8] |= 0x80 >> (i % 8);
                }
            }
            Datum::Bits(Bits { len: s.len(), bytes })
        }
        oids::POINT => {
            let inner = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')).ok_or_else(|| err(t, s, "a point"))?;
            let (x, y) = inner.split_once(',').ok_or_else(|| err(t, s, "a point"))?;
            Datum::Point(float(x).ok_or_else(|| err(t, s, "a point"))?, float(y).ok_or_else(|| err(t, s, "a point"))?)
        }
        _ => Datum::Text(s.to_string()),
    })
}

/// Postgres' text output of a range bound (integers, numeric, dates, timestamps).
pub fn pg_text_of(d: &Datum) -> String {
    match d {
        Datum::Int2(v) => v.to_string(),
        Datum::Int4(v) => v.to_string(),
        Datum::Int8(v) => v.to_string(),
        Datum::Numeric(n) => n.to_pg_text(),
        Datum::Date(d) => pg_date_text(*d),
        Datum::Timestamp(t) => pg_timestamp_text(*t, false),
        Datum::TimestampTz(t) => pg_timestamp_text(*t, true),
        Datum::Text(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_intervals_and_times() {
        assert_eq!(
            array_elements(r#"{1,"a b",NULL,"NULL","x\"y"}"#).unwrap(),
            vec![Some("1".into()), Some("a b".into()), None, Some("NULL".into()), Some("x\"y".into())]
        );
        assert_eq!(array_elements("{}").unwrap(), Vec::<Option<String>>::new());
        assert_eq!(array_elements("{{1,2},{3,4}}").unwrap().len(), 4);
        assert_eq!(array_elements("[0:1]={5,6}").unwrap(), vec![Some("5".into()), Some("6".into())]);
        assert_eq!(interval("P1Y2M3DT4H5M6.5S"), Some(Datum::Interval { months: 14, days: 3, micros: 14_706_500_000 }));
        assert_eq!(interval("PT-1.25S"), Some(Datum::Interval { months: 0, days: 0, micros: -1_250_000 }));
        assert_eq!(interval("PT0S"), Some(Datum::Interval { months: 0, days: 0, micros: 0 }));
        assert_eq!(offset("+05:30"), Some(19_800));
        assert_eq!(timestamp("1970-01-01 01:00:00+01", true), Some(Ts::Micros(0)));
        assert_eq!(money("-$1,234.5"), Some(-123_450));
    }
}
