//! Binary forms (pgoutput binary tuples, binary COPY) to [`Datum`]s, one decoder per type,
//! following each type's `*_send` function in the Postgres source (`src/backend/utils/adt`).

use num_bigint::BigInt;

use super::datum::{Bits, Date, Datum, Numeric, Ts, PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use super::{oids, text, Kind, PgType, ValueError};

/// Reads big-endian fields off a byte slice, with errors that say what was short.
struct Reader<'a> {
    b: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        if self.b.len() < n {
            return Err(ValueError::Short { what: self.what.into(), want: n, got: self.b.len() });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn i16(&mut self) -> Result<i16, ValueError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn i32(&mut self) -> Result<i32, ValueError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Result<i64, ValueError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f64(&mut self) -> Result<f64, ValueError> {
        Ok(f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn done(&self) -> Result<(), ValueError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ValueError::LeftOver { what: self.what.into(), left: self.b.len() })
        }
    }
}

fn fixed<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], ValueError> {
    b.try_into().map_err(|_| ValueError::Length { what: what.into(), want: N, got: b.len() })
}

fn utf8(b: &[u8], what: &str) -> Result<String, ValueError> {
    String::from_utf8(b.to_vec()).map_err(|e| ValueError::Utf8 { what: what.into(), detail: e.to_string() })
}

fn ts(us: i64) -> Result<Ts, ValueError> {
    Ok(match us {
        i64::MAX => Ts::PosInf,
        i64::MIN => Ts::NegInf,
        v => Ts::Micros(v.checked_add(PG_EPOCH_MICROS).ok_or_else(|| ValueError::invalid("timestamp", format!("{v} µs after 2000 is out of range")))?),
    })
}

fn numeric(b: &[u8]) -> Result<Numeric, ValueError> {
    let mut r = Reader { b, what: "numeric" };
    let ndigits = r.i16()? as i64;
    let weight = r.i16()? as i64;
    let sign = r.i16()? as u16;
    let dscale = r.i16()? as i64;
    match sign {
        0xC000 => return Ok(Numeric::NaN),
        0xD000 => return Ok(Numeric::PosInf),
        0xF000 => return Ok(Numeric::NegInf),
        0 | 0x4000 => {}
        s => return Err(ValueError::invalid("numeric", format!("unknown sign {s:#x}"))),
    }
    let mut acc = BigInt::from(0);
    for _ in 0..ndigits {
        acc = acc * 10_000 + r.i16()?;
    }
    r.done()?;
    // acc * 10000^(weight - ndigits + 1), written at scale dscale.
    let exp = 4 * (weight - ndigits + 1) + dscale;
    let unscaled = if exp >= 0 { acc * BigInt::from(10).pow(exp as u32) } else { acc / BigInt::from(10).pow((-exp) as u32) };
    Ok(Numeric::Finite { unscaled: if sign == 0x4000 { -unscaled } else { unscaled }, scale: dscale.max(0) as u32 })
}

/// `inet_send`: family, bits, is_cidr, length, address.
fn inet(b: &[u8], cidr: bool) -> Result<String, ValueError> {
    let mut r = Reader { b, what: "inet" };
    let h = r.take(4)?;
    let (family, bits) = (h[0], h[1]);
    let addr = r.take(h[3] as usize)?;
    r.done()?;
    let (text, full) = match (family, addr.len()) {
        (2, 4) => (std::net::Ipv4Addr::from(fixed::<4>(addr, "inet")?).to_string(), 32),
        (3, 16) => (std::net::Ipv6Addr::from(fixed::<16>(addr, "inet")?).to_string(), 128),
        _ => return Err(ValueError::invalid("inet", format!("family {family} with {} address bytes", addr.len()))),
    };
    Ok(if cidr || bits != full { format!("{text}/{bits}") } else { text })
}

fn mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// `range_send`: flags, then each present bound as length + the element's binary form;
/// written as Postgres' `range_out` does.
fn range(b: &[u8], elem: &PgType) -> Result<String, ValueError> {
    let mut r = Reader { b, what: "range" };
    let flags = r.take(1)?[0];
    if flags & 0x01 != 0 {
        return Ok("empty".into());
    }
    let mut bound = |present: bool| -> Result<String, ValueError> {
        if !present {
            return Ok(String::new());
        }
        let n = r.i32()? as usize;
        let d = decode(elem, r.take(n)?)?;
        let s = text::pg_text_of(&d);
        let needs_quotes = s.is_empty() || s.contains(|c: char| "\"\\()[],".contains(c) || c.is_whitespace());
        Ok(if needs_quotes { format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")) } else { s })
    };
    let lower = bound(flags & 0x28 == 0)?;
    let upper = bound(flags & 0x50 == 0)?;
    r.done()?;
    Ok(format!("{}{lower},{upper}{}", if flags & 0x02 != 0 { '[' } else { '(' }, if flags & 0x04 != 0 { ']' } else { ')' }))
}

/// `array_send`: dimensions, null flag, element type, then each element; several
/// dimensions are flattened in row-major order.
fn array(b: &[u8], elem: &PgType) -> Result<Datum, ValueError> {
    let mut r = Reader { b, what: "array" };
    let ndim = r.i32()?;
    let _has_null = r.i32()?;
    let _elem_oid = r.i32()?;
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        count = count.saturating_mul(r.i32()?.max(0) as usize);
        let _lbound = r.i32()?;
    }
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let n = r.i32()?;
        out.push(if n < 0 { Datum::Null } else { decode(elem, r.take(n as usize)?)? });
    }
    r.done()?;
    Ok(Datum::Array(out))
}

/// Decodes the binary form of a value of type `t`. Only types for which
/// [`PgType::binary_supported`] is true may be asked for.
pub fn decode(t: &PgType, b: &[u8]) -> Result<Datum, ValueError> {
    match &t.kind {
        Kind::Enum(_) => return Ok(Datum::Text(utf8(b, "enum")?)),
        Kind::Array(elem) => return array(b, elem),
        Kind::Range(elem) => return Ok(Datum::Text(range(b, elem)?)),
        Kind::Other => return Err(ValueError::NoBinaryDecoder { ty: t.name.clone(), oid: t.oid }),
        Kind::Builtin => {}
    }
    Ok(match t.oid {
        oids::BOOL => Datum::Bool(fixed::<1>(b, "bool")?[0] != 0),
        oids::BYTEA => Datum::Bytes(b.to_vec()),
        oids::INT2 => Datum::Int2(i16::from_be_bytes(fixed(b, "int2")?)),
        oids::INT4 => Datum::Int4(i32::from_be_bytes(fixed(b, "int4")?)),
        oids::OID => Datum::Int8(u32::from_be_bytes(fixed(b, "oid")?) as i64),
        oids::INT8 => Datum::Int8(i64::from_be_bytes(fixed(b, "int8")?)),
        oids::FLOAT4 => Datum::Float4(f32::from_be_bytes(fixed(b, "float4")?)),
        oids::FLOAT8 => Datum::Float8(f64::from_be_bytes(fixed(b, "float8")?)),
        oids::NUMERIC => Datum::Numeric(numeric(b)?),
        oids::MONEY => Datum::Money(i64::from_be_bytes(fixed(b, "money")?)),
        oids::TEXT | oids::VARCHAR | oids::BPCHAR | oids::NAME | oids::JSON | oids::XML => Datum::Text(utf8(b, &t.name)?),
        oids::JSONB => match b.split_first() {
            Some((1, rest)) => Datum::Text(utf8(rest, "jsonb")?),
            _ => return Err(ValueError::invalid("jsonb", "expected version 1")),
        },
        oids::UUID => Datum::Uuid(fixed(b, "uuid")?),
        oids::DATE => Datum::Date(match i32::from_be_bytes(fixed(b, "date")?) {
            i32::MAX => Date::PosInf,
            i32::MIN => Date::NegInf,
            d => Date::Days(d + PG_EPOCH_DAYS),
        }),
        oids::TIME => Datum::Time(i64::from_be_bytes(fixed(b, "time")?)),
        oids::TIMETZ => {
            let mut r = Reader { b, what: "timetz" };
            let (us, zone) = (r.i64()?, r.i32()?);
            r.done()?;
            // Postgres stores the zone as seconds west of UTC.
            Datum::TimeTz(us, -zone)
        }
        oids::TIMESTAMP => Datum::Timestamp(ts(i64::from_be_bytes(fixed(b, "timestamp")?))?),
        oids::TIMESTAMPTZ => Datum::TimestampTz(ts(i64::from_be_bytes(fixed(b, "timestamptz")?))?),
        oids::INTERVAL => {
            let mut r = Reader { b, what: "interval" };
            let (micros, days, months) = (r.i64()?, r.i32()?, r.i32()?);
            r.done()?;
            Datum::Interval { months, days, micros }
        }
        oids::BIT | oids::VARBIT => {
            let mut r = Reader { b, what: "bit" };
            let len = r.i32()?.max(0) as usize;
            let bytes = r.take(len.div_ceil(8))?.to_vec();
            r.done()?;
            Datum::Bits(Bits { len, bytes })
        }
        oids::POINT => {
            let mut r = Reader { b, what: "point" };
            let (x, y) = (r.f64()?, r.f64()?);
            r.done()?;
            Datum::Point(x, y)
        }
        oids::INET => Datum::Text(inet(b, false)?),
        oids::CIDR => Datum::Text(inet(b, true)?),
        oids::MACADDR => Datum::Text(mac(&fixed::<6>(b, "macaddr")?)),
        oids::MACADDR8 => Datum::Text(mac(&fixed::<8>(b, "macaddr8")?)),
        other => return Err(ValueError::NoBinaryDecoder { ty: t.name.clone(), oid: other }),
    })
}
