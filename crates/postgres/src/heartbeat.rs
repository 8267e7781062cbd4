//! Heartbeats, as Debezium's (`heartbeat.interval.ms`, `heartbeat.action.query`,
//! `topic.heartbeat.prefix`): a slot whose tables see no change still moves on.
//!
//! Every interval the stream (1) runs the action query, when one is set, on the SQL connection
//! (Debezium's way to make WAL in the captured database, e.g. an upsert into a heartbeat
//! table), (2) sends a heartbeat record to `<topic.heartbeat.prefix>.<topic.prefix>`, and (3)
//! asks the server for a keepalive (a standby status update with the reply flag), whose WAL
//! position is confirmed when nothing emitted is undelivered. Without (3) the server sends
//! keepalives only every `wal_sender_timeout / 2`, and a slot on a busy server whose captured
//! tables are idle falls that far behind.
//!
//! The record is Debezium's: key struct `io.debezium.connector.common.ServerNameKey`
//! (`serverName`: the topic prefix), value struct `io.debezium.connector.common.Heartbeat`
//! (`ts_ms`), both version 1, through the configured converters.

use tensorcdc_change::json::{Converter, ConverterConfig};
use tensorcdc_change::{BatchAck, Key, Message, Payload, PendingAck, Sink};
use tokio_postgres::Client;

use crate::config::CaptureConfig;
use crate::replication::ReplicationConn;
use crate::CaptureError;

/// One heartbeat: the action query, the record, a keepalive asked for (`confirmed`: the LSN
/// the stream has confirmed so far, sent again with the request).
pub(crate) async fn beat(
    cfg: &CaptureConfig,
    client: &Client,
    sink: &mut dyn Sink,
    pending: &mut std::collections::VecDeque<PendingAck>,
    session: u64,
    repl: &mut ReplicationConn,
    confirmed: u64,
) -> Result<(), CaptureError> {
    if let Some(q) = &cfg.heartbeat_action_query {
        // A query that cannot run (syntax, a missing table or column: class 42) is the user's to
        // fix; anything else (a restart, a deadlock, a timeout) is retried as any server error.
        client.batch_execute(q).await.map_err(|e| match e.as_db_error() {
            Some(db) if db.code().code().starts_with("42") => {
                CaptureError::Config { key: "heartbeat.action.query".into(), reason: format!("{q:?} failed: {}", db.message()) }
            }
            _ => CaptureError::from_pg("heartbeat.action.query", e),
        })?;
    }
    let (ack, p) = BatchAck::new(None, session);
    pending.push_back(p);
    sink.send(vec![message(&cfg.heartbeat_topic_prefix, &cfg.topic_prefix, &cfg.converter, crate::engine::now_ms())], ack).await?;
    // The server answers with a keepalive at once: its WAL position, confirmed when idle.
    repl.send_status(confirmed, true).await
}

/// The heartbeat topic.
pub fn topic(heartbeat_prefix: &str, topic_prefix: &str) -> String {
    format!("{heartbeat_prefix}.{topic_prefix}")
}

/// One struct field of a heartbeat record as `conv` writes it: with Kafka Connect's JSON
/// schema, without it, or as the String converter prints a Struct.
fn render(conv: Converter, schema_name: &str, field: &str, field_type: &str, value: &str) -> String {
    match conv {
        Converter::Json { schemas: true } => format!(
            r#"{{"schema":{{"type":"struct","fields":[{{"type":"{field_type}","optional":false,"field":"{field}"}}],"optional":false,"name":"{schema_name}","version":1}},"payload":{{"{field}":{value}}}}}"#
        ),
        Converter::Json { schemas: false } => format!(r#"{{"{field}":{value}}}"#),
        Converter::String => format!("Struct{{{field}={}}}", value.trim_matches('"')),
    }
}

/// The heartbeat record at `now_ms`.
pub fn message(heartbeat_prefix: &str, topic_prefix: &str, conv: &ConverterConfig, now_ms: i64) -> Message {
    let server = serde_json::to_string(topic_prefix).expect("a string serialises");
    Message {
        topic: topic(heartbeat_prefix, topic_prefix),
        key: Key::Text(render(conv.key, "io.debezium.connector.common.ServerNameKey", "serverName", "string", &server)),
        payload: Payload::Text(render(conv.value, "io.debezium.connector.common.Heartbeat", "ts_ms", "int64", &now_ms.to_string())),
        ack_lsn: None,
        commit_ts_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_debezium_writes_it() {
        let with = ConverterConfig::default();
        let m = message("__debezium-heartbeat", "tf", &with, 1788182208680);
        assert_eq!(m.topic, "__debezium-heartbeat.tf");
        let Key::Text(k) = &m.key else { panic!() };
        let Payload::Text(v) = &m.payload else { panic!() };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(k).unwrap(),
            serde_json::json!({"schema": {"type": "struct", "fields": [{"type": "string", "optional": false, "field": "serverName"}],
                "optional": false, "name": "io.debezium.connector.common.ServerNameKey", "version": 1}, "payload": {"serverName": "tf"}})
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(v).unwrap(),
            serde_json::json!({"schema": {"type": "struct", "fields": [{"type": "int64", "optional": false, "field": "ts_ms"}],
                "optional": false, "name": "io.debezium.connector.common.Heartbeat", "version": 1}, "payload": {"ts_ms": 1788182208680i64}})
        );
        let without = ConverterConfig { key: Converter::Json { schemas: false }, value: Converter::String, ..with };
        let m = message("hb", "a\"b", &without, 5);
        assert!(matches!(&m.key, Key::Text(k) if k == r#"{"serverName":"a\"b"}"#));
        assert!(matches!(&m.payload, Payload::Text(v) if v == "Struct{ts_ms=5}"));
    }
}
