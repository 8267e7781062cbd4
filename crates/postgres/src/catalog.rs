//! The catalog side of capture: included tables, their columns, types and primary keys,
//! the publication and the slot's state.

use std::sync::Arc;

use tensorcdc_change::{Field, Lsn, Row};
use tokio_postgres::Client;

use crate::config::{CaptureConfig, PublicationMode};
use crate::pgoutput::TupleValue;
use crate::types::{self, PgType, TypeCache};
use crate::CaptureError;

/// A captured table, as the engine knows it.
#[derive(Debug)]
pub(crate) struct Rel {
    pub schema: Arc<str>,
    pub table: Arc<str>,
    pub topic: String,
    /// The types of all the relation's columns (as tuples carry them).
    pub types: Vec<PgType>,
    /// The columns that become fields: Debezium leaves out those of a type it has no
    /// schema for (`debezium::supported`).
    pub keep: Vec<usize>,
    pub fields: Arc<Vec<Field>>,
    pub key_idx: Vec<usize>,
    pub key_fields: Arc<Vec<Field>>,
    pub included: bool,
    pub settings: types::TypeSettings,
}

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub ty: PgType,
    pub notnull: bool,
    /// The default expression (`pg_get_expr`), unless the column's type is a domain
    /// (Debezium has no default mapper for those).
    pub default: Option<String>,
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(crate) fn quote_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Column names, types (resolved through `cache`) and NOT NULL, and the primary key.
pub(crate) async fn describe(client: &Client, oid: u32, cache: &mut TypeCache) -> Result<(Vec<Column>, Vec<String>), CaptureError> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid::oid, a.atttypmod, a.attnotnull, \
             CASE WHEN t.typtype <> 'd' AND a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| CaptureError::from_pg("describe table", e))?;
    let mut cols = Vec::with_capacity(rows.len());
    for r in &rows {
        let ty = cache.resolve(client, r.get(1), r.get(2)).await.map_err(|e| CaptureError::from_pg("describe column type", e))?;
        cols.push(Column { name: r.get(0), ty, notnull: r.get(3), default: r.get(4) });
    }
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

pub(crate) fn build_rel(cfg: &CaptureConfig, schema: &str, table: &str, cols: &[Column], key_names: &[String]) -> Rel {
    let keep: Vec<usize> = (0..cols.len()).filter(|&i| types::debezium::supported(&cols[i].ty)).collect();
    let fields: Vec<Field> = keep
        .iter()
        .map(|&i| &cols[i])
        .map(|c| {
            let f = types::debezium::field(&c.name, &c.ty, !c.notnull, &cfg.types);
            match c.default.as_deref().and_then(|e| types::defaults::default_value(&c.ty, e, &cfg.types)) {
                Some(v) => {
                    let json = tensorcdc_change::json::value_json_of(&v, Some(&f), cfg.converter.binary).to_string();
                    f.with_default_json(json)
                }
                None => f,
            }
        })
        .collect();
    // `message.key.columns` wins over the primary key (and keys a table without one).
    let name = format!("{schema}.{table}");
    let key_names = cfg.message_key_columns.iter().find(|(re, _)| re.is_match(&name)).map_or(key_names, |(_, cols)| cols.as_slice());
    let key_idx: Vec<usize> = key_names.iter().filter_map(|k| fields.iter().position(|c| &c.name == k)).collect();
    let key_fields = key_idx.iter().map(|&i| Field { optional: false, ..fields[i].clone() }).collect();
    Rel {
        schema: schema.into(),
        table: table.into(),
        topic: format!("{}.{schema}.{table}", cfg.topic_prefix),
        types: cols.iter().map(|c| c.ty.clone()).collect(),
        keep,
        fields: Arc::new(fields),
        key_idx,
        key_fields: Arc::new(key_fields),
        included: cfg.includes(schema, table),
        settings: cfg.types,
    }
}

impl Rel {
    pub fn key_of(&self, row: &Row) -> Option<Row> {
        if self.key_idx.is_empty() {
            return None;
        }
        Some(Row::new(self.key_fields.clone(), self.key_idx.iter().map(|&i| row.values[i].clone()).collect()))
    }

    pub fn row(&self, tuple: &[TupleValue], lsn: u64) -> Result<Row, CaptureError> {
        if tuple.len() != self.types.len() {
            return Err(CaptureError::Protocol(format!(
                "{}.{} at LSN {}: tuple has {} columns, relation has {}",
                self.schema,
                self.table,
                Lsn(lsn),
                tuple.len(),
                self.types.len()
            )));
        }
        let values = self
            .keep
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                types::from_tuple(&self.types[c], &tuple[c], &self.settings)
                    .map_err(|e| CaptureError::Protocol(format!("{}.{} column {} at LSN {}: {e}", self.schema, self.table, self.fields[i].name, Lsn(lsn))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Row::new(self.fields.clone(), values))
    }
}

/// What [`wait_for_slot`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotWait {
    /// There is no such slot.
    Missing,
    /// The slot exists and no process holds it; `waited` when it had to wait for that.
    Free { waited: Option<std::time::Duration> },
    /// A server process still held it when the wait was over.
    Busy { pid: i32, waited: std::time::Duration },
}

/// Waits until `slot` is not held by a server process, polling every 100 ms for up to `wait`:
/// the server side of a replication connection can hold the slot for a moment after its
/// client was killed. `on_wait(pid, wait)` is called once, when it first has to wait, to say
/// why. One rule for the capture (Debezium's `slot.max.retries` x `slot.retry.delay.ms`) and
/// for `run`'s slot reset; each says the outcome in its own words.
pub async fn wait_for_slot(
    client: &Client,
    slot: &str,
    wait: std::time::Duration,
    mut on_wait: impl FnMut(i32, std::time::Duration),
) -> Result<SlotWait, CaptureError> {
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        let rows = client
            .query("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
            .await
            .map_err(|e| CaptureError::from_pg("look up the replication slot", e))?;
        let Some(r) = rows.first() else { return Ok(SlotWait::Missing) };
        let Some(pid) = r.get::<_, Option<i32>>(0) else {
            return Ok(SlotWait::Free { waited: said.then(|| started.elapsed()) });
        };
        if started.elapsed() >= wait {
            return Ok(SlotWait::Busy { pid, waited: started.elapsed() });
        }
        if !said {
            on_wait(pid, wait);
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub(crate) async fn slot_state(cfg: &CaptureConfig, client: &Client) -> Result<Option<(Option<i32>, Option<String>)>, CaptureError> {
    let rows = client
        .query("SELECT active_pid, confirmed_flush_lsn::text, plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1", &[&cfg.slot_name])
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

pub(crate) async fn ensure_publication(cfg: &CaptureConfig, client: &Client) -> Result<(), CaptureError> {
    let found = client
        .query("SELECT puballtables FROM pg_publication WHERE pubname = $1", &[&cfg.publication_name])
        .await
        .map_err(|e| CaptureError::from_pg("look up the publication", e))?;
    if let Some(row) = found.first() {
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        return complete_publication(cfg, client).await;
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
                return Err(CaptureError::Config {
                    key: "table.include.list".into(),
                    reason: "matches no table (filtered publication needs at least one)".into(),
                });
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

/// An existing publication that is not `FOR ALL TABLES` (Debezium's `filtered` one, say,
/// made for other tables): the included tables it lacks are added in `filtered` mode, as
/// Debezium does; in the other modes they are an error naming them, never a capture that
/// silently streams nothing of them.
async fn complete_publication(cfg: &CaptureConfig, client: &Client) -> Result<(), CaptureError> {
    let has: Vec<String> = client
        .query("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1", &[&cfg.publication_name])
        .await
        .map_err(|e| CaptureError::from_pg("list the publication's tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // By oid: a table is in the publication itself, through a partitioned ancestor (listed
    // in pg_publication_rel; pg_publication_tables shows only the leaves), or through its
    // schema (FOR TABLES IN SCHEMA).
    // (pg_partition_ancestors lists a partition's ancestors and itself, and nothing for a
    // table that is not a partition.)
    let by_rel = "SELECT c.oid FROM pg_class c WHERE EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid \
         WHERE p.pubname = $1 AND (pr.prrelid = c.oid OR pr.prrelid IN (SELECT relid FROM pg_partition_ancestors(c.oid))))";
    let by_schema = " OR EXISTS (SELECT 1 FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid \
         WHERE p.pubname = $1 AND pn.pnnspid = c.relnamespace)";
    let rows = match client.query(&format!("{by_rel}{by_schema}"), &[&cfg.publication_name]).await {
        // Before PostgreSQL 15 there are no schema publications (and no such catalog).
        Err(e) if e.code().is_some_and(|c| c.code() == "42P01") => client.query(by_rel, &[&cfg.publication_name]).await,
        r => r,
    };
    let published: Vec<u32> = rows.map_err(|e| CaptureError::from_pg("list the publication's tables", e))?.iter().map(|r| r.get(0)).collect();
    let lacks: Vec<(String, String, u32)> = list_tables(cfg, client).await?.into_iter().filter(|(_, _, oid)| !published.contains(oid)).collect();
    if lacks.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = lacks.iter().map(|(s, t, _)| format!("{s}.{t}")).collect();
    let name = quote_ident(&cfg.publication_name);
    match cfg.publication_mode {
        PublicationMode::Filtered => {
            let list: Vec<String> = lacks.iter().map(|(s, t, _)| format!("{}.{}", quote_ident(s), quote_ident(t))).collect();
            match client.batch_execute(&format!("ALTER PUBLICATION {name} ADD TABLE {}", list.join(", "))).await {
                Ok(()) => {}
                // Another process added them meanwhile.
                Err(e) if e.code().is_some_and(|c| c.code() == "42710") => return Ok(()),
                Err(e) => return Err(CaptureError::from_pg("ALTER PUBLICATION ... ADD TABLE", e)),
            }
            tracing::info!("publication {:?} existed without {}: added (publication.autocreate.mode=filtered)", cfg.publication_name, names.join(", "));
            Ok(())
        }
        PublicationMode::AllTables | PublicationMode::Disabled => Err(CaptureError::Config {
            key: "publication.autocreate.mode".into(),
            reason: format!(
                "{}, but publication {:?} exists for other tables ({}) and lacks {}: their changes would never be streamed. \
                 Use publication.autocreate.mode=filtered (tensorcdc adds them), ALTER PUBLICATION {name} ADD TABLE {}, \
                 or another publication.name",
                if cfg.publication_mode == PublicationMode::AllTables { "all_tables" } else { "disabled" },
                cfg.publication_name,
                if has.is_empty() { "none".to_string() } else { has.join(", ") },
                names.join(", "),
                names.join(", ")
            ),
        }),
    }
}

/// Every table of the database, `schema.table`, for messages that say which exist.
pub(crate) async fn all_tables(client: &Client) -> Result<Vec<String>, CaptureError> {
    let rows = client
        .query(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| CaptureError::from_pg("list tables", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Included tables: (schema, table, oid).
pub(crate) async fn list_tables(cfg: &CaptureConfig, client: &Client) -> Result<Vec<(String, String, u32)>, CaptureError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| CaptureError::from_pg("list tables", e))?;
    Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, u32>(2))).filter(|(s, t, _)| cfg.includes(s, t)).collect())
}
