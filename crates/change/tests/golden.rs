//! The converter's JSON against example events kept in `tests/golden/`, written by hand in
//! the layout of Debezium's PostgreSQL connector documentation (create event with schema;
//! update with REPLICA IDENTITY FULL and delete with DEFAULT, without schema; the key), in
//! Debezium 2's envelope (`tensorcdc.envelope.version=2`). Debezium 3's, the default, is
//! compared with the real Debezium 3.6 by `crates/cli/tests/debezium_diff.rs`.

use std::sync::Arc;

use serde_json::Value as J;
use tensorcdc_change::json::{serialize, Converter, ConverterConfig, EnvelopeVersion};
use tensorcdc_change::{ChangeEvent, Field, FieldType, Lsn, Message, Op, Row, Snapshot, Source, Value, VERSION};

fn golden(name: &str) -> J {
    let text = std::fs::read_to_string(format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_json::from_str(&text.replace("\"VERSION\"", &format!("\"{VERSION}\""))).unwrap()
}

fn fields() -> Arc<Vec<Field>> {
    Arc::new(vec![Field::new("id", FieldType::Int32, false), Field::new("label", FieldType::Int16, true), Field::new("pixels", FieldType::Bytes, true)])
}

fn row(label: Option<i16>, pixels: Option<Vec<u8>>) -> Row {
    Row::new(fields(), vec![Value::Int32(1), label.map_or(Value::Null, Value::Int16), pixels.map_or(Value::Null, Value::Bytes)])
}

fn event(op: Op, before: Option<Row>, after: Option<Row>, tx: i64, lsn: u64, ts_ms: i64) -> Message {
    let key = Row::new(Arc::new(vec![fields()[0].clone()]), vec![Value::Int32(1)]);
    Message::from_event(
        ChangeEvent {
            op,
            before,
            after,
            source: Source {
                name: "tf".into(),
                ts_ms: 1559033904863,
                ts_us: 1559033904863000,
                snapshot: Snapshot::False,
                db: "postgres".into(),
                schema: "public".into(),
                table: "mnist_train".into(),
                tx_id: Some(tx),
                lsn: Some(Lsn(lsn)),
                last_commit_lsn: None,
            },
            ts_ms,
            ts_ns: ts_ms * 1_000_000,
            key: Some(key),
            fields: None,
            transaction: None,
        },
        None,
    )
}

const PX: [u8; 5] = [0, 0, 127, 128, 255];

fn value(msg: &Message, schemas: bool) -> J {
    let cfg = ConverterConfig { value: Converter::Json { schemas }, envelope: EnvelopeVersion::V2, ..Default::default() };
    serde_json::from_slice(&serialize(msg, &cfg).1.unwrap()).unwrap()
}

#[test]
fn insert_with_schema() {
    let m = event(Op::Create, None, Some(row(Some(5), Some(PX.to_vec()))), 555, 24023128, 1559033904863);
    assert_eq!(value(&m, true), golden("insert.json"));
    assert_eq!(m.topic, "tf.public.mnist_train");
}

#[test]
fn update_without_schema() {
    let m = event(Op::Update, Some(row(Some(5), Some(PX.to_vec()))), Some(row(Some(3), Some(PX.to_vec()))), 556, 24023128, 1465584025523);
    assert_eq!(value(&m, false), golden("update.json"));
}

#[test]
fn delete_without_schema() {
    let m = event(Op::Delete, Some(row(None, None)), None, 556, 46523128, 1465581902461);
    assert_eq!(value(&m, false), golden("delete.json"));
}

#[test]
fn key_with_schema() {
    let m = event(Op::Create, None, Some(row(Some(5), None)), 1, 1, 1);
    let k: J = serde_json::from_slice(&serialize(&m, &ConverterConfig::default()).0.unwrap()).unwrap();
    assert_eq!(k, golden("key.json"));
}
