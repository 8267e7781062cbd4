//! Sinks that write records where a person (or a script) reads them: stdout and a durable
//! file, both as JSON lines `{"topic", "key", "value"}` after the configured converter.
//! The file sink fsyncs each batch before reporting it durable.

use std::io::Write;

use tensorcdc_change::json::{ConverterConfig, JsonWriter};
use tensorcdc_change::{BatchAck, Key, Message, Payload, Sink, SinkError};

/// Appends `bytes` as the JSON of a line's `key` or `value`. What the converter wrote as JSON
/// (a row or an envelope, with either converter) goes in as it is, serialised once; raw text
/// (a transform's key or CSV value) goes in as JSON when it is a JSON document on one line
/// (the blog's key `3`), and as a JSON string otherwise.
fn push_json(out: &mut Vec<u8>, bytes: Option<Vec<u8>>, raw_text: bool) {
    match bytes {
        None => out.extend_from_slice(b"null"),
        Some(b) if !raw_text => out.extend_from_slice(&b),
        Some(b) if !b.contains(&b'\n') && serde_json::from_slice::<serde::de::IgnoredAny>(&b).is_ok() => out.extend_from_slice(&b),
        Some(b) => serde_json::to_writer(&mut *out, &String::from_utf8_lossy(&b)).expect("a string serialises"),
    }
}

/// Appends one JSON line `{"topic", "key", "value"}` for a message to `out`.
pub fn json_line(out: &mut Vec<u8>, m: &Message, conv: &mut JsonWriter) {
    let (k, v) = conv.serialize(m);
    out.extend_from_slice(b"{\"topic\":");
    serde_json::to_writer(&mut *out, &m.topic).expect("a string serialises");
    out.extend_from_slice(b",\"key\":");
    push_json(out, k, matches!(m.key, Key::Text(_) | Key::Derived { .. }));
    out.extend_from_slice(b",\"value\":");
    push_json(out, v, matches!(m.payload, Payload::Text(_)));
    out.extend_from_slice(b"}\n");
}

/// Writes JSON lines to any writer; `sync` makes each batch durable (fsync) first.
pub struct LineSink<W: Write + Send> {
    out: W,
    conv: JsonWriter,
    sync: Option<std::fs::File>,
    /// A batch's lines, written with one call.
    buf: Vec<u8>,
}

impl LineSink<std::io::Stdout> {
    pub fn stdout(conv: ConverterConfig) -> Self {
        LineSink { out: std::io::stdout(), conv: JsonWriter::new(conv), sync: None, buf: Vec::new() }
    }
}

impl LineSink<std::io::BufWriter<std::fs::File>> {
    /// Appends to `path`, fsyncing every batch.
    pub fn file(path: &std::path::Path, conv: ConverterConfig) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let sync = f.try_clone()?;
        Ok(LineSink { out: std::io::BufWriter::with_capacity(1 << 20, f), conv: JsonWriter::new(conv), sync: Some(sync), buf: Vec::new() })
    }
}

impl<W: Write + Send> LineSink<W> {
    /// Writes the batch's lines with one call, then makes them durable (fsync) when a file.
    fn write_batch(&mut self) -> std::io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        if let Some(f) = &self.sync {
            f.sync_data()?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<W: Write + Send> Sink for LineSink<W> {
    async fn send(&mut self, batch: Vec<Message>, ack: BatchAck) -> Result<(), SinkError> {
        self.buf.clear();
        for m in &batch {
            json_line(&mut self.buf, m, &mut self.conv);
        }
        match self.write_batch() {
            Ok(()) => {
                ack.done();
                Ok(())
            }
            Err(e) => {
                let e = SinkError::Permanent(e.to_string());
                ack.failed(e.clone());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: Key, payload: Payload) -> serde_json::Value {
        let m = Message { topic: "tf.public.t".into(), key, payload, ack_lsn: None, commit_ts_ms: 0 };
        let mut out = Vec::new();
        json_line(&mut out, &m, &mut JsonWriter::new(ConverterConfig::default()));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn raw_text_is_json_when_it_is_a_document_and_a_string_otherwise() {
        // The blog's MnistToCsv record: key "3" (a JSON number), value a CSV line (a string).
        let v = line(Key::Text("3".into()), Payload::Text("0,12,255".into()));
        assert_eq!(v, serde_json::json!({"topic": "tf.public.t", "key": 3, "value": "0,12,255"}));
        // A JSON document over several lines stays one JSON-lines line: as a string.
        let v = line(Key::None, Payload::Text("{\n}".into()));
        assert_eq!(v, serde_json::json!({"topic": "tf.public.t", "key": null, "value": "{\n}"}));
        let v = line(Key::Text("a \"b\"".into()), Payload::Tombstone);
        assert_eq!(v, serde_json::json!({"topic": "tf.public.t", "key": "a \"b\"", "value": null}));
    }
}
