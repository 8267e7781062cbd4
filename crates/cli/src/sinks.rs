//! Sinks that write records where a person (or a script) reads them: stdout and a durable
//! file, both as JSON lines `{"topic", "key", "value"}` after the configured converter.
//! The file sink fsyncs each batch before reporting it durable.

use std::io::Write;

use tensorcdc_change::json::{ConverterConfig, JsonWriter};
use tensorcdc_change::{Delivered, Message, Sink, SinkError};

fn render(bytes: Option<Vec<u8>>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => serde_json::from_slice(&b).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&b).into_owned())),
    }
}

/// One JSON line for a message.
pub fn json_line(m: &Message, conv: &mut JsonWriter) -> Vec<u8> {
    let (k, v) = conv.serialize(m);
    let mut line = serde_json::to_vec(&serde_json::json!({"topic": m.topic, "key": render(k), "value": render(v)})).expect("json");
    line.push(b'\n');
    line
}

/// Writes JSON lines to any writer; `sync` makes each batch durable (fsync) first.
pub struct LineSink<W: Write + Send> {
    out: W,
    conv: JsonWriter,
    sync: Option<std::fs::File>,
}

impl LineSink<std::io::Stdout> {
    pub fn stdout(conv: ConverterConfig) -> Self {
        LineSink { out: std::io::stdout(), conv: JsonWriter::new(conv), sync: None }
    }
}

impl LineSink<std::io::BufWriter<std::fs::File>> {
    /// Appends to `path`, fsyncing every batch.
    pub fn file(path: &std::path::Path, conv: ConverterConfig) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let sync = f.try_clone()?;
        Ok(LineSink { out: std::io::BufWriter::with_capacity(1 << 20, f), conv: JsonWriter::new(conv), sync: Some(sync) })
    }
}

#[async_trait::async_trait]
impl<W: Write + Send> Sink for LineSink<W> {
    async fn send(&mut self, batch: Vec<Message>, delivered: &Delivered) -> Result<(), SinkError> {
        let lsn = batch.iter().filter_map(|m| m.ack_lsn).max();
        for m in &batch {
            self.out.write_all(&json_line(m, &mut self.conv)).map_err(|e| SinkError::Permanent(e.to_string()))?;
        }
        self.out.flush().map_err(|e| SinkError::Permanent(e.to_string()))?;
        if let Some(f) = &self.sync {
            f.sync_data().map_err(|e| SinkError::Permanent(e.to_string()))?;
        }
        if let Some(l) = lsn {
            let _ = delivered.send(l);
        }
        Ok(())
    }
}
