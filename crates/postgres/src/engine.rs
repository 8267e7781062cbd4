//! The capture engine: publication and slot lifecycle, the consistent snapshot, the
//! stream, and acknowledgements.
//!
//! **The acknowledgement rule.** An LSN is confirmed to Postgres (standby status update,
//! which moves the slot's `confirmed_flush_lsn`) only when every message of every
//! transaction that committed at or before it has been reported durable by the sink. The
//! last message of each transaction carries the transaction's end LSN (`ack_lsn`); sinks
//! report delivery in order, so a reported LSN covers everything before it. A transaction
//! that produced no message (nothing captured in it), and the server's keepalive position,
//! are confirmed only while nothing emitted is still undelivered. A crash can therefore
//! repeat messages after the last confirmed LSN, but never lose one: on restart the slot
//! resends every transaction that committed after `confirmed_flush_lsn`.
//!
//! **Snapshot and stream hand-off.** A new slot is created with an exported snapshot; the
//! snapshot reads every included table inside that snapshot (`SET TRANSACTION SNAPSHOT`),
//! then the stream starts at the slot's consistent point, so each row is either in the
//! snapshot or in the stream, never both, never neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use tensorcdc_change::{ChangeEvent, Field, Lsn, Message, Op, Payload, Row, Sink, Snapshot, Source, Value};
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, NoTls};
use tracing::{debug, info, warn};

use crate::config::{CaptureConfig, PublicationMode, SnapshotMode};
use crate::pgoutput::{self, LogicalMessage, TupleValue};
use crate::replication::{pg_ts_to_unix_ms, ReplicationConn, ReplicationMessage};
use crate::{types, CaptureError};

/// A transform chain: one message in, zero or more pushed to the output.
pub type Transform = Arc<dyn Fn(Message, &mut Vec<Message>) + Send + Sync>;

/// The chain that changes nothing.
pub fn identity() -> Transform {
    Arc::new(|m, out| out.push(m))
}

/// Counters, readable while capture runs.
#[derive(Debug, Clone, Default)]
pub struct CaptureStats {
    pub snapshot_rows: u64,
    pub streamed_changes: u64,
    pub messages: u64,
    pub transactions: u64,
    /// Transactions Postgres streamed while in progress (larger than `logical_decoding_work_mem`).
    pub streamed_transactions: u64,
    pub confirmed_lsn: Lsn,
    pub snapshot_done: bool,
    pub streaming: bool,
    /// Things a person should know (include-list entries that match no table yet, ...).
    pub warnings: Vec<String>,
}

/// A captured table, as the engine knows it.
#[derive(Debug)]
struct Rel {
    schema: Arc<str>,
    table: Arc<str>,
    topic: String,
    type_oids: Vec<u32>,
    fields: Arc<Vec<Field>>,
    key_idx: Vec<usize>,
    key_fields: Arc<Vec<Field>>,
    included: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Column names, types and NOT NULL, and the primary key, from the catalog.
async fn describe(client: &Client, oid: u32) -> Result<(Vec<(String, u32, bool)>, Vec<String>), CaptureError> {
    let cols = client
        .query(
            "SELECT attname::text, atttypid::oid, attnotnull FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(|e| CaptureError::from_pg("describe table", e))?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, u32>(1), r.get::<_, bool>(2)))
        .collect();
    let pk = client
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            &[&oid],
        )
        .await
        .map_err(|e| CaptureError::from_pg("describe primary key", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok((cols, pk))
}

fn build_rel(cfg: &CaptureConfig, schema: &str, table: &str, cols: &[(String, u32, bool)], key_names: &[String]) -> Rel {
    let fields: Vec<Field> = cols.iter().map(|(n, oid, notnull)| Field::new(n.clone(), types::field_type(*oid), !notnull)).collect();
    let key_idx: Vec<usize> = key_names.iter().filter_map(|k| cols.iter().position(|c| &c.0 == k)).collect();
    let key_fields = key_idx.iter().map(|&i| Field { optional: false, ..fields[i].clone() }).collect();
    Rel {
        schema: schema.into(),
        table: table.into(),
        topic: format!("{}.{schema}.{table}", cfg.topic_prefix),
        type_oids: cols.iter().map(|c| c.1).collect(),
        fields: Arc::new(fields),
        key_idx,
        key_fields: Arc::new(key_fields),
        included: cfg.includes(schema, table),
    }
}

impl Rel {
    fn key_of(&self, row: &Row) -> Option<Row> {
        if self.key_idx.is_empty() {
            return None;
        }
        Some(Row::new(self.key_fields.clone(), self.key_idx.iter().map(|&i| row.values[i].clone()).collect()))
    }

    fn row(&self, tuple: &[TupleValue], lsn: u64) -> Result<Row, CaptureError> {
        if tuple.len() != self.type_oids.len() {
            return Err(CaptureError::Protocol(format!(
                "{}.{} at LSN {}: tuple has {} columns, relation has {}",
                self.schema, self.table, Lsn(lsn), tuple.len(), self.type_oids.len()
            )));
        }
        let values = tuple
            .iter()
            .zip(&self.type_oids)
            .enumerate()
            .map(|(i, (v, oid))| {
                types::from_tuple(*oid, v).map_err(|e| {
                    CaptureError::Protocol(format!("{}.{} column {} at LSN {}: {e}", self.schema, self.table, self.fields[i].name, Lsn(lsn)))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Row::new(self.fields.clone(), values))
    }
}

/// Shared pieces of one capture session.
struct Ctx<'a> {
    cfg: &'a CaptureConfig,
    transform: &'a Transform,
    stats: &'a Arc<Mutex<CaptureStats>>,
    prefix: Arc<str>,
    db: Arc<str>,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn event(&self, out: &mut Vec<Message>, rel: &Rel, op: Op, before: Option<Row>, after: Option<Row>, snapshot: Snapshot, ts_ms: i64, tx_id: Option<i64>, lsn: Option<Lsn>) {
        if self.cfg.skipped_ops.iter().any(|o| o == op.code()) {
            return;
        }
        let key = after.as_ref().or(before.as_ref()).and_then(|r| rel.key_of(r));
        let event = ChangeEvent {
            op,
            before,
            after,
            source: Source {
                name: self.prefix.clone(),
                ts_ms,
                snapshot,
                db: self.db.clone(),
                schema: rel.schema.clone(),
                table: rel.table.clone(),
                tx_id,
                lsn,
            },
            ts_ms: now_ms(),
            key,
        };
        let msg = Message {
            topic: rel.topic.clone(),
            key: event.key.clone().map_or(tensorcdc_change::Key::None, tensorcdc_change::Key::Row),
            commit_ts_ms: ts_ms,
            ack_lsn: None,
            payload: Payload::Envelope(event),
        };
        let tombstone = (op == Op::Delete && self.cfg.tombstones_on_delete).then(|| Message {
            topic: msg.topic.clone(),
            key: msg.key.clone(),
            payload: Payload::Tombstone,
            ack_lsn: None,
            commit_ts_ms: msg.commit_ts_ms,
        });
        (self.transform)(msg, out);
        if let Some(t) = tombstone {
            // A tombstone passes the chain as a tombstone (transforms keep or drop it).
            (self.transform)(t, out);
        }
    }
}

/// The offsets file (`offset.storage.file.filename`): whether the snapshot of a slot completed.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Offsets {
    slot: String,
    snapshot_completed: bool,
}

fn read_offsets(cfg: &CaptureConfig) -> Option<Offsets> {
    let path = cfg.offset_file.as_ref()?;
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_offsets(cfg: &CaptureConfig, completed: bool) -> Result<(), CaptureError> {
    let Some(path) = &cfg.offset_file else { return Ok(()) };
    let o = Offsets { slot: cfg.slot_name.clone(), snapshot_completed: completed };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&o).expect("serialises"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| CaptureError::Config { key: "offset.storage.file.filename".into(), reason: format!("{}: {e}", path.display()) })
}

/// Runs capture until `shutdown` turns true (or, for `initial_only`, the snapshot is done),
/// retrying retryable errors with exponential backoff.
pub async fn run_capture(
    cfg: CaptureConfig,
    transform: Transform,
    sink: &mut dyn Sink,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<Mutex<CaptureStats>>,
) -> Result<CaptureStats, CaptureError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        match session(&cfg, &transform, sink, &mut shutdown, &stats).await {
            Ok(()) => {
                if cfg.drop_slot_on_stop {
                    drop_slot(&cfg).await;
                }
                return Ok(stats.lock().expect("stats").clone());
            }
            Err(e) if e.is_retryable() => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(200);
                }
                warn!("capture: {e}; retrying in {backoff:?}");
                eprintln!("capture: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(stats.lock().expect("stats").clone()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
        if *shutdown.borrow() {
            return Ok(stats.lock().expect("stats").clone());
        }
    }
}

/// Drops the slot (best effort, `slot.drop.on.stop`).
async fn drop_slot(cfg: &CaptureConfig) {
    if let Ok(client) = connect_sql(cfg).await {
        for _ in 0..50 {
            match client.execute("SELECT pg_drop_replication_slot($1)", &[&cfg.slot_name]).await {
                Ok(_) => return,
                // Still active for a moment after our connection closed.
                Err(e) if e.code().is_some_and(|c| c.code() == "55006") => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    warn!("dropping slot {}: {e}", cfg.slot_name);
                    return;
                }
            }
        }
    }
}

async fn connect_sql(cfg: &CaptureConfig) -> Result<Client, CaptureError> {
    let (client, conn) = cfg.pg_config().connect(NoTls).await.map_err(|e| {
        if e.as_db_error().is_some() {
            let mut err = CaptureError::from_pg("connect", e);
            if let CaptureError::Auth { user, .. } = &mut err {
                *user = cfg.user.clone();
            }
            err
        } else {
            CaptureError::Connect { addr: format!("{}:{}", cfg.host, cfg.port), reason: e.to_string() }
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!("sql connection ended: {e}");
        }
    });
    Ok(client)
}

async fn session(
    cfg: &CaptureConfig,
    transform: &Transform,
    sink: &mut dyn Sink,
    shutdown: &mut watch::Receiver<bool>,
    stats: &Arc<Mutex<CaptureStats>>,
) -> Result<(), CaptureError> {
    let client = connect_sql(cfg).await?;
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await.map_err(|e| CaptureError::from_pg("SHOW wal_level", e))?.get(0);
    if wal_level != "logical" {
        return Err(CaptureError::Setup(format!(
            "Postgres at {}:{} has wal_level = {wal_level}; logical replication needs wal_level = logical \
             (run `ALTER SYSTEM SET wal_level = logical` and restart the server)",
            cfg.host, cfg.port
        )));
    }
    ensure_publication(cfg, &client).await?;
    let tables = list_tables(cfg, &client).await?;
    for re in &cfg.include {
        if !tables.iter().any(|(s, t, _)| re.is_match(&format!("{s}.{t}"))) {
            let pattern = re.as_str().trim_start_matches("^(?:").trim_end_matches(")$").to_string();
            let w = format!("table.include.list entry {pattern:?} matches no table yet; its rows will be captured once such a table exists");
            warn!("{w}");
            let mut st = stats.lock().expect("stats");
            if !st.warnings.contains(&w) {
                st.warnings.push(w);
            }
        }
    }

    // The slot: reuse it, or create it with an exported snapshot.
    let mut slot = slot_state(cfg, &client).await?;
    for _ in 0..50 {
        match slot {
            Some((Some(_pid), _)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                slot = slot_state(cfg, &client).await?;
            }
            _ => break,
        }
    }
    if let Some((Some(pid), _)) = slot {
        return Err(CaptureError::Setup(format!(
            "replication slot {:?} is in use by another process (PID {pid}); stop the other capture or choose another slot.name",
            cfg.slot_name
        )));
    }
    let offsets = read_offsets(cfg);
    let snapshot_incomplete = slot.is_some()
        && cfg.snapshot_mode != SnapshotMode::Never
        && offsets.as_ref().is_some_and(|o| o.slot == cfg.slot_name && !o.snapshot_completed);
    let mut repl = ReplicationConn::connect(&cfg.pg_config(), "tensorcdc").await?;
    if snapshot_incomplete {
        warn!("the snapshot of slot {} did not complete; dropping the slot and starting over", cfg.slot_name);
        repl.simple_query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(&cfg.slot_name))).await?;
        slot = None;
    }
    let ctx = Ctx { cfg, transform, stats, prefix: cfg.topic_prefix.as_str().into(), db: cfg.dbname.as_str().into() };
    let (delivered_tx, mut delivered_rx) = mpsc::unbounded_channel::<Lsn>();
    let mut start_lsn = Lsn(0);
    if slot.is_none() {
        let want_snapshot = cfg.snapshot_mode != SnapshotMode::Never;
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}",
            quote_ident(&cfg.slot_name),
            if want_snapshot { "EXPORT_SNAPSHOT" } else { "NOEXPORT_SNAPSHOT" }
        );
        let rows = repl.simple_query(&sql).await?;
        let row = rows.first().ok_or_else(|| CaptureError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))?;
        let consistent: Lsn = row.get(1).cloned().flatten().unwrap_or_default().parse().map_err(CaptureError::Protocol)?;
        start_lsn = consistent;
        info!("created slot {} at {consistent}", cfg.slot_name);
        if want_snapshot {
            write_offsets(cfg, false)?;
            let name = row.get(2).cloned().flatten();
            let r = snapshot(&ctx, &client, name.as_deref(), consistent, sink, &delivered_tx, shutdown).await;
            if let Err(e) = r {
                // Do not leave a slot whose snapshot never completed: the next start must snapshot again.
                let _ = repl.simple_query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(&cfg.slot_name))).await;
                return Err(e);
            }
            write_offsets(cfg, true)?;
        }
    } else if cfg.snapshot_mode == SnapshotMode::InitialOnly {
        snapshot(&ctx, &client, None, Lsn(0), sink, &delivered_tx, shutdown).await?;
    }
    stats.lock().expect("stats").snapshot_done = true;
    if cfg.snapshot_mode == SnapshotMode::InitialOnly || *shutdown.borrow() {
        repl.close().await;
        return Ok(());
    }
    stream(&ctx, &client, repl, start_lsn, sink, delivered_tx, &mut delivered_rx, shutdown).await
}

async fn slot_state(cfg: &CaptureConfig, client: &Client) -> Result<Option<(Option<i32>, Option<String>)>, CaptureError> {
    let rows = client
        .query(
            "SELECT active_pid, confirmed_flush_lsn::text, plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&cfg.slot_name],
        )
        .await
        .map_err(|e| CaptureError::from_pg("look up the replication slot", e))?;
    let Some(r) = rows.first() else { return Ok(None) };
    let plugin: Option<String> = r.get(2);
    let db: Option<String> = r.get(3);
    if plugin.as_deref() != Some("pgoutput") || db.as_deref() != Some(cfg.dbname.as_str()) {
        return Err(CaptureError::Config {
            key: "slot.name".into(),
            reason: format!("slot {:?} exists for plugin {plugin:?} in database {db:?}, not pgoutput in {:?}", cfg.slot_name, cfg.dbname),
        });
    }
    Ok(Some((r.get(0), r.get(1))))
}

async fn ensure_publication(cfg: &CaptureConfig, client: &Client) -> Result<(), CaptureError> {
    let exists = !client
        .query("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&cfg.publication_name])
        .await
        .map_err(|e| CaptureError::from_pg("look up the publication", e))?
        .is_empty();
    if exists {
        return Ok(());
    }
    let name = quote_ident(&cfg.publication_name);
    let sql = match cfg.publication_mode {
        PublicationMode::Disabled => {
            return Err(CaptureError::Config {
                key: "publication.autocreate.mode".into(),
                reason: format!("disabled, and publication {:?} does not exist", cfg.publication_name),
            })
        }
        PublicationMode::AllTables => format!("CREATE PUBLICATION {name} FOR ALL TABLES"),
        PublicationMode::Filtered => {
            let tables = list_tables(cfg, client).await?;
            if tables.is_empty() {
                return Err(CaptureError::Config { key: "table.include.list".into(), reason: "matches no table (filtered publication needs at least one)".into() });
            }
            let list: Vec<String> = tables.iter().map(|(s, t, _)| format!("{}.{}", quote_ident(s), quote_ident(t))).collect();
            format!("CREATE PUBLICATION {name} FOR TABLE {}", list.join(", "))
        }
    };
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        // Another process created it meanwhile.
        Err(e) if e.code().is_some_and(|c| c.code() == "42710") => Ok(()),
        Err(e) => Err(CaptureError::from_pg("CREATE PUBLICATION", e)),
    }
}

/// Included tables: (schema, table, oid).
async fn list_tables(cfg: &CaptureConfig, client: &Client) -> Result<Vec<(String, String, u32)>, CaptureError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| CaptureError::from_pg("list tables", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, u32>(2)))
        .filter(|(s, t, _)| cfg.includes(s, t))
        .collect())
}

/// Reads the rows of a binary COPY stream, one `Vec<Option<Bytes>>` per row.
struct BinaryCopyReader {
    buf: BytesMut,
    header_done: bool,
}

impl BinaryCopyReader {
    fn new() -> Self {
        BinaryCopyReader { buf: BytesMut::new(), header_done: false }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Next complete row; `Ok(None)` when more bytes are needed or the trailer was read.
    fn next_row(&mut self, ncols: usize) -> Result<Option<Vec<Option<Bytes>>>, CaptureError> {
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
async fn snapshot(
    ctx: &Ctx<'_>,
    client: &Client,
    snapshot_name: Option<&str>,
    consistent: Lsn,
    sink: &mut dyn Sink,
    delivered: &mpsc::UnboundedSender<Lsn>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let pg = |c: &'static str| move |e| CaptureError::from_pg(c, e);
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg("BEGIN snapshot"))?;
    if let Some(name) = snapshot_name {
        client.batch_execute(&format!("SET TRANSACTION SNAPSHOT {}", quote_lit(name))).await.map_err(pg("SET TRANSACTION SNAPSHOT"))?;
    }
    let tables = list_tables(ctx.cfg, client).await?;
    info!("snapshot of {} tables", tables.len());
    let ts = now_ms();
    let lsn = (consistent.0 != 0).then_some(consistent);
    // One message is held back so the very last row can be marked `snapshot: last`.
    let mut held: Option<(Arc<Rel>, Row)> = None;
    let mut batch: Vec<Message> = Vec::with_capacity(ctx.cfg.max_batch_size);
    let mut rows_done = 0u64;
    for (schema, table, oid) in &tables {
        let (cols, pk) = describe(client, *oid).await?;
        // Types we cannot decode in binary are read as text.
        let mut select = Vec::new();
        let mut copy_cols = Vec::new();
        for (name, t, notnull) in &cols {
            if types::binary_supported(*t) {
                select.push(quote_ident(name));
                copy_cols.push((name.clone(), *t, *notnull));
            } else {
                select.push(format!("{}::text", quote_ident(name)));
                copy_cols.push((name.clone(), types::TEXT, *notnull));
            }
        }
        let mut rel = build_rel(ctx.cfg, schema, table, &cols, &pk);
        rel.type_oids = copy_cols.iter().map(|c| c.1).collect();
        let rel = Arc::new(rel);
        let sql = format!("COPY (SELECT {} FROM {}.{}) TO STDOUT (FORMAT binary)", select.join(", "), quote_ident(schema), quote_ident(table));
        let stream = client.copy_out(sql.as_str()).await.map_err(pg("COPY snapshot"))?;
        futures::pin_mut!(stream);
        let mut reader = BinaryCopyReader::new();
        let ncols = cols.len();
        loop {
            while let Some(fields) = reader.next_row(ncols)? {
                let values = fields
                    .into_iter()
                    .zip(&rel.type_oids)
                    .enumerate()
                    .map(|(i, (v, oid))| {
                        types::from_copy(*oid, v).map_err(|e| CaptureError::Protocol(format!("snapshot of {schema}.{table} column {}: {e}", cols[i].0)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let row = Row::new(rel.fields.clone(), values);
                if let Some((r, prev)) = held.replace((rel.clone(), row)) {
                    ctx.event(&mut batch, &r, Op::Read, None, Some(prev), Snapshot::True, ts, None, lsn);
                    rows_done += 1;
                }
                if batch.len() >= ctx.cfg.max_batch_size {
                    sink.send(std::mem::take(&mut batch), delivered).await?;
                    ctx.stats.lock().expect("stats").snapshot_rows = rows_done;
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
    if let Some((r, last)) = held.take() {
        ctx.event(&mut batch, &r, Op::Read, None, Some(last), Snapshot::Last, ts, None, lsn);
        rows_done += 1;
    }
    if !batch.is_empty() {
        sink.send(batch, delivered).await?;
    }
    sink.flush().await?;
    client.batch_execute("COMMIT").await.map_err(pg("COMMIT snapshot"))?;
    let mut s = ctx.stats.lock().expect("stats");
    s.snapshot_rows = rows_done;
    s.messages += rows_done;
    info!("snapshot done: {rows_done} rows");
    Ok(())
}

/// What the engine knows about acknowledgements.
#[derive(Debug, Default)]
struct Acks {
    /// Highest LSN reported durable by the sink.
    delivered: u64,
    /// Highest `ack_lsn` handed to the sink.
    emitted: u64,
    /// Highest position with nothing to deliver (empty transactions, keepalives).
    idle: u64,
    /// Last LSN confirmed to the server.
    confirmed: u64,
}

impl Acks {
    /// The LSN that may be confirmed now. `quiet`: no transaction open and no message
    /// waiting in the engine.
    fn safe(&self, quiet: bool) -> u64 {
        if quiet && self.delivered >= self.emitted {
            self.delivered.max(self.idle)
        } else {
            self.delivered
        }
    }
}

/// An open transaction (non-streamed: changes arrive between Begin and Commit).
struct Tx {
    xid: u32,
    ts_ms: i64,
    out: Vec<Message>,
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    ctx: &Ctx<'_>,
    client: &Client,
    mut repl: ReplicationConn,
    start: Lsn,
    sink: &mut dyn Sink,
    delivered_tx: mpsc::UnboundedSender<Lsn>,
    delivered_rx: &mut mpsc::UnboundedReceiver<Lsn>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let v = repl.server_version;
    let proto = if v >= 160000 { 4 } else if v >= 140000 { 2 } else { 1 };
    let mut opts = vec![format!("proto_version '{proto}'"), format!("publication_names {}", quote_lit(&quote_ident(&ctx.cfg.publication_name)))];
    if proto >= 2 {
        opts.push("streaming 'on'".into());
    }
    if v >= 140000 && ctx.cfg.binary_tuples {
        opts.push("binary 'true'".into());
    }
    let sql = format!("START_REPLICATION SLOT {} LOGICAL {} ({})", quote_ident(&ctx.cfg.slot_name), start, opts.join(", "));
    repl.start_replication(&sql).await?;
    info!("streaming from slot {} ({sql})", ctx.cfg.slot_name);
    {
        let mut s = ctx.stats.lock().expect("stats");
        s.streaming = true;
    }
    let mut acks = Acks::default();
    let mut rels: HashMap<u32, Arc<Rel>> = HashMap::new();
    let mut tx: Option<Tx> = None;
    // Streamed (in-progress) transactions: toplevel xid -> (subxid, message).
    let mut streams: HashMap<u32, Vec<(u32, Message)>> = HashMap::new();
    let mut stream_xid: Option<u32> = None;
    let mut batch: Vec<Message> = Vec::new();
    let status_every = Duration::from_millis(ctx.cfg.status_interval_ms.max(100));
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let mut last_status = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if !batch.is_empty() {
                    sink.send(std::mem::take(&mut batch), &delivered_tx).await?;
                }
                sink.flush().await?;
                while let Ok(l) = delivered_rx.try_recv() {
                    acks.delivered = acks.delivered.max(l.0);
                }
                let safe = acks.safe(tx.is_none());
                if safe > acks.confirmed {
                    repl.send_status(safe, false).await?;
                    ctx.stats.lock().expect("stats").confirmed_lsn = Lsn(safe);
                }
                repl.close().await;
                return Ok(());
            }
            Some(l) = delivered_rx.recv() => {
                acks.delivered = acks.delivered.max(l.0);
                while let Ok(l) = delivered_rx.try_recv() {
                    acks.delivered = acks.delivered.max(l.0);
                }
            }
            _ = ticker.tick() => {}
            msg = repl.recv() => {
                let Some(msg) = msg? else {
                    return Err(CaptureError::Disconnected { context: "replication stream".into(), reason: "server ended the stream".into() });
                };
                match msg {
                    ReplicationMessage::Keepalive { wal_end, reply_requested } => {
                        if tx.is_none() && batch.is_empty() {
                            acks.idle = acks.idle.max(wal_end);
                        }
                        if reply_requested {
                            let safe = acks.safe(tx.is_none() && batch.is_empty());
                            repl.send_status(safe.max(acks.confirmed), false).await?;
                            acks.confirmed = acks.confirmed.max(safe);
                            last_status = Instant::now();
                        }
                    }
                    ReplicationMessage::XLogData { wal_start, data, .. } => {
                        let m = pgoutput::decode(data, stream_xid.is_some())?;
                        handle(ctx, client, m, wal_start, &mut rels, &mut tx, &mut streams, &mut stream_xid, &mut batch, &mut acks).await?;
                    }
                }
                if batch.len() >= ctx.cfg.max_batch_size || (!batch.is_empty() && !repl.has_buffered_frame()) {
                    let b = std::mem::take(&mut batch);
                    let n = b.len() as u64;
                    sink.send(b, &delivered_tx).await?;
                    ctx.stats.lock().expect("stats").messages += n;
                }
            }
        }
        while let Ok(l) = delivered_rx.try_recv() {
            acks.delivered = acks.delivered.max(l.0);
        }
        let safe = acks.safe(tx.is_none() && batch.is_empty());
        if (safe > acks.confirmed && last_status.elapsed() >= Duration::from_millis(200)) || last_status.elapsed() >= status_every {
            let lsn = safe.max(acks.confirmed);
            repl.send_status(lsn, false).await?;
            acks.confirmed = lsn;
            last_status = Instant::now();
            ctx.stats.lock().expect("stats").confirmed_lsn = Lsn(lsn);
        }
    }
}

/// Sets the ack LSN on the last message of a committed transaction and moves its messages
/// to the batch; a transaction with no message only advances the idle position.
fn commit(msgs: Vec<Message>, end_lsn: u64, batch: &mut Vec<Message>, acks: &mut Acks) {
    if msgs.is_empty() {
        acks.idle = acks.idle.max(end_lsn);
        return;
    }
    let start = batch.len();
    batch.extend(msgs);
    if let Some(last) = batch[start..].last_mut() {
        last.ack_lsn = Some(Lsn(end_lsn));
    }
    acks.emitted = acks.emitted.max(end_lsn);
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    ctx: &Ctx<'_>,
    client: &Client,
    m: LogicalMessage,
    wal_start: u64,
    rels: &mut HashMap<u32, Arc<Rel>>,
    tx: &mut Option<Tx>,
    streams: &mut HashMap<u32, Vec<(u32, Message)>>,
    stream_xid: &mut Option<u32>,
    batch: &mut Vec<Message>,
    acks: &mut Acks,
) -> Result<(), CaptureError> {
    // In a streamed transaction the commit time is not known yet (the time of decoding is
    // used) and changes name their subtransaction: report the top-level xid.
    let (ts_ms, xid) = match (tx.as_ref(), *stream_xid) {
        (Some(t), _) => (t.ts_ms, Some(t.xid as i64)),
        (None, Some(top)) => (now_ms(), Some(top as i64)),
        (None, None) => (now_ms(), None),
    };
    let mut emit = |xid_in_stream: Option<u32>, msgs: Vec<Message>, tx: &mut Option<Tx>| {
        if msgs.is_empty() {
            return;
        }
        ctx.stats.lock().expect("stats").streamed_changes += 1;
        match (xid_in_stream, stream_xid.as_ref(), tx.as_mut()) {
            (Some(sub), Some(top), _) => streams.entry(*top).or_default().extend(msgs.into_iter().map(|m| (sub, m))),
            (_, _, Some(t)) => t.out.extend(msgs),
            _ => batch.extend(msgs),
        }
    };
    match m {
        LogicalMessage::Begin { ts, xid, .. } => {
            *tx = Some(Tx { xid, ts_ms: pg_ts_to_unix_ms(ts), out: Vec::new() });
        }
        LogicalMessage::Commit { end_lsn, .. } => {
            let t = tx.take().map(|t| t.out).unwrap_or_default();
            ctx.stats.lock().expect("stats").transactions += 1;
            commit(t, end_lsn, batch, acks);
        }
        LogicalMessage::Relation { oid, namespace, name, columns, .. } => {
            let included = ctx.cfg.includes(&namespace, &name);
            let (cols, pk) = if included {
                let (catalog, pk) = describe(client, oid).await.unwrap_or_default();
                let cols: Vec<(String, u32, bool)> = columns
                    .iter()
                    .map(|c| {
                        let notnull = catalog.iter().find(|x| x.0 == c.name).is_some_and(|x| x.2);
                        (c.name.clone(), c.type_oid, notnull)
                    })
                    .collect();
                let pk = if pk.is_empty() { columns.iter().filter(|c| c.key).map(|c| c.name.clone()).collect() } else { pk };
                (cols, pk)
            } else {
                (columns.iter().map(|c| (c.name.clone(), c.type_oid, false)).collect(), vec![])
            };
            rels.insert(oid, Arc::new(build_rel(ctx.cfg, &namespace, &name, &cols, &pk)));
        }
        LogicalMessage::Insert { xid: sx, oid, new } => {
            let rel = rels.get(&oid).ok_or_else(|| CaptureError::Protocol(format!("Insert for unknown relation {oid}")))?.clone();
            if rel.included {
                let after = rel.row(&new, wal_start)?;
                let mut msgs = Vec::with_capacity(2);
                ctx.event(&mut msgs, &rel, Op::Create, None, Some(after), Snapshot::False, ts_ms, xid.or(sx.map(|x| x as i64)), Some(Lsn(wal_start)));
                emit(sx, msgs, tx);
            }
        }
        LogicalMessage::Update { xid: sx, oid, old, new } => {
            let rel = rels.get(&oid).ok_or_else(|| CaptureError::Protocol(format!("Update for unknown relation {oid}")))?.clone();
            if rel.included {
                let mut after = rel.row(&new, wal_start)?;
                let before = match old {
                    Some((b'O', t)) => Some(rel.row(&t, wal_start)?),
                    _ => None,
                };
                // Unchanged TOASTed values: take them from the old row when we have it.
                if let Some(b) = &before {
                    for (i, v) in after.values.iter_mut().enumerate() {
                        if *v == Value::Unchanged {
                            *v = b.values[i].clone();
                        }
                    }
                }
                let mut msgs = Vec::with_capacity(2);
                ctx.event(&mut msgs, &rel, Op::Update, before, Some(after), Snapshot::False, ts_ms, xid.or(sx.map(|x| x as i64)), Some(Lsn(wal_start)));
                emit(sx, msgs, tx);
            }
        }
        LogicalMessage::Delete { xid: sx, oid, old: (_, t) } => {
            let rel = rels.get(&oid).ok_or_else(|| CaptureError::Protocol(format!("Delete for unknown relation {oid}")))?.clone();
            if rel.included {
                let before = rel.row(&t, wal_start)?;
                let mut msgs = Vec::with_capacity(2);
                ctx.event(&mut msgs, &rel, Op::Delete, Some(before), None, Snapshot::False, ts_ms, xid.or(sx.map(|x| x as i64)), Some(Lsn(wal_start)));
                emit(sx, msgs, tx);
            }
        }
        LogicalMessage::Truncate { xid: sx, oids, .. } => {
            let mut msgs = Vec::new();
            for oid in oids {
                if let Some(rel) = rels.get(&oid).filter(|r| r.included).cloned() {
                    let mut out = Vec::new();
                    ctx.event(&mut out, &rel, Op::Truncate, None, None, Snapshot::False, ts_ms, xid.or(sx.map(|x| x as i64)), Some(Lsn(wal_start)));
                    for m in &mut out {
                        m.key = tensorcdc_change::Key::None;
                    }
                    msgs.extend(out);
                }
            }
            emit(sx, msgs, tx);
        }
        LogicalMessage::StreamStart { xid, .. } => *stream_xid = Some(xid),
        LogicalMessage::StreamStop => *stream_xid = None,
        LogicalMessage::StreamCommit { xid, end_lsn, .. } => {
            let msgs = streams.remove(&xid).unwrap_or_default().into_iter().map(|(_, m)| m).collect();
            let mut s = ctx.stats.lock().expect("stats");
            s.transactions += 1;
            s.streamed_transactions += 1;
            drop(s);
            commit(msgs, end_lsn, batch, acks);
        }
        LogicalMessage::StreamAbort { xid, subxid } => {
            if xid == subxid {
                streams.remove(&xid);
            } else if let Some(v) = streams.get_mut(&xid) {
                v.retain(|(s, _)| *s != subxid);
            }
        }
        LogicalMessage::Origin | LogicalMessage::Type { .. } | LogicalMessage::Message { .. } | LogicalMessage::TwoPhase(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_wait_for_delivery() {
        let mut a = Acks::default();
        let mut batch = Vec::new();
        let msg = Message { topic: "t".into(), key: tensorcdc_change::Key::None, payload: Payload::Tombstone, ack_lsn: None, commit_ts_ms: 0 };
        commit(vec![msg.clone(), msg], 100, &mut batch, &mut a);
        assert_eq!(batch.iter().map(|m| m.ack_lsn).collect::<Vec<_>>(), vec![None, Some(Lsn(100))]);
        // An empty transaction and a keepalive later: nothing past 0 until 100 is delivered.
        commit(vec![], 200, &mut vec![], &mut a);
        a.idle = a.idle.max(300);
        assert_eq!(a.safe(true), 0);
        a.delivered = 100;
        assert_eq!(a.safe(true), 300);
        assert_eq!(a.safe(false), 100);
    }

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
