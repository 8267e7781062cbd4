//! Loading MNIST examples into a table (`tensorcdc mnist load`), the direct route next to
//! `psql -f mnist_train.sql`. The table is created as the SQL files create it; rows are sent
//! with binary `COPY ... FROM STDIN`, in order, so ids follow the file order.

use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use tensorcdc_dataset::Examples;
use tokio_postgres::Client;

use crate::CaptureError;

/// `CREATE TABLE IF NOT EXISTS <table>(id SERIAL NOT NULL PRIMARY KEY, label SMALLINT, pixels BYTEA)`.
pub fn create_table_sql(table: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {table}(id SERIAL NOT NULL PRIMARY KEY, label SMALLINT, pixels BYTEA)")
}

/// Creates `table` if needed and appends `examples` with binary COPY, committing every
/// `chunk` rows (one transaction per chunk, so a stream consumer sees rows arrive).
pub async fn load_examples(client: &Client, table: &str, examples: &Examples, chunk: usize) -> Result<u64, CaptureError> {
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(CaptureError::Config { key: "table".into(), reason: format!("{table:?} is not a plain table name") });
    }
    client.batch_execute(&create_table_sql(table)).await.map_err(|e| CaptureError::from_pg("CREATE TABLE", e))?;
    let chunk = chunk.max(1);
    let mut done = 0u64;
    for start in (0..examples.len()).step_by(chunk) {
        let end = (start + chunk).min(examples.len());
        let sink = client
            .copy_in(&format!("COPY {table}(label, pixels) FROM STDIN (FORMAT binary)"))
            .await
            .map_err(|e| CaptureError::from_pg("COPY FROM STDIN", e))?;
        futures::pin_mut!(sink);
        let mut buf = BytesMut::with_capacity(19 + (end - start) * 800);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_u32(0);
        buf.put_u32(0);
        for i in start..end {
            buf.put_i16(2);
            buf.put_i32(2);
            buf.put_i16(examples.labels[i] as i16);
            let px = examples.image(i);
            buf.put_i32(px.len() as i32);
            buf.put_slice(px);
        }
        buf.put_i16(-1);
        sink.send(buf.freeze()).await.map_err(|e| CaptureError::from_pg("COPY FROM STDIN", e))?;
        done += sink.finish().await.map_err(|e| CaptureError::from_pg("COPY FROM STDIN", e))?;
    }
    Ok(done)
}
