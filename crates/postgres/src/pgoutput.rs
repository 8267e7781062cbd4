//! The pgoutput logical decoding protocol, versions 1 to 4
//! (<https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>).
//!
//! [`decode`] turns one XLogData payload into a [`LogicalMessage`]. `in_stream` says whether
//! the message sits between Stream Start and Stream Stop, where (protocol 2+) DML and
//! relation messages carry the transaction id first. Nothing here allocates per column
//! beyond the column bytes themselves (`Bytes` slices of the network buffer).

use bytes::{Buf, Bytes};

use crate::CaptureError;

/// One column of a tuple as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum TupleValue {
    Null,
    /// An unchanged TOASTed value that was not sent.
    Unchanged,
    Text(Bytes),
    Binary(Bytes),
}

/// A column of a relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_mod: i32,
}

/// A decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum LogicalMessage {
    Begin {
        final_lsn: u64,
        ts: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        ts: i64,
    },
    Origin,
    Relation {
        xid: Option<u32>,
        oid: u32,
        namespace: String,
        name: String,
        replica_identity: u8,
        columns: Vec<Column>,
    },
    Type {
        xid: Option<u32>,
    },
    Insert {
        xid: Option<u32>,
        oid: u32,
        new: Vec<TupleValue>,
    },
    /// `old` is the key ('K') or the whole old row ('O', REPLICA IDENTITY FULL).
    Update {
        xid: Option<u32>,
        oid: u32,
        old: Option<(u8, Vec<TupleValue>)>,
        new: Vec<TupleValue>,
    },
    Delete {
        xid: Option<u32>,
        oid: u32,
        old: (u8, Vec<TupleValue>),
    },
    Truncate {
        xid: Option<u32>,
        options: u8,
        oids: Vec<u32>,
    },
    Message {
        xid: Option<u32>,
        transactional: bool,
        prefix: String,
        content: Bytes,
    },
    StreamStart {
        xid: u32,
        first: bool,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        commit_lsn: u64,
        end_lsn: u64,
        ts: i64,
    },
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
    /// Two-phase messages (protocol 3), which tensorcdc does not request.
    TwoPhase(u8),
}

fn need(b: &Bytes, n: usize, what: &str) -> Result<(), CaptureError> {
    if b.remaining() < n {
        return Err(CaptureError::Protocol(format!("pgoutput {what}: message truncated ({} bytes left, {n} needed)", b.remaining())));
    }
    Ok(())
}

fn cstring(b: &mut Bytes, what: &str) -> Result<String, CaptureError> {
    let end = b.iter().position(|&c| c == 0).ok_or_else(|| CaptureError::Protocol(format!("pgoutput {what}: unterminated string")))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

fn tuple(b: &mut Bytes) -> Result<Vec<TupleValue>, CaptureError> {
    need(b, 2, "tuple")?;
    let n = b.get_i16();
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        need(b, 1, "tuple column")?;
        match b.get_u8() {
            b'n' => out.push(TupleValue::Null),
            b'u' => out.push(TupleValue::Unchanged),
            kind @ (b't' | b'b') => {
                need(b, 4, "tuple column length")?;
                let len = b.get_i32();
                if len < 0 {
                    return Err(CaptureError::Protocol(format!("pgoutput tuple: negative length {len}")));
                }
                need(b, len as usize, "tuple column data")?;
                let data = b.split_to(len as usize);
                out.push(if kind == b't' { TupleValue::Text(data) } else { TupleValue::Binary(data) });
            }
            k => return Err(CaptureError::Protocol(format!("pgoutput tuple: unknown column kind {:?}", k as char))),
        }
    }
    Ok(out)
}

/// Decodes one pgoutput message.
pub fn decode(mut b: Bytes, in_stream: bool) -> Result<LogicalMessage, CaptureError> {
    need(&b, 1, "message")?;
    let tag = b.get_u8();
    let xid = |b: &mut Bytes| -> Result<Option<u32>, CaptureError> {
        if in_stream {
            need(b, 4, "xid")?;
            Ok(Some(b.get_u32()))
        } else {
            Ok(None)
        }
    };
    Ok(match tag {
        b'B' => {
            need(&b, 20, "Begin")?;
            LogicalMessage::Begin { final_lsn: b.get_u64(), ts: b.get_i64(), xid: b.get_u32() }
        }
        b'C' => {
            need(&b, 25, "Commit")?;
            let _flags = b.get_u8();
            LogicalMessage::Commit { commit_lsn: b.get_u64(), end_lsn: b.get_u64(), ts: b.get_i64() }
        }
        b'O' => LogicalMessage::Origin,
        b'R' => {
            let xid = xid(&mut b)?;
            need(&b, 4, "Relation")?;
            let oid = b.get_u32();
            let namespace = cstring(&mut b, "Relation namespace")?;
            let name = cstring(&mut b, "Relation name")?;
            need(&b, 3, "Relation")?;
            let replica_identity = b.get_u8();
            let n = b.get_i16();
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                need(&b, 1, "Relation column")?;
                let flags = b.get_u8();
                let name = cstring(&mut b, "column name")?;
                need(&b, 8, "Relation column")?;
                columns.push(Column { key: flags & 1 == 1, name, type_oid: b.get_u32(), type_mod: b.get_i32() });
            }
            LogicalMessage::Relation { xid, oid, namespace, name, replica_identity, columns }
        }
        b'Y' => LogicalMessage::Type { xid: xid(&mut b)? },
        b'I' => {
            let xid = xid(&mut b)?;
            need(&b, 5, "Insert")?;
            let oid = b.get_u32();
            match b.get_u8() {
                b'N' => LogicalMessage::Insert { xid, oid, new: tuple(&mut b)? },
                k => return Err(CaptureError::Protocol(format!("pgoutput Insert: expected 'N', got {:?}", k as char))),
            }
        }
        b'U' => {
            let xid = xid(&mut b)?;
            need(&b, 5, "Update")?;
            let oid = b.get_u32();
            let mut kind = b.get_u8();
            let mut old = None;
            if kind == b'K' || kind == b'O' {
                old = Some((kind, tuple(&mut b)?));
                need(&b, 1, "Update")?;
                kind = b.get_u8();
            }
            if kind != b'N' {
                return Err(CaptureError::Protocol(format!("pgoutput Update: expected 'N', got {:?}", kind as char)));
            }
            LogicalMessage::Update { xid, oid, old, new: tuple(&mut b)? }
        }
        b'D' => {
            let xid = xid(&mut b)?;
            need(&b, 5, "Delete")?;
            let oid = b.get_u32();
            let kind = b.get_u8();
            if kind != b'K' && kind != b'O' {
                return Err(CaptureError::Protocol(format!("pgoutput Delete: expected 'K' or 'O', got {:?}", kind as char)));
            }
            LogicalMessage::Delete { xid, oid, old: (kind, tuple(&mut b)?) }
        }
        b'T' => {
            let xid = xid(&mut b)?;
            need(&b, 5, "Truncate")?;
            let n = b.get_u32() as usize;
            let options = b.get_u8();
            need(&b, 4 * n, "Truncate relations")?;
            LogicalMessage::Truncate { xid, options, oids: (0..n).map(|_| b.get_u32()).collect() }
        }
        b'M' => {
            let xid = xid(&mut b)?;
            need(&b, 1, "Message")?;
            let transactional = b.get_u8() & 1 == 1;
            need(&b, 8, "Message")?;
            let _lsn = b.get_u64();
            let prefix = cstring(&mut b, "Message prefix")?;
            need(&b, 4, "Message")?;
            let len = b.get_u32() as usize;
            need(&b, len, "Message content")?;
            LogicalMessage::Message { xid, transactional, prefix, content: b.split_to(len) }
        }
        b'S' => {
            need(&b, 5, "Stream Start")?;
            LogicalMessage::StreamStart { xid: b.get_u32(), first: b.get_u8() == 1 }
        }
        b'E' => LogicalMessage::StreamStop,
        b'c' => {
            need(&b, 29, "Stream Commit")?;
            let xid = b.get_u32();
            let _flags = b.get_u8();
            LogicalMessage::StreamCommit { xid, commit_lsn: b.get_u64(), end_lsn: b.get_u64(), ts: b.get_i64() }
        }
        b'A' => {
            // v4 (parallel streaming) appends the abort LSN and time; they are not needed.
            need(&b, 8, "Stream Abort")?;
            LogicalMessage::StreamAbort { xid: b.get_u32(), subxid: b.get_u32() }
        }
        t @ (b'b' | b'P' | b'K' | b'r' | b'p') => LogicalMessage::TwoPhase(t),
        t => return Err(CaptureError::Protocol(format!("pgoutput: unknown message type {:?}", t as char))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(parts: &[&[u8]]) -> Bytes {
        Bytes::from(parts.concat())
    }

    #[test]
    fn relation_insert_update_delete() {
        let rel = bytes(&[
            b"R",
            &16384u32.to_be_bytes(),
            b"public\0mnist_train\0",
            b"d",
            &2i16.to_be_bytes(),
            &[1],
            b"id\0",
            &23u32.to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &[0],
            b"pixels\0",
            &17u32.to_be_bytes(),
            &(-1i32).to_be_bytes(),
        ]);
        match decode(rel, false).unwrap() {
            LogicalMessage::Relation { oid, namespace, name, columns, xid, .. } => {
                assert_eq!((oid, namespace.as_str(), name.as_str(), xid), (16384, "public", "mnist_train", None));
                assert!(columns[0].key && !columns[1].key);
                assert_eq!(columns[1].type_oid, 17);
            }
            m => panic!("{m:?}"),
        }
        let ins =
            bytes(&[b"I", &7u32.to_be_bytes(), &16384u32.to_be_bytes(), b"N", &3i16.to_be_bytes(), b"b", &4i32.to_be_bytes(), &5i32.to_be_bytes(), b"n", b"u"]);
        // In a stream, the xid comes first.
        assert_eq!(
            decode(ins, true).unwrap(),
            LogicalMessage::Insert {
                xid: Some(7),
                oid: 16384,
                new: vec![TupleValue::Binary(Bytes::from_static(&[0, 0, 0, 5])), TupleValue::Null, TupleValue::Unchanged]
            }
        );
        let upd = bytes(&[
            b"U",
            &1u32.to_be_bytes(),
            b"O",
            &1i16.to_be_bytes(),
            b"t",
            &1i32.to_be_bytes(),
            b"1",
            b"N",
            &1i16.to_be_bytes(),
            b"t",
            &1i32.to_be_bytes(),
            b"2",
        ]);
        match decode(upd, false).unwrap() {
            LogicalMessage::Update { old: Some((b'O', old)), new, .. } => {
                assert_eq!(old, vec![TupleValue::Text(Bytes::from_static(b"1"))]);
                assert_eq!(new, vec![TupleValue::Text(Bytes::from_static(b"2"))]);
            }
            m => panic!("{m:?}"),
        }
        let del = bytes(&[b"D", &1u32.to_be_bytes(), b"K", &1i16.to_be_bytes(), b"t", &1i32.to_be_bytes(), b"9"]);
        assert!(matches!(decode(del, false).unwrap(), LogicalMessage::Delete { old: (b'K', _), .. }));
    }

    #[test]
    fn begin_commit_stream_truncate() {
        let begin = bytes(&[b"B", &100u64.to_be_bytes(), &5i64.to_be_bytes(), &9u32.to_be_bytes()]);
        assert_eq!(decode(begin, false).unwrap(), LogicalMessage::Begin { final_lsn: 100, ts: 5, xid: 9 });
        let commit = bytes(&[b"C", &[0], &100u64.to_be_bytes(), &108u64.to_be_bytes(), &5i64.to_be_bytes()]);
        assert_eq!(decode(commit, false).unwrap(), LogicalMessage::Commit { commit_lsn: 100, end_lsn: 108, ts: 5 });
        let trunc = bytes(&[b"T", &2u32.to_be_bytes(), &[1], &1u32.to_be_bytes(), &2u32.to_be_bytes()]);
        assert_eq!(decode(trunc, false).unwrap(), LogicalMessage::Truncate { xid: None, options: 1, oids: vec![1, 2] });
        let abort = bytes(&[b"A", &3u32.to_be_bytes(), &4u32.to_be_bytes(), &0u64.to_be_bytes(), &0i64.to_be_bytes()]);
        assert_eq!(decode(abort, false).unwrap(), LogicalMessage::StreamAbort { xid: 3, subxid: 4 });
        let sc = bytes(&[b"c", &3u32.to_be_bytes(), &[0], &1u64.to_be_bytes(), &2u64.to_be_bytes(), &3i64.to_be_bytes()]);
        assert_eq!(decode(sc, false).unwrap(), LogicalMessage::StreamCommit { xid: 3, commit_lsn: 1, end_lsn: 2, ts: 3 });
    }

    #[test]
    fn truncated_and_unknown_are_errors_not_panics() {
        for m in [&b"B\0\0"[..], b"I\0\0\0\x01N\0\x01b\0\0\0\x09ab", b"Z", b"", b"U\0\0\0\x01X"] {
            assert!(decode(Bytes::copy_from_slice(m), false).is_err(), "{m:?}");
        }
    }
}
