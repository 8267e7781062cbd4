//! [`Datum`]: a Postgres value as the server holds it, independent of the wire form it
//! came in (text tuples, binary tuples, binary COPY). The text and binary decoders both
//! produce it, so the snapshot and the stream agree by construction; `debezium` maps it to
//! what Debezium writes. Also Postgres' own text output for the few types whose text we
//! must produce from their binary form (range bounds).

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use num_bigint::BigInt;

/// Microseconds between 1970-01-01 and 2000-01-01 (Postgres' epoch).
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
pub const PG_EPOCH_DAYS: i32 = 10_957;

/// A numeric value: the unscaled integer and its scale (digits after the point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numeric {
    Finite { unscaled: BigInt, scale: u32 },
    NaN,
    PosInf,
    NegInf,
}

impl Numeric {
    /// Parses Postgres' numeric text output (`-12.50`, `NaN`, `Infinity`, `1e3` accepted).
    pub fn parse(s: &str) -> Option<Numeric> {
        match s {
            "NaN" => return Some(Numeric::NaN),
            "Infinity" => return Some(Numeric::PosInf),
            "-Infinity" => return Some(Numeric::NegInf),
            _ => {}
        }
        let (mant, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
            None => (s, 0),
        };
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let digits = format!("{int}{frac}");
        if digits.trim_start_matches(['-', '+']).is_empty() {
            return None;
        }
        let unscaled: BigInt = digits.parse().ok()?;
        let scale = frac.len() as i64 - exp;
        Some(if scale >= 0 {
            Numeric::Finite { unscaled, scale: scale as u32 }
        } else {
            Numeric::Finite { unscaled: unscaled * BigInt::from(10).pow((-scale) as u32), scale: 0 }
        })
    }

    /// The value rescaled to `scale` digits (rounding half away from zero, as Postgres).
    pub fn rescaled(unscaled: &BigInt, from: u32, to: u32) -> BigInt {
        use num_traits::Signed;
        if to >= from {
            return unscaled * BigInt::from(10).pow(to - from);
        }
        let div = BigInt::from(10).pow(from - to);
        let q = unscaled / &div;
        let r = unscaled % &div;
        if r.abs() * 2 >= div {
            if unscaled.is_negative() {
                q - 1
            } else {
                q + 1
            }
        } else {
            q
        }
    }

    /// Postgres' text form.
    pub fn to_pg_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".into(),
            Numeric::PosInf => "Infinity".into(),
            Numeric::NegInf => "-Infinity".into(),
            Numeric::Finite { unscaled, scale } => decimal_string(unscaled, *scale),
        }
    }
}

/// `unscaled / 10^scale` written out in full (`-0.05`, `12.50`).
pub fn decimal_string(unscaled: &BigInt, scale: u32) -> String {
    use num_traits::Signed;
    let digits = unscaled.abs().to_string();
    let sign = if unscaled.is_negative() { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{sign}{i}.{f}")
}

/// A date: days since 1970-01-01, or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Date {
    Days(i32),
    PosInf,
    NegInf,
}

/// A timestamp (with or without time zone): microseconds since 1970-01-01 (UTC for
/// `timestamptz`), or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ts {
    Micros(i64),
    PosInf,
    NegInf,
}

/// A bit string: its length in bits and the bits packed high-bit first, as Postgres sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits {
    pub len: usize,
    pub bytes: Vec<u8>,
}

/// A column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    Numeric(Numeric),
    /// Money in the smallest unit (cents).
    Money(i64),
    /// Text, and every type carried as its Postgres text form (json, xml, inet, ranges,
    /// enums, extension types).
    Text(String),
    Bytes(Vec<u8>),
    Bits(Bits),
    Date(Date),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since midnight and the offset east of UTC in seconds.
    TimeTz(i64, i32),
    Timestamp(Ts),
    TimestampTz(Ts),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Uuid([u8; 16]),
    Point(f64, f64),
    Array(Vec<Datum>),
}

/// The calendar date of `days` since 1970-01-01 (proleptic Gregorian, year 0 = 1 BC).
pub fn naive_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)
}

/// The date and time of `micros` since 1970-01-01.
pub fn naive_datetime(micros: i64) -> Option<NaiveDateTime> {
    let secs = micros.div_euclid(1_000_000);
    let sub = micros.rem_euclid(1_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, sub * 1000).map(|d| d.naive_utc())
}

/// Days since 1970-01-01 of a calendar date.
pub fn days_of(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

/// `YYYY-MM-DD` with Postgres' ` BC` suffix for years before 1.
fn pg_date_parts(d: NaiveDate) -> (String, bool) {
    let y = d.year();
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    (format!("{year:04}-{:02}-{:02}", d.month(), d.day()), bc)
}

/// `HH:MM:SS[.ffffff]` with trailing zeros of the fraction dropped, as Postgres writes it.
pub fn pg_time_text(micros: i64) -> String {
    let (h, m, s, us) = (micros / 3_600_000_000, micros / 60_000_000 % 60, micros / 1_000_000 % 60, micros % 1_000_000);
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if us != 0 {
        let f = format!("{us:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

/// Postgres' ISO DateStyle text of a date.
pub fn pg_date_text(d: Date) -> String {
    match d {
        Date::PosInf => "infinity".into(),
        Date::NegInf => "-infinity".into(),
        Date::Days(n) => match naive_date(n) {
            Some(nd) => {
                let (s, bc) = pg_date_parts(nd);
                if bc {
                    format!("{s} BC")
                } else {
                    s
                }
            }
            None => format!("{n} days"),
        },
    }
}

/// Postgres' ISO DateStyle text of a timestamp; `utc` adds the `+00` of a `timestamptz`
/// shown in time zone UTC.
pub fn pg_timestamp_text(t: Ts, utc: bool) -> String {
    match t {
        Ts::PosInf => "infinity".into(),
        Ts::NegInf => "-infinity".into(),
        Ts::Micros(us) => match naive_datetime(us) {
            Some(dt) => {
                let (d, bc) = pg_date_parts(dt.date());
                let tm = pg_time_text(dt.time().num_seconds_from_midnight() as i64 * 1_000_000 + (dt.time().nanosecond() / 1000) as i64);
                format!("{d} {tm}{}{}", if utc { "+00" } else { "" }, if bc { " BC" } else { "" })
            }
            None => format!("{us} us"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_text_round_trip() {
        for s in ["0", "-0.05", "12.50", "123456789012345678901234567890.123", "NaN", "-Infinity", "1"] {
            assert_eq!(Numeric::parse(s).unwrap().to_pg_text(), s);
        }
        assert_eq!(Numeric::parse("1.5e2").unwrap().to_pg_text(), "150");
        assert!(Numeric::parse("abc").is_none() && Numeric::parse("-").is_none());
        assert_eq!(Numeric::rescaled(&BigInt::from(-125), 2, 1), BigInt::from(-13));
        assert_eq!(Numeric::rescaled(&BigInt::from(124), 2, 1), BigInt::from(12));
        assert_eq!(Numeric::rescaled(&BigInt::from(5), 0, 2), BigInt::from(500));
    }

    #[test]
    fn dates_and_timestamps_as_postgres_writes_them() {
        assert_eq!(pg_date_text(Date::Days(0)), "1970-01-01");
        let bc = days_of(NaiveDate::from_ymd_opt(-43, 3, 15).unwrap());
        assert_eq!(pg_date_text(Date::Days(bc)), "0044-03-15 BC");
        assert_eq!(pg_timestamp_text(Ts::Micros(1_500_000), true), "1970-01-01 00:00:01.5+00");
        assert_eq!(pg_timestamp_text(Ts::Micros(-1), false), "1969-12-31 23:59:59.999999");
        assert_eq!(pg_time_text(86_400_000_000), "24:00:00");
    }
}
