//! The consistent snapshot: every included table read with binary `COPY` inside the
//! slot's exported snapshot, each row a `read` event; the last row is marked
//! `snapshot: last`. Types without a binary decoder are selected as `::text`.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use tensorcdc_change::{Lsn, Message, Op, Row, Sink, Snapshot};
use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::info;

use crate::catalog::{build_rel, describe, list_tables, quote_ident, quote_lit, Rel};
use crate::engine::{now_ns, Ctx, TxMeta};
use crate::{types, CaptureError};

/// Reads the rows of a binary COPY stream, one `Vec<Option<Bytes>>` per row.
pub(crate) struct BinaryCopyReader {
    buf: BytesMut,
    header_done: bool,
}

impl BinaryCopyReader {
    pub(crate) fn new() -> Self {
        BinaryCopyReader { buf: BytesMut::new(), header_done: false }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Next complete row; `Ok(None)` when more bytes are needed or the trailer was read.
    pub(crate) fn next_row(&mut self, ncols: usize) -> Result<Option<Vec<Option<Bytes>>>, CaptureError> {
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(None);
            }
            if &self.buf[..11] != b"PGCOPY\n\xff\r\n\0" {
                return Err(CaptureError::Protocol("binary COPY: bad signature".into()));
            }
            let ext = u32::from_be_bytes([self.buf[15], self.buf[16], self.buf[17], self.buf[18]]) as usize;
            if self.buf.len() < 19 + ext {
                return Ok(None);
            }
            self.buf.advance(19 + ext);
            self.header_done = true;
        }
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let n = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        if n == -1 {
            self.buf.advance(2);
            return Ok(None);
        }
        if n as usize != ncols {
            return Err(CaptureError::Protocol(format!("binary COPY: row has {n} fields, expected {ncols}")));
        }
        // Check the whole row is buffered before consuming it.
        let mut pos = 2;
        for _ in 0..n {
            if self.buf.len() < pos + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes([self.buf[pos], self.buf[pos + 1], self.buf[pos + 2], self.buf[pos + 3]]);
            pos += 4 + len.max(0) as usize;
            if self.buf.len() < pos {
                return Ok(None);
            }
        }
        let mut row = self.buf.split_to(pos).freeze();
        row.advance(2);
        let mut out = Vec::with_capacity(ncols);
        for _ in 0..n {
            let len = row.get_i32();
            out.push(if len < 0 { None } else { Some(row.split_to(len as usize)) });
        }
        Ok(Some(out))
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn snapshot(
    ctx: &Ctx<'_>,
    client: &Client,
    snapshot_name: Option<&str>,
    consistent: Lsn,
    sink: &mut dyn Sink,
    pending: &mut std::collections::VecDeque<tensorcdc_change::PendingAck>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let pg = |c: &'static str| move |e| CaptureError::from_pg(c, e);
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg("BEGIN snapshot"))?;
    if let Some(name) = snapshot_name {
        client.batch_execute(&format!("SET TRANSACTION SNAPSHOT {}", quote_lit(name))).await.map_err(pg("SET TRANSACTION SNAPSHOT"))?;
    }
    let tables = list_tables(ctx.cfg, client).await?;
    info!("snapshot of {} tables", tables.len());
    // Debezium reports the snapshot transaction's id (`txid_current()`) and its start time.
    let xid: i64 = client.query_one("SELECT txid_current()", &[]).await.map_err(pg("txid_current"))?.get(0);
    let tx = TxMeta { ts_us: now_ns().div_euclid(1000), xid: Some(xid), last_commit: None };
    let lsn = (consistent.0 != 0).then_some(consistent);
    // One row is held back until the next shows whether it was the last of its table (for
    // Debezium's first/last markers, `Snapshot::of_row`).
    let mut held: Option<(Arc<Rel>, Row, bool)> = None;
    let mut batch: Vec<Message> = Vec::with_capacity(ctx.cfg.max_batch_size);
    let mut rows_done = 0u64;
    for (schema, table, oid) in &tables {
        let mut first_in_table = true;
        let (cols, pk) = describe(client, *oid, &mut *ctx.types.lock().await).await?;
        let estimate: f32 = client.query_one("SELECT reltuples FROM pg_class WHERE oid = $1", &[oid]).await.map_err(pg("pg_class.reltuples"))?.get(0);
        let table_start = rows_done;
        ctx.stats.lock().expect("stats").snapshot_table = Some((format!("{schema}.{table}"), 0, estimate as i64));
        let rel = Arc::new(build_rel(ctx.cfg, schema, table, &cols, &pk));
        // Only the columns that become fields; types we cannot decode in binary are read as
        // text (`types::from_copy` knows which).
        let cols: Vec<&crate::catalog::Column> = rel.keep.iter().map(|&i| &cols[i]).collect();
        let select: Vec<String> =
            cols.iter().map(|c| if c.ty.binary_supported() { quote_ident(&c.name) } else { format!("{}::text", quote_ident(&c.name)) }).collect();
        let sql = format!("COPY (SELECT {} FROM {}.{}) TO STDOUT (FORMAT binary)", select.join(", "), quote_ident(schema), quote_ident(table));
        let stream = client.copy_out(sql.as_str()).await.map_err(pg("COPY snapshot"))?;
        futures::pin_mut!(stream);
        let mut reader = BinaryCopyReader::new();
        let ncols = cols.len();
        loop {
            while let Some(fields) = reader.next_row(ncols)? {
                let values = fields
                    .into_iter()
                    .zip(&cols)
                    .enumerate()
                    .map(|(i, (v, c))| {
                        types::from_copy(&c.ty, v, &rel.settings)
                            .map_err(|e| CaptureError::Protocol(format!("snapshot of {schema}.{table} column {}: {e}", cols[i].name)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let row = Row::new(rel.fields.clone(), values);
                if let Some((r, prev, first)) = held.replace((rel.clone(), row, first_in_table)) {
                    let marker = Snapshot::of_row(rows_done == 0, false, first, !Arc::ptr_eq(&r, &rel));
                    ctx.event(&mut batch, &r, Op::Read, None, Some(prev), marker, &tx, lsn, None);
                    rows_done += 1;
                }
                first_in_table = false;
                if batch.len() >= ctx.cfg.max_batch_size {
                    crate::stream::send(ctx, sink, std::mem::take(&mut batch), pending).await?;
                    let mut st = ctx.stats.lock().expect("stats");
                    st.snapshot_rows = rows_done;
                    if let Some(t) = st.snapshot_table.as_mut() {
                        t.1 = rows_done - table_start;
                    }
                    drop(st);
                    if *shutdown.borrow() {
                        return Err(CaptureError::Setup("shut down during the snapshot".into()));
                    }
                }
            }
            match stream.next().await {
                Some(chunk) => reader.push(&chunk.map_err(pg("COPY snapshot"))?),
                None => break,
            }
        }
    }
    if let Some((r, last, first)) = held.take() {
        // As Debezium, which holds its last record back too: the snapshot's very last row
        // is `last`, even when the tables after its own are empty.
        ctx.event(&mut batch, &r, Op::Read, None, Some(last), Snapshot::of_row(rows_done == 0, true, first, true), &tx, lsn, None);
        rows_done += 1;
    }
    if !batch.is_empty() {
        crate::stream::send(ctx, sink, batch, pending).await?;
    }
    sink.flush().await?;
    client.batch_execute("COMMIT").await.map_err(pg("COMMIT snapshot"))?;
    let mut s = ctx.stats.lock().expect("stats");
    s.snapshot_rows = rows_done;
    s.messages += rows_done;
    info!("snapshot done: {rows_done} rows");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_copy_rows_split_across_chunks() {
        let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&0u32.to_be_bytes());
        for i in 0..3i32 {
            data.extend_from_slice(&2i16.to_be_bytes());
            data.extend_from_slice(&4i32.to_be_bytes());
            data.extend_from_slice(&i.to_be_bytes());
            data.extend_from_slice(&(-1i32).to_be_bytes());
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let mut r = BinaryCopyReader::new();
        let mut rows = Vec::new();
        for chunk in data.chunks(5) {
            r.push(chunk);
            while let Some(row) = r.next_row(2).unwrap() {
                rows.push(row);
            }
        }
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2][0].as_deref(), Some(&2i32.to_be_bytes()[..]));
        assert_eq!(rows[1][1], None);
    }
}
