//! Debezium's transaction metadata (`provide.transaction.metadata`): a `BEGIN` record on
//! `<topic.prefix>.<topic.transaction>` before a transaction's first change, an `END` record
//! after its last with the event count per table, and in every change event a `transaction`
//! block (`id`, `total_order`, `data_collection_order`). As Debezium 3.6.3 writes them, the
//! `id` is `<txId>:<LSN>` with the LSN of the record it is in (the change's own, the first
//! change's for BEGIN, the commit's end for END), both records carry the commit time, and
//! END lists the tables in the order of the Java `HashMap` Debezium counts them in.

use tensorcdc_change::event::TxBlock;
use tensorcdc_change::json::{Converter, ConverterConfig};
use tensorcdc_change::{Key, Message, Payload};

/// One transaction's order, counted as its changes are emitted.
#[derive(Debug, Default)]
pub(crate) struct TxOrder {
    total: i64,
    /// `schema.table` and its events so far, in order of first change.
    tables: Vec<(String, i64)>,
}

const KEY_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1}"#;
const VALUE_SCHEMA: &str = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"status"},{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":true,"field":"event_count"},{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"data_collection"},{"type":"int64","optional":false,"field":"event_count"}],"optional":true,"name":"event.collection","version":1},"optional":true,"field":"data_collections"},{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataValue","version":1}"#;

fn wrap(conv: Converter, schema: &str, payload: String) -> String {
    match conv {
        Converter::Json { schemas: true } => format!(r#"{{"schema":{schema},"payload":{payload}}}"#),
        _ => payload,
    }
}

impl TxOrder {
    /// Counts one change of `table` and gives its block; `Some(BEGIN record)` first when it
    /// is the transaction's first change.
    pub fn next(&mut self, table: &str, xid: i64, lsn: u64, ts_ms: i64, topic: &str, conv: &ConverterConfig) -> (TxBlock, Option<Message>) {
        let begin = (self.total == 0).then(|| record(topic, conv, &format!("{xid}:{lsn}"), "BEGIN", None, ts_ms));
        self.total += 1;
        let n = match self.tables.iter_mut().find(|(t, _)| t == table) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.tables.push((table.to_string(), 1));
                1
            }
        };
        (TxBlock { id: format!("{xid}:{lsn}"), total_order: self.total, data_collection_order: n }, begin)
    }

    /// The END record at the commit (`end_lsn`: the commit's end; `None` when the transaction
    /// emitted no change).
    pub fn end(&self, xid: i64, end_lsn: u64, ts_ms: i64, topic: &str, conv: &ConverterConfig) -> Option<Message> {
        (self.total > 0).then(|| record(topic, conv, &format!("{xid}:{end_lsn}"), "END", Some(self), ts_ms))
    }

    /// The tables in `java.util.HashMap`'s iteration order: by bucket (the spread
    /// `String.hashCode()` masked by the table's capacity, 16 doubled past a 0.75 load),
    /// then in insertion order within a bucket.
    fn tables_in_hashmap_order(&self) -> Vec<&(String, i64)> {
        let mut cap = 16usize;
        while self.tables.len() > cap * 3 / 4 {
            cap *= 2;
        }
        let bucket = |s: &str| {
            let h = s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
            ((h ^ ((h as u32) >> 16) as i32) as u32 as usize) & (cap - 1)
        };
        let mut v: Vec<(usize, usize, &(String, i64))> = self.tables.iter().enumerate().map(|(i, t)| (bucket(&t.0), i, t)).collect();
        v.sort();
        v.into_iter().map(|(_, _, t)| t).collect()
    }
}

fn record(topic: &str, conv: &ConverterConfig, id: &str, status: &str, counts: Option<&TxOrder>, ts_ms: i64) -> Message {
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let (count, collections) = match counts {
        Some(o) => (
            o.total.to_string(),
            format!(
                "[{}]",
                o.tables_in_hashmap_order()
                    .into_iter()
                    .map(|(t, n)| format!(r#"{{"data_collection":{},"event_count":{n}}}"#, q(t)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        None => ("null".into(), "null".into()),
    };
    let value = format!(r#"{{"status":"{status}","id":{},"event_count":{count},"data_collections":{collections},"ts_ms":{ts_ms}}}"#, q(id));
    Message {
        topic: topic.to_string(),
        key: Key::Text(wrap(conv.key, KEY_SCHEMA, format!(r#"{{"id":{}}}"#, q(id)))),
        payload: Payload::Text(wrap(conv.value, VALUE_SCHEMA, value)),
        ack_lsn: None,
        commit_ts_ms: ts_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_counts_as_debezium() {
        let conv = ConverterConfig::default();
        let mut o = TxOrder::default();
        let (b1, begin) = o.next("public.t", 746, 100, 5, "dbz.transaction", &conv);
        assert!(begin.is_some());
        let (b2, none) = o.next("public.t2", 746, 200, 5, "dbz.transaction", &conv);
        let (b3, _) = o.next("public.t", 746, 300, 5, "dbz.transaction", &conv);
        assert!(none.is_none());
        assert_eq!((b1.total_order, b1.data_collection_order, b2.total_order, b2.data_collection_order, b3.data_collection_order), (1, 1, 2, 1, 2));
        assert_eq!(b2.id, "746:200");
        let end = o.end(746, 400, 5, "dbz.transaction", &conv).unwrap();
        let Payload::Text(v) = end.payload else { panic!() };
        let v: serde_json::Value = serde_json::from_str(&v).unwrap();
        // Java: "public.t".hashCode() lands in a later bucket of 16 than "public.t2"'s.
        let order: Vec<&str> = v["payload"]["data_collections"].as_array().unwrap().iter().map(|c| c["data_collection"].as_str().unwrap()).collect();
        let mut want = vec!["public.t", "public.t2"];
        want.sort_by_key(|s| {
            let h = s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
            (h ^ ((h as u32) >> 16) as i32) & 15
        });
        assert_eq!(order, want);
        assert_eq!((v["payload"]["id"].as_str(), v["payload"]["event_count"].as_i64()), (Some("746:400"), Some(3)));
        assert!(TxOrder::default().end(1, 2, 3, "x", &conv).is_none());
    }
}
