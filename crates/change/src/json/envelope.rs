//! Debezium's envelope as JSON: its 3.x layout (the default) and 2.x's.

use super::{write_num, write_opt_row, write_str, BinaryMode, EnvelopeVersion};
use crate::{ChangeEvent, VERSION};

fn write_opt_num(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(t) => write_num(out, t),
        None => out.extend_from_slice(b"null"),
    }
}

pub(super) fn write_envelope(out: &mut Vec<u8>, e: &ChangeEvent, binary: BinaryMode, version: EnvelopeVersion) {
    let s = &e.source;
    let v3 = version == EnvelopeVersion::V3;
    out.extend_from_slice(b"{\"before\":");
    write_opt_row(out, e.before.as_ref(), binary);
    out.extend_from_slice(b",\"after\":");
    write_opt_row(out, e.after.as_ref(), binary);
    out.extend_from_slice(b",\"source\":{\"version\":");
    write_str(out, VERSION);
    out.extend_from_slice(b",\"connector\":\"postgresql\",\"name\":");
    write_str(out, &s.name);
    out.extend_from_slice(b",\"ts_ms\":");
    write_num(out, s.ts_ms);
    out.extend_from_slice(b",\"snapshot\":");
    write_str(out, if v3 { s.snapshot.as_str() } else { s.snapshot.as_str_v2() });
    out.extend_from_slice(b",\"db\":");
    write_str(out, &s.db);
    out.extend_from_slice(b",\"sequence\":");
    match s.lsn {
        Some(l) => {
            let first = if v3 { s.last_commit_lsn.map_or("null".to_string(), |c| format!("\"{}\"", c.0)) } else { "null".into() };
            write_str(out, &format!("[{first},\"{}\"]", l.0))
        }
        None => out.extend_from_slice(b"null"),
    }
    if v3 {
        out.extend_from_slice(b",\"ts_us\":");
        write_num(out, s.ts_us);
        out.extend_from_slice(b",\"ts_ns\":");
        write_num(out, s.ts_us.saturating_mul(1000));
    }
    out.extend_from_slice(b",\"schema\":");
    write_str(out, &s.schema);
    out.extend_from_slice(b",\"table\":");
    write_str(out, &s.table);
    out.extend_from_slice(b",\"txId\":");
    write_opt_num(out, s.tx_id);
    out.extend_from_slice(b",\"lsn\":");
    write_opt_num(out, s.lsn.map(|l| l.0 as i64));
    if v3 {
        out.extend_from_slice(b",\"xmin\":null,\"origin\":null,\"origin_lsn\":null},\"transaction\":");
        write_tx(out, e.transaction.as_ref());
        out.extend_from_slice(b",\"op\":");
        write_str(out, e.op.code());
        out.extend_from_slice(b",\"ts_ms\":");
        write_num(out, e.ts_ms);
        out.extend_from_slice(b",\"ts_us\":");
        write_num(out, e.ts_ns.div_euclid(1000));
        out.extend_from_slice(b",\"ts_ns\":");
        write_num(out, e.ts_ns);
        out.push(b'}');
    } else {
        out.extend_from_slice(b",\"xmin\":null},\"op\":");
        write_str(out, e.op.code());
        out.extend_from_slice(b",\"ts_ms\":");
        write_num(out, e.ts_ms);
        out.extend_from_slice(b",\"transaction\":");
        write_tx(out, e.transaction.as_ref());
        out.push(b'}');
    }
}

fn write_tx(out: &mut Vec<u8>, t: Option<&crate::event::TxBlock>) {
    match t {
        Some(t) => {
            out.extend_from_slice(b"{\"id\":");
            write_str(out, &t.id);
            out.extend_from_slice(b",\"total_order\":");
            write_num(out, t.total_order);
            out.extend_from_slice(b",\"data_collection_order\":");
            write_num(out, t.data_collection_order);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
}
