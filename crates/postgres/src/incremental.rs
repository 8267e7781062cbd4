//! Incremental snapshots, as Debezium's (the DBLog watermark algorithm): a table is read in
//! chunks of `incremental.snapshot.chunk.size` rows in primary-key order while the stream
//! goes on, started and stopped by signals (see [`crate::signal`]).
//!
//! **The guarantee.** For each chunk the capture (1) inserts an open watermark into the
//! signal table, (2) selects the chunk, (3) inserts a close watermark. The stream sees both
//! watermarks in commit order. A streamed change of a key of the chunk that falls between
//! them drops that row from the chunk (the change is newer than, or as new as, what the
//! chunk read); at the close watermark the rows left are emitted as `read` events marked
//! `snapshot: incremental`. So a chunk row never contradicts a streamed change: each key's
//! last event is its state in the table, and a deleted row is never resurrected.
//!
//! **Restarts.** The progress (tables left, last key delivered, largest key) is written to
//! the offsets file only once the chunk it follows is durable in the sink (its close
//! watermark's transaction reported delivered), so a restart resumes at the next chunk: a
//! chunk is read again only when the capture died between its delivery and that write.
//! Signals the slot sends again after a restart (at or before the last signal acted on) are
//! not acted on twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use tensorcdc_change::{Lsn, Message, Op, Row, Snapshot};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::catalog::{build_rel, describe, list_tables, quote_ident, quote_lit, Rel};
use crate::engine::{now_ns, Ctx, TxMeta};
use crate::offsets::{write_offsets, Offsets};
use crate::pgoutput::TupleValue;
use crate::signal::{self, Signal, WINDOW_CLOSE, WINDOW_OPEN};
use crate::snapshot::BinaryCopyReader;
use crate::{types, CaptureError};

/// A table to snapshot incrementally.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Collection {
    /// `schema.table`.
    pub id: String,
    /// `additional-conditions`' filter, a `WHERE` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// The incremental snapshot still to do.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Progress {
    /// Tables left; the first is being read.
    pub collections: Vec<Collection>,
    /// The key (text of each key column) of the last row delivered of the first table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<String>>,
    /// Its largest key when its snapshot began: rows above it come through the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key: Option<Vec<String>>,
}

/// The chunk between its watermarks.
struct Window {
    chunk: String,
    open: bool,
    rel: Arc<Rel>,
    rows: Vec<Option<Row>>,
    index: HashMap<String, usize>,
    last_key: Vec<String>,
}

/// The incremental snapshot state of a capture (lives across its sessions).
#[derive(Default)]
pub(crate) struct Incremental {
    /// As in the offsets file.
    durable: Option<Progress>,
    last_signal_lsn: u64,
    /// Including chunks emitted but not yet durable.
    current: Option<Progress>,
    window: Option<Window>,
    /// Progress to write once everything up to its LSN is durable.
    pending: VecDeque<(u64, Option<Progress>)>,
    /// The signal table's relation id in this session.
    pub signal_oid: Option<u32>,
    chunks: u64,
}

fn key_text(k: &Row) -> String {
    format!("{:?}", k.values)
}

impl Incremental {
    /// A new session: what is not durable is done again (the slot resends from its confirmed
    /// position). `offsets`: the file's (None for a new slot, or a temporary one: memory).
    pub fn begin_session(&mut self, offsets: Option<&Offsets>, new_slot: bool) {
        if new_slot {
            self.durable = None;
            self.last_signal_lsn = 0;
        } else if let Some(o) = offsets {
            self.durable = o.incremental.clone();
            self.last_signal_lsn = o.last_signal_lsn;
        }
        self.current = self.durable.clone();
        self.window = None;
        self.pending.clear();
        self.signal_oid = None;
    }

    /// A streamed change of `key` in `rel`'s table: inside an open window it drops the row
    /// of the same key from the chunk.
    pub fn seen(&mut self, rel: &Rel, key: &Row) {
        if let Some(w) = self
            .window
            .as_mut()
            .filter(|w| w.open && w.rel.schema == rel.schema && w.rel.table == rel.table)
        {
            if let Some(i) = w.index.remove(&key_text(key)) {
                w.rows[i] = None;
            }
        }
    }

    /// Writes the newest pending progress whose LSN `safe` covers (everything up to it durable).
    pub fn persist_up_to(
        &mut self,
        cfg: &crate::CaptureConfig,
        safe: u64,
    ) -> Result<(), CaptureError> {
        let mut newest = None;
        while self.pending.front().is_some_and(|(l, _)| *l <= safe) {
            newest = self.pending.pop_front().map(|p| p.1);
        }
        if let Some(p) = newest {
            self.durable = p;
            self.write(cfg)?;
        }
        Ok(())
    }

    fn write(&self, cfg: &crate::CaptureConfig) -> Result<(), CaptureError> {
        let o = Offsets {
            incremental: self.durable.clone(),
            last_signal_lsn: self.last_signal_lsn,
            ..Offsets::fresh(cfg, true)
        };
        write_offsets(cfg, &o)
    }

    /// Applies a change of the queue (a signal) to every copy of the progress.
    fn edit(&mut self, f: impl Fn(&mut Option<Progress>)) {
        f(&mut self.durable);
        f(&mut self.current);
        for (_, p) in self.pending.iter_mut() {
            f(p);
        }
    }

    /// Drops the first table of the current progress (done, gone, or unreadable).
    fn pop_current(&mut self) {
        if let Some(p) = self.current.as_mut() {
            if !p.collections.is_empty() {
                p.collections.remove(0);
            }
            p.last_key = None;
            p.max_key = None;
            if p.collections.is_empty() {
                self.current = None;
            }
        }
    }
}

/// Text of a signal row's column (text and varchar come as UTF-8 in both tuple forms).
fn text(t: Option<&TupleValue>) -> Option<String> {
    match t? {
        TupleValue::Text(b) | TupleValue::Binary(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        TupleValue::Null | TupleValue::Unchanged => None,
    }
}

fn signal_table(ctx: &Ctx<'_>) -> Option<String> {
    ctx.cfg
        .signals
        .table()
        .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
}

/// Checks the signal table before streaming: it exists, has the three columns, and is in the
/// publication (added in `filtered` mode, as the included tables are).
pub(crate) async fn check(ctx: &Ctx<'_>, client: &Client) -> Result<(), CaptureError> {
    let Some((schema, table)) = ctx.cfg.signals.table() else {
        return Ok(());
    };
    let bad = |reason: String| CaptureError::Config {
        key: "signal.data.collection".into(),
        reason,
    };
    let cols = client
        .query(
            "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(|e| CaptureError::from_pg("look up signal.data.collection", e))?;
    if cols.len() < 3 {
        return Err(bad(format!(
            "{schema}.{table} {}: create it as Debezium's, CREATE TABLE {schema}.{table} (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL)",
            if cols.is_empty() { "does not exist".to_string() } else { format!("has {} columns, not id, type, data", cols.len()) }
        )));
    }
    let published = client
        .query("SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3", &[&ctx.cfg.publication_name, &schema, &table])
        .await
        .map_err(|e| CaptureError::from_pg("look up the publication", e))?;
    if published.is_empty() {
        if ctx.cfg.publication_mode != crate::PublicationMode::Filtered {
            return Err(bad(format!(
                "{schema}.{table} is not in publication {:?}, so no signal would reach the capture: ALTER PUBLICATION {} ADD TABLE {schema}.{table}",
                ctx.cfg.publication_name,
                quote_ident(&ctx.cfg.publication_name)
            )));
        }
        let sql = format!(
            "ALTER PUBLICATION {} ADD TABLE {}.{}",
            quote_ident(&ctx.cfg.publication_name),
            quote_ident(schema),
            quote_ident(table)
        );
        match client.batch_execute(&sql).await {
            Ok(()) => info!(
                "added the signal table {schema}.{table} to publication {:?}",
                ctx.cfg.publication_name
            ),
            Err(e) if e.code().is_some_and(|c| c.code() == "42710") => {}
            Err(e) => {
                return Err(CaptureError::from_pg(
                    "ALTER PUBLICATION ... ADD TABLE (signal table)",
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// At the start of streaming: resumes an incremental snapshot the offsets hold.
pub(crate) async fn start(ctx: &Ctx<'_>, client: &Client) -> Result<(), CaptureError> {
    let resume = ctx.incr.lock().expect("incremental").current.clone();
    if let Some(p) = resume {
        let names: Vec<&str> = p.collections.iter().map(|c| c.id.as_str()).collect();
        info!(
            "resuming the incremental snapshot of {} after key {:?}",
            names.join(", "),
            p.last_key
        );
        next_chunk(ctx, client).await?;
        let mut inc = ctx.incr.lock().expect("incremental");
        let cur = inc.current.clone();
        inc.pending.push_back((0, cur));
    }
    Ok(())
}

/// A row inserted into the signal table at `lsn`: acts on it. Rows of a chunk whose window
/// closes are pushed to `out`, after what the transaction already holds.
pub(crate) async fn on_signal(
    ctx: &Ctx<'_>,
    client: &Client,
    tuple: &[TupleValue],
    lsn: u64,
    out: &mut Vec<Message>,
) -> Result<(), CaptureError> {
    let (Some(id), Some(kind)) = (text(tuple.first()), text(tuple.get(1))) else {
        warn!(
            "a signal row without id or type at {} was ignored",
            Lsn(lsn)
        );
        return Ok(());
    };
    let data = text(tuple.get(2));
    let sig = match signal::parse(&id, &kind, data.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            // A user's typo must not stop the capture: said, and the stream goes on.
            warn!("{e}; signal ignored");
            return Ok(());
        }
    };
    let repeated = lsn <= ctx.incr.lock().expect("incremental").last_signal_lsn;
    match sig {
        Signal::WindowOpen(chunk) => {
            let mut inc = ctx.incr.lock().expect("incremental");
            if let Some(w) = inc.window.as_mut().filter(|w| w.chunk == chunk) {
                w.open = true;
            }
        }
        Signal::WindowClose(chunk) => {
            let window = {
                let mut inc = ctx.incr.lock().expect("incremental");
                if inc
                    .window
                    .as_ref()
                    .is_some_and(|w| w.chunk == chunk && w.open)
                {
                    inc.window.take()
                } else {
                    None
                }
            };
            let Some(w) = window else { return Ok(()) };
            let tx = TxMeta {
                ts_us: now_ns().div_euclid(1000),
                xid: None,
                last_commit: None,
            };
            let mut n = 0u64;
            for row in w.rows.into_iter().flatten() {
                ctx.event(
                    out,
                    &w.rel,
                    Op::Read,
                    None,
                    Some(row),
                    Snapshot::Incremental,
                    &tx,
                    Some(Lsn(lsn)),
                    None,
                );
                n += 1;
            }
            {
                let mut inc = ctx.incr.lock().expect("incremental");
                if let Some(p) = inc.current.as_mut() {
                    p.last_key = Some(w.last_key);
                }
                let mut s = ctx.stats.lock().expect("stats");
                s.incremental_rows += n;
                s.incremental_chunks += 1;
            }
            next_chunk(ctx, client).await?;
            let mut inc = ctx.incr.lock().expect("incremental");
            let cur = inc.current.clone();
            inc.pending.push_back((lsn, cur));
        }
        Signal::ExecuteSnapshot { .. } | Signal::StopSnapshot { .. } if repeated => {
            info!(
                "signal {id:?} at {} was acted on before this restart; not again",
                Lsn(lsn)
            );
        }
        Signal::ExecuteSnapshot {
            collections,
            conditions,
        } => {
            let tables = list_tables(ctx.cfg, client).await?;
            let mut add = Vec::new();
            for pattern in &collections {
                let matched: Vec<String> = tables
                    .iter()
                    .filter(|(s, t, _)| signal::names(pattern, s, t))
                    .map(|(s, t, _)| format!("{s}.{t}"))
                    .collect();
                if matched.is_empty() {
                    warn!("signal {id:?}: {pattern:?} names no captured table (table.include.list); nothing to snapshot for it");
                }
                for m in matched {
                    let filter = conditions
                        .iter()
                        .find(|(dc, _)| {
                            dc == &m
                                || signal::names(
                                    dc,
                                    m.split_once('.').map_or("", |x| x.0),
                                    m.split_once('.').map_or("", |x| x.1),
                                )
                        })
                        .map(|c| c.1.clone());
                    if !add.iter().any(|c: &Collection| c.id == m) {
                        add.push(Collection { id: m, filter });
                    }
                }
            }
            info!(
                "signal {id:?}: incremental snapshot of {}",
                if add.is_empty() {
                    "nothing".to_string()
                } else {
                    add.iter()
                        .map(|c| c.id.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            let idle = {
                let mut inc = ctx.incr.lock().expect("incremental");
                inc.edit(|p| {
                    let p = p.get_or_insert_with(Progress::default);
                    for c in &add {
                        if !p.collections.iter().any(|x| x.id == c.id) {
                            p.collections.push(c.clone());
                        }
                    }
                    if p.collections.is_empty() {
                        // Nothing matched: no progress to keep.
                    }
                });
                inc.edit(|p| {
                    if p.as_ref().is_some_and(|p| p.collections.is_empty()) {
                        *p = None;
                    }
                });
                inc.last_signal_lsn = lsn;
                inc.write(ctx.cfg)?;
                inc.window.is_none()
            };
            if idle {
                next_chunk(ctx, client).await?;
                let mut inc = ctx.incr.lock().expect("incremental");
                let cur = inc.current.clone();
                inc.pending.push_back((lsn, cur));
            }
        }
        Signal::StopSnapshot { collections } => {
            let resume = {
                let mut inc = ctx.incr.lock().expect("incremental");
                let stops = |c: &Collection| {
                    collections.is_empty()
                        || collections.iter().any(|p| {
                            c.id == *p
                                || c.id
                                    .split_once('.')
                                    .is_some_and(|(s, t)| signal::names(p, s, t))
                        })
                };
                if inc.window.as_ref().is_some_and(|w| {
                    stops(&Collection {
                        id: format!("{}.{}", w.rel.schema, w.rel.table),
                        filter: None,
                    })
                }) {
                    inc.window = None;
                }
                inc.edit(|p| {
                    if let Some(pr) = p.as_mut() {
                        let first_stops = pr.collections.first().is_some_and(stops);
                        pr.collections.retain(|c| !stops(c));
                        if first_stops {
                            pr.last_key = None;
                            pr.max_key = None;
                        }
                        if pr.collections.is_empty() {
                            *p = None;
                        }
                    }
                });
                inc.last_signal_lsn = lsn;
                inc.write(ctx.cfg)?;
                info!(
                    "signal {id:?}: incremental snapshot stopped for {}",
                    if collections.is_empty() {
                        "every table".to_string()
                    } else {
                        collections.join(", ")
                    }
                );
                if inc.current.is_none() {
                    ctx.stats.lock().expect("stats").incremental_table = None;
                }
                inc.window.is_none() && inc.current.is_some()
            };
            if resume {
                next_chunk(ctx, client).await?;
                let mut inc = ctx.incr.lock().expect("incremental");
                let cur = inc.current.clone();
                inc.pending.push_back((lsn, cur));
            }
        }
        Signal::Ignored(why) => {
            if !repeated {
                warn!("signal {id:?}: {why}; ignored");
            }
        }
    }
    Ok(())
}

/// `(k1, k2)` for a row comparison (`k1` alone for one column).
fn tuple_sql(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("({})", items.join(", "))
    }
}

/// Reads the next chunk of the first table left and opens its window; tables that are gone,
/// keyless, empty or done are dropped from the queue on the way.
async fn next_chunk(ctx: &Ctx<'_>, client: &Client) -> Result<(), CaptureError> {
    let pg = |c: &'static str| move |e| CaptureError::from_pg(c, e);
    let Some(sig_table) = signal_table(ctx) else {
        return Ok(());
    };
    loop {
        let (coll, last_key, max_key) = {
            let inc = ctx.incr.lock().expect("incremental");
            let Some(c) = inc.current.as_ref().and_then(|p| p.collections.first()) else {
                ctx.stats.lock().expect("stats").incremental_table = None;
                return Ok(());
            };
            let p = inc.current.as_ref().expect("checked");
            (c.clone(), p.last_key.clone(), p.max_key.clone())
        };
        let (schema, table) = coll
            .id
            .split_once('.')
            .unwrap_or(("public", coll.id.as_str()));
        let oid: Option<u32> = client
            .query_opt(
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &table],
            )
            .await
            .map_err(pg("look up a table to snapshot"))?
            .map(|r| r.get(0));
        let Some(oid) = oid else {
            warn!("incremental snapshot: table {} is gone; skipped", coll.id);
            ctx.incr.lock().expect("incremental").pop_current();
            continue;
        };
        let (cols, pk) = describe(client, oid, &mut *ctx.types.lock().await).await?;
        let rel = Arc::new(build_rel(ctx.cfg, schema, table, &cols, &pk));
        if rel.key_idx.is_empty() {
            warn!("incremental snapshot: {} has no primary key (nor message.key.columns) to read it in chunks by; skipped", coll.id);
            ctx.incr.lock().expect("incremental").pop_current();
            continue;
        }
        let key_names: Vec<String> = rel.key_fields.iter().map(|f| f.name.clone()).collect();
        let key_cols: Vec<String> = key_names.iter().map(|k| quote_ident(k)).collect();
        let mut key_types = Vec::new();
        for k in &key_names {
            let t: String = client
                .query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1 AND attname = $2", &[&oid, k])
                .await
                .map_err(pg("key column type"))?
                .get(0);
            key_types.push(t);
        }
        let lits = |vals: &[String]| -> String {
            tuple_sql(
                &vals
                    .iter()
                    .zip(&key_types)
                    .map(|(v, t)| format!("CAST({} AS {t})", quote_lit(v)))
                    .collect::<Vec<_>>(),
            )
        };
        // Aliased, so ORDER BY names the table's column, not a `::text` output column.
        let from = format!("{}.{} AS __tensorcdc_t", quote_ident(schema), quote_ident(table));
        let filter = coll
            .filter
            .as_ref()
            .map(|f| format!(" AND ({f})"))
            .unwrap_or_default();
        let max_key = match max_key {
            Some(m) => m,
            None => {
                let texts: Vec<String> = key_cols.iter().enumerate().map(|(i, k)| format!("{k}::text AS __tensorcdc_k{i}")).collect();
                let desc: Vec<String> = key_cols.iter().map(|k| format!("__tensorcdc_t.{k} DESC")).collect();
                let sql = format!(
                    "SELECT {} FROM {from} WHERE true{filter} ORDER BY {} LIMIT 1",
                    texts.join(", "),
                    desc.join(", ")
                );
                let row = client
                    .query_opt(sql.as_str(), &[])
                    .await
                    .map_err(|e| incremental_query_error(&coll, e))?;
                let Some(row) = row else {
                    info!("incremental snapshot of {}: no rows", coll.id);
                    ctx.incr.lock().expect("incremental").pop_current();
                    continue;
                };
                let m: Vec<String> = (0..key_cols.len()).map(|i| row.get(i)).collect();
                if let Some(p) = ctx.incr.lock().expect("incremental").current.as_mut() {
                    p.max_key = Some(m.clone());
                }
                info!(
                    "incremental snapshot of {}: started, keys up to {m:?}",
                    coll.id
                );
                m
            }
        };
        // (1) the open watermark, (2) the chunk, (3) the close watermark.
        let chunk = format!("{:x}-{:x}", now_ns(), oid);
        let insert = format!("INSERT INTO {sig_table} VALUES ($1, $2, $3)");
        let stamp = format!("{{\"openWindowTimestamp\": {}}}", crate::engine::now_ms());
        client
            .execute(
                insert.as_str(),
                &[&format!("{chunk}-open"), &WINDOW_OPEN, &stamp],
            )
            .await
            .map_err(|e| watermark_error(&sig_table, e))?;
        let kept: Vec<&crate::catalog::Column> = rel.keep.iter().map(|&i| &cols[i]).collect();
        let mut select: Vec<String> = kept
            .iter()
            .map(|c| {
                if c.ty.binary_supported() {
                    quote_ident(&c.name)
                } else {
                    format!("{}::text", quote_ident(&c.name))
                }
            })
            .collect();
        select.extend(key_cols.iter().enumerate().map(|(i, k)| format!("{k}::text AS __tensorcdc_k{i}")));
        let after = last_key
            .as_ref()
            .map(|l| format!(" AND {} > {}", tuple_sql(&key_cols), lits(l)))
            .unwrap_or_default();
        let sql = format!(
            "COPY (SELECT {} FROM {from} WHERE {} <= {}{after}{filter} ORDER BY {} LIMIT {}) TO STDOUT (FORMAT binary)",
            select.join(", "),
            tuple_sql(&key_cols),
            lits(&max_key),
            key_cols.iter().map(|k| format!("__tensorcdc_t.{k}")).collect::<Vec<_>>().join(", "),
            ctx.cfg.signals.chunk_size
        );
        let stream = client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| incremental_query_error(&coll, e))?;
        futures::pin_mut!(stream);
        let mut reader = BinaryCopyReader::new();
        let ncols = kept.len() + key_cols.len();
        let (mut rows, mut index, mut last) = (Vec::new(), HashMap::new(), Vec::new());
        loop {
            while let Some(mut fields) = reader.next_row(ncols)? {
                let keys = fields.split_off(kept.len());
                let values = fields
                    .into_iter()
                    .zip(&kept)
                    .map(|(v, c)| {
                        types::from_copy(&c.ty, v, &rel.settings).map_err(|e| {
                            CaptureError::Protocol(format!(
                                "incremental snapshot of {} column {}: {e}",
                                coll.id, c.name
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let row = Row::new(rel.fields.clone(), values);
                if let Some(k) = rel.key_of(&row) {
                    index.insert(key_text(&k), rows.len());
                }
                rows.push(Some(row));
                last = keys
                    .into_iter()
                    .map(|b| {
                        b.map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default()
                    })
                    .collect();
            }
            match stream.next().await {
                Some(chunk) => reader.push(&chunk.map_err(pg("incremental snapshot chunk"))?),
                None => break,
            }
        }
        let stamp = format!("{{\"closeWindowTimestamp\": {}}}", crate::engine::now_ms());
        client
            .execute(
                insert.as_str(),
                &[&format!("{chunk}-close"), &WINDOW_CLOSE, &stamp],
            )
            .await
            .map_err(|e| watermark_error(&sig_table, e))?;
        let done = {
            let mut inc = ctx.incr.lock().expect("incremental");
            inc.chunks += 1;
            if rows.is_empty() {
                inc.pop_current();
                true
            } else {
                ctx.stats.lock().expect("stats").incremental_table = Some(coll.id.clone());
                inc.window = Some(Window {
                    chunk,
                    open: false,
                    rel,
                    rows,
                    index,
                    last_key: last,
                });
                false
            }
        };
        if done {
            info!("incremental snapshot of {} done", coll.id);
            continue;
        }
        return Ok(());
    }
}

fn watermark_error(table: &str, e: tokio_postgres::Error) -> CaptureError {
    match e.as_db_error() {
        Some(db) if !db.code().code().starts_with("08") && !db.code().code().starts_with("57") => CaptureError::Config {
            key: "signal.data.collection".into(),
            reason: format!("writing a watermark into {table} failed: {} (the capture's user needs INSERT on it)", db.message()),
        },
        _ => CaptureError::from_pg("writing a watermark", e),
    }
}

fn incremental_query_error(coll: &Collection, e: tokio_postgres::Error) -> CaptureError {
    match (e.as_db_error(), &coll.filter) {
        (Some(db), Some(f)) if db.code().code().starts_with("42") => CaptureError::Config {
            key: "additional-conditions".into(),
            reason: format!(
                "the incremental snapshot of {} with filter {f:?} failed: {}",
                coll.id,
                db.message()
            ),
        },
        _ => CaptureError::from_pg("incremental snapshot chunk", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_kept_until_durable() {
        let mut inc = Incremental::default();
        let p = |k: &str| {
            Some(Progress {
                collections: vec![Collection {
                    id: "public.t".into(),
                    filter: None,
                }],
                last_key: Some(vec![k.into()]),
                max_key: Some(vec!["9".into()]),
            })
        };
        inc.pending.push_back((100, p("3")));
        inc.pending.push_back((200, p("6")));
        let cfg = crate::CaptureConfig {
            temporary_slot: true,
            ..Default::default()
        };
        inc.persist_up_to(&cfg, 150).unwrap();
        assert_eq!(inc.durable, p("3"));
        inc.persist_up_to(&cfg, 199).unwrap();
        assert_eq!(inc.durable, p("3"));
        // A new session resumes from the durable progress, not the emitted one.
        inc.current = p("6");
        inc.begin_session(None, false);
        assert_eq!(inc.current, p("3"));
        assert!(inc.pending.is_empty());
        inc.begin_session(None, true);
        assert_eq!(inc.current, None);
    }

    #[test]
    fn offsets_without_incremental_fields_still_read() {
        let o: Offsets = serde_json::from_str(r#"{"slot":"s","snapshot_completed":true}"#).unwrap();
        assert_eq!(o.incremental, None);
        assert_eq!(o.last_signal_lsn, 0);
    }
}
