//! What `run` checks before it creates anything (a replication slot, the predictions table):
//! the table exists, has a primary key (rows of the training buffer and of the predictions
//! table are named by it), and has the label and feature columns, the label of a type that
//! can be a class or a target. A run that cannot work fails at once, naming what is missing,
//! instead of capturing rows it must drop and leaving a slot that holds WAL.

use anyhow::{bail, Result};
use tensorcdc_change::names::nearest;

/// The table as `to_regclass` takes it, exactly as named (quoted: the capture matches names
/// case-sensitively too).
fn regclass(table: &str) -> String {
    format!("public.\"{}\"", table.replace('"', "\"\""))
}

/// A column of the table, as the catalog has it.
struct Column {
    name: String,
    /// `format_type`: `integer`, `double precision[]`, `timestamp with time zone`, ...
    type_name: String,
    /// `pg_type.typcategory`: N numeric, B boolean, S string, E enum, A array, D date/time, U user ...
    category: String,
}

/// Type categories a label may have: numbers (classes from integers, regression from the
/// others), booleans, text and enums (classes).
const LABEL_CATEGORIES: [&str; 4] = ["N", "B", "S", "E"];

/// Checks the table, its key and its columns; returns the key columns (`--key`, else the
/// primary key).
pub async fn check(
    client: &tokio_postgres::Client,
    table: &str,
    label: &str,
    key: Option<&[String]>,
    features: Option<&[String]>,
    layers: &[usize],
) -> Result<Vec<String>> {
    tensorcdc_model::sequential::SequentialSpec::check_hidden(layers)?;
    if table.contains('.') {
        bail!("--table {table:?}: run reads a table of the public schema; give its name without a schema");
    }
    let name = format!("public.{table}");
    let exists = !client
        .query(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind IN ('r', 'p')",
            &[&table],
        )
        .await?
        .is_empty();
    let rc = regclass(table);
    if !exists {
        let rows = client
            .query(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
                &[],
            )
            .await?;
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let near = nearest(&name, have.iter().map(String::as_str)).map(|n| format!("; did you mean {n}?")).unwrap_or_default();
        let list = if have.is_empty() { "none".to_string() } else { have.join(", ") };
        bail!("--table: table {name} does not exist (tables: {list}{near})");
    }
    let columns: Vec<Column> = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typcategory::text FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&rc],
        )
        .await?
        .iter()
        .map(|r| Column { name: r.get(0), type_name: r.get(1), category: r.get(2) })
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let missing = |what: &str, col: &str| {
        let near = nearest(col, names.iter().copied()).map(|n| format!("; did you mean {n:?}?")).unwrap_or_default();
        anyhow::anyhow!("{what}: table {name} has no column {col:?} (its columns: {}{near})", names.join(", "))
    };
    let Some(l) = columns.iter().find(|c| c.name == label) else {
        return Err(missing("--label", label));
    };
    if !LABEL_CATEGORIES.contains(&l.category.as_str()) {
        bail!("--label {label:?} is of type {}: a label must be a number (a target; integers make classes), a boolean, text or an enum", l.type_name);
    }
    for f in features.unwrap_or_default() {
        if !names.contains(&f.as_str()) {
            return Err(missing("--features", f));
        }
        if f == label {
            bail!("--features names the label {label:?}: a feature cannot be the label");
        }
    }
    let pk = key_columns(client, &rc).await?;
    match key {
        Some(cols) => {
            for k in cols {
                if !names.contains(&k.as_str()) {
                    return Err(missing("--key", k));
                }
                if k == label {
                    bail!("--key names the label {label:?}: the key names rows, it cannot be what they are labelled");
                }
            }
            // The old row of an update or a delete carries the replica identity's columns only:
            // every --key column must be among them (all of them with REPLICA IDENTITY FULL),
            // or a delete could not name the row it removes.
            let identity: i8 = client.query_one("SELECT relreplident::\"char\" FROM pg_class WHERE oid = to_regclass($1)", &[&rc]).await?.get(0);
            let identity_cols: Vec<String> = match identity as u8 {
                b'f' => names.iter().map(|n| n.to_string()).collect(),
                b'd' => pk.clone(),
                b'i' => client
                    .query(
                        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                         WHERE i.indrelid = to_regclass($1) AND i.indisreplident",
                        &[&rc],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect(),
                _ => vec![],
            };
            if !cols.iter().all(|k| identity_cols.contains(k)) {
                let why = if pk.is_empty() { "has no primary key" } else { "has a replica identity without them" };
                bail!(
                    "table {name} {why}, so --key {} needs REPLICA IDENTITY FULL (updates and deletes then carry the old row): \
                     ALTER TABLE {name} REPLICA IDENTITY FULL",
                    cols.join(",")
                );
            }
            Ok(cols.to_vec())
        }
        None if pk.is_empty() => bail!(
            "table {name} has no primary key: run names each training row and each prediction by its key. \
             Add one (ALTER TABLE {name} ADD PRIMARY KEY (...)), or name key columns with --key (with REPLICA IDENTITY FULL); \
             train and evaluate read tables without one"
        ),
        None => Ok(pk),
    }
}

/// The primary key columns of `table` (schema-qualified): they name rows, they are not features.
pub async fn key_columns(client: &tokio_postgres::Client, table: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
