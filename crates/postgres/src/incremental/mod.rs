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

use tensorcdc_change::{Lsn, Message, Op, Row, Snapshot};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::catalog::{list_tables, quote_ident, Rel};
use crate::engine::{now_ns, Ctx, TxMeta};

mod chunk;
use crate::offsets::{write_offsets, Offsets};
use crate::pgoutput::TupleValue;
use crate::signal::{self, Signal};
use crate::CaptureError;
use chunk::next_chunk;

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
    /// The last signal acted on: its transaction's commit LSN and its own record's.
    last_signal_lsn: u64,
    last_signal_rec: u64,
    /// Progress made by a signal of the open transaction, queued at its commit.
    at_commit: Option<Option<Progress>>,
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
            (self.last_signal_lsn, self.last_signal_rec) = (0, 0);
        } else if let Some(o) = offsets {
            self.durable = o.incremental.clone();
            (self.last_signal_lsn, self.last_signal_rec) = (o.last_signal_lsn, o.last_signal_rec);
        }
        self.at_commit = None;
        self.current = self.durable.clone();
        self.window = None;
        self.pending.clear();
        self.signal_oid = None;
    }

    /// An incremental snapshot is under way (progress this session goes on with).
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// A streamed change of `key` in `rel`'s table: inside an open window it drops the row
    /// of the same key from the chunk.
    pub fn seen(&mut self, rel: &Rel, key: &Row) {
        if let Some(w) = self.window.as_mut().filter(|w| w.open && w.rel.schema == rel.schema && w.rel.table == rel.table) {
            if let Some(i) = w.index.remove(&key_text(key)) {
                w.rows[i] = None;
            }
        }
    }

    /// Writes the newest pending progress whose LSN `safe` covers (everything up to it durable).
    pub fn persist_up_to(&mut self, cfg: &crate::CaptureConfig, safe: u64) -> Result<(), CaptureError> {
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
            last_signal_rec: self.last_signal_rec,
            ..Offsets::fresh(cfg, true)
        };
        write_offsets(cfg, &o)
    }

    /// The transaction that held a signal committed at `end`: the progress it made is written
    /// once everything up to `end` is durable (its chunk's rows ride in that transaction).
    pub fn committed(&mut self, end: u64, stats: &std::sync::Mutex<crate::CaptureStats>) {
        if let Some(p) = self.at_commit.take() {
            if p.is_none() {
                stats.lock().expect("stats").incremental_done_at = Some(tensorcdc_change::Lsn(end));
            }
            self.pending.push_back((end, p));
        }
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

impl Incremental {
    /// A new slot whose initial snapshot is incremental (`tensorcdc.snapshot.incremental`):
    /// every included table, queued and recorded before the stream starts.
    pub fn plan_initial(
        &mut self,
        cfg: &crate::CaptureConfig,
        tables: &[(String, String, u32)],
        stats: &std::sync::Mutex<crate::CaptureStats>,
    ) -> Result<(), CaptureError> {
        let collections: Vec<Collection> = tables.iter().map(|(s, t, _)| Collection { id: format!("{s}.{t}"), filter: None }).collect();
        if collections.is_empty() {
            return Ok(());
        }
        info!("initial snapshot, incrementally: {}", collections.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", "));
        {
            let mut st = stats.lock().expect("stats");
            st.incremental_table = Some(collections[0].id.clone());
            st.incremental_done_at = None;
        }
        self.durable = Some(Progress { collections, last_key: None, max_key: None });
        self.current = self.durable.clone();
        self.write(cfg)
    }
}

/// Text of a signal row's column (text and varchar come as UTF-8 in both tuple forms).
fn text(t: Option<&TupleValue>) -> Option<String> {
    match t? {
        TupleValue::Text(b) | TupleValue::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        TupleValue::Null | TupleValue::Unchanged => None,
    }
}

fn signal_table(ctx: &Ctx<'_>) -> Option<String> {
    ctx.cfg.signals.table().map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
}

/// Checks the signal table before streaming: it exists, has the three columns, and is in the
/// publication (added in `filtered` mode, as the included tables are).
pub(crate) async fn check(ctx: &Ctx<'_>, client: &Client) -> Result<(), CaptureError> {
    let Some((schema, table)) = ctx.cfg.signals.table() else {
        return Ok(());
    };
    let bad = |reason: String| CaptureError::Config { key: "signal.data.collection".into(), reason };
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
        let sql = format!("ALTER PUBLICATION {} ADD TABLE {}.{}", quote_ident(&ctx.cfg.publication_name), quote_ident(schema), quote_ident(table));
        match client.batch_execute(&sql).await {
            Ok(()) => info!("added the signal table {schema}.{table} to publication {:?}", ctx.cfg.publication_name),
            Err(e) if e.code().is_some_and(|c| c.code() == "42710") => {}
            Err(e) => return Err(CaptureError::from_pg("ALTER PUBLICATION ... ADD TABLE (signal table)", e)),
        }
    }
    Ok(())
}

/// At the start of streaming: resumes an incremental snapshot the offsets hold.
pub(crate) async fn start(ctx: &Ctx<'_>, client: &Client) -> Result<(), CaptureError> {
    let resume = ctx.incr.lock().expect("incremental").current.clone();
    if let Some(p) = resume {
        let names: Vec<&str> = p.collections.iter().map(|c| c.id.as_str()).collect();
        info!("resuming the incremental snapshot of {} after key {:?}", names.join(", "), p.last_key);
        next_chunk(ctx, client).await?;
        let mut inc = ctx.incr.lock().expect("incremental");
        let cur = inc.current.clone();
        if cur.is_none() {
            ctx.stats.lock().expect("stats").incremental_done_at = Some(Lsn(0));
        }
        inc.pending.push_back((0, cur));
    }
    Ok(())
}

/// A row inserted into the signal table at `lsn`: acts on it. Rows of a chunk whose window
/// closes are pushed to `out`, after what the transaction already holds.
pub(crate) async fn on_signal(ctx: &Ctx<'_>, client: &Client, tuple: &[TupleValue], at: (u64, u64), out: &mut Vec<Message>) -> Result<(), CaptureError> {
    // `at`: the signal's transaction's commit LSN and its own record's.
    let lsn = at.1;
    let (Some(id), Some(kind)) = (text(tuple.first()), text(tuple.get(1))) else {
        warn!("a signal row without id or type at {} was ignored", Lsn(lsn));
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
    let repeated = {
        let inc = ctx.incr.lock().expect("incremental");
        at <= (inc.last_signal_lsn, inc.last_signal_rec)
    };
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
                if inc.window.as_ref().is_some_and(|w| w.chunk == chunk && w.open) {
                    inc.window.take()
                } else {
                    None
                }
            };
            let Some(w) = window else { return Ok(()) };
            let tx = TxMeta { ts_us: now_ns().div_euclid(1000), xid: None, last_commit: None };
            let mut n = 0u64;
            for row in w.rows.into_iter().flatten() {
                ctx.event(out, &w.rel, Op::Read, None, Some(row), Snapshot::Incremental, &tx, Some(Lsn(lsn)), None);
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
            inc.at_commit = Some(inc.current.clone());
        }
        Signal::ExecuteSnapshot { .. } | Signal::StopSnapshot { .. } if repeated => {
            info!("signal {id:?} at {} was acted on before this restart; not again", Lsn(lsn));
        }
        Signal::ExecuteSnapshot { collections, conditions } => {
            let tables = list_tables(ctx.cfg, client).await?;
            let mut add = Vec::new();
            for pattern in &collections {
                let matched: Vec<String> = tables.iter().filter(|(s, t, _)| signal::names(pattern, s, t)).map(|(s, t, _)| format!("{s}.{t}")).collect();
                if matched.is_empty() {
                    warn!("signal {id:?}: {pattern:?} names no captured table (table.include.list); nothing to snapshot for it");
                }
                for m in matched {
                    let filter = conditions
                        .iter()
                        .find(|(dc, _)| dc == &m || signal::names(dc, m.split_once('.').map_or("", |x| x.0), m.split_once('.').map_or("", |x| x.1)))
                        .map(|c| c.1.clone());
                    if !add.iter().any(|c: &Collection| c.id == m) {
                        add.push(Collection { id: m, filter });
                    }
                }
            }
            info!(
                "signal {id:?}: incremental snapshot of {}",
                if add.is_empty() { "nothing".to_string() } else { add.iter().map(|c| c.id.clone()).collect::<Vec<_>>().join(", ") }
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
                (inc.last_signal_lsn, inc.last_signal_rec) = at;
                inc.write(ctx.cfg)?;
                if !add.is_empty() {
                    ctx.stats.lock().expect("stats").incremental_done_at = None;
                }
                inc.window.is_none()
            };
            if idle {
                next_chunk(ctx, client).await?;
                let mut inc = ctx.incr.lock().expect("incremental");
                inc.at_commit = Some(inc.current.clone());
            }
        }
        Signal::StopSnapshot { collections } => {
            let resume = {
                let mut inc = ctx.incr.lock().expect("incremental");
                let stops = |c: &Collection| {
                    collections.is_empty() || collections.iter().any(|p| c.id == *p || c.id.split_once('.').is_some_and(|(s, t)| signal::names(p, s, t)))
                };
                if inc.window.as_ref().is_some_and(|w| stops(&Collection { id: format!("{}.{}", w.rel.schema, w.rel.table), filter: None })) {
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
                (inc.last_signal_lsn, inc.last_signal_rec) = at;
                inc.write(ctx.cfg)?;
                info!(
                    "signal {id:?}: incremental snapshot stopped for {}",
                    if collections.is_empty() { "every table".to_string() } else { collections.join(", ") }
                );
                if inc.current.is_none() {
                    ctx.stats.lock().expect("stats").incremental_table = None;
                }
                inc.window.is_none() && inc.current.is_some()
            };
            if resume {
                next_chunk(ctx, client).await?;
                let mut inc = ctx.incr.lock().expect("incremental");
                inc.at_commit = Some(inc.current.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_kept_until_durable() {
        let mut inc = Incremental::default();
        let p = |k: &str| {
            Some(Progress {
                collections: vec![Collection { id: "public.t".into(), filter: None }],
                last_key: Some(vec![k.into()]),
                max_key: Some(vec!["9".into()]),
            })
        };
        inc.pending.push_back((100, p("3")));
        inc.pending.push_back((200, p("6")));
        let cfg = crate::CaptureConfig { temporary_slot: true, ..Default::default() };
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
