//! `tensorcdc run` following its table: columns added, dropped or renamed while it runs, and
//! unchanged TOASTed values.
//!
//! - The columns of each row read are noted; a change is said once on stderr and counted in
//!   `/metrics` (`schema_changes{change,column}`). Serving goes on: a feature column that is
//!   gone is imputed from the training statistics ([`FeatureSpec::impute_missing`]).
//! - [`Schema::wanted`] gives the features the next version reads: the table's columns now
//!   (or those of `--features` still there), an added column only once the buffer holds
//!   values of it. When they differ from the spec's, the next version is fitted anew.
//! - An UPDATE that leaves a TOASTed value unchanged does not carry it (`REPLICA IDENTITY
//!   DEFAULT`): [`Schema::fill`] takes it from the row held in the buffer, or else reads the
//!   row from the table by its key, never NULL.

use crate::TrainingBuffer;
use anyhow::{Context, Result};
use tensorcdc_dataset::features::cell::record_of_json;
use tensorcdc_dataset::features::{FeatureSpec, Record};

use super::metrics::Metrics;

pub(super) struct Schema {
    /// The table's columns as the last row read had them (empty until one is read).
    columns: Vec<String>,
    /// `--features`, when given.
    chosen: Option<Vec<String>>,
    label: String,
    key: Vec<String>,
    /// Reads a row as JSON by its key's text (a table with a one-column key).
    lookup: Option<tokio_postgres::Statement>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Schema {
    pub async fn new(client: &tokio_postgres::Client, table: &str, label: &str, key: &[String], chosen: Option<Vec<String>>) -> Result<Self> {
        // The key's text compared as the key's own type, so the primary key's index serves.
        let lookup = match key {
            [k] => {
                let ty: String = client
                    .query_one(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
                        &[&format!("public.{}", quote(table)), k],
                    )
                    .await
                    .with_context(|| format!("the type of {table}'s key column {k}"))?
                    .get(0);
                Some(
                    client
                        .prepare(&format!("SELECT to_jsonb(t)::text FROM public.{} t WHERE {} = $1::text::{ty}", quote(table), quote(k)))
                        .await
                        .with_context(|| format!("preparing the read of a row of {table} by its key"))?,
                )
            }
            _ => None,
        };
        Ok(Schema { columns: Vec::new(), chosen, label: label.into(), key: key.to_vec(), lookup })
    }

    /// Notes the columns of a row read, and says what changed since the last row.
    pub fn observe(&mut self, r: &Record, m: &Metrics) {
        if self.columns.len() == r.cells.len() && self.columns.iter().zip(&r.cells).all(|(a, (b, _))| a == b) {
            return;
        }
        let now: Vec<String> = r.cells.iter().map(|(n, _)| n.clone()).collect();
        if !self.columns.is_empty() {
            let added: Vec<&String> = now.iter().filter(|c| !self.columns.contains(c)).collect();
            let dropped: Vec<&String> = self.columns.iter().filter(|c| !now.contains(c)).collect();
            for (change, cols) in [("added", &added), ("dropped", &dropped)] {
                for c in cols.iter() {
                    m.schema_changes.get_or_create(&vec![("change".to_string(), change.to_string()), ("column".to_string(), c.to_string())]).inc();
                }
            }
            if !added.is_empty() || !dropped.is_empty() {
                eprintln!(
                    "run: the table's columns changed at key {}: added {added:?}, dropped {dropped:?}; serving goes on (a feature gone is imputed from \
                     the training statistics) and the next version reads the columns the table has now",
                    r.key.as_deref().unwrap_or("(none)")
                );
            }
        }
        self.columns = now;
    }

    /// The features the next version should read, in the table's order.
    pub fn wanted(&self, spec: &FeatureSpec, buf: &TrainingBuffer) -> Vec<String> {
        if self.columns.is_empty() {
            return spec.columns.iter().map(|c| c.name.clone()).collect();
        }
        let eligible = |c: &String| match &self.chosen {
            Some(f) => f.contains(c),
            None => *c != self.label && !self.key.contains(c) && !c.starts_with("__"),
        };
        self.columns
            .iter()
            .filter(|c| eligible(c))
            .filter(|c| spec.columns.iter().any(|s| s.name == **c) || buf.training().any(|r| r.get(c).is_some_and(|x| !x.is_null())))
            .cloned()
            .collect()
    }

    /// Fills `r`'s unchanged TOASTed values from the buffer's row of the same key, else from
    /// the table. A value still unavailable (no row) is left for the encoder to name.
    pub async fn fill(&self, client: &tokio_postgres::Client, r: &mut Record, buf: &TrainingBuffer) -> Result<()> {
        if let Some(earlier) = r.key.as_deref().and_then(|k| buf.get(k)) {
            if r.fill_unavailable(earlier).is_empty() {
                return Ok(());
            }
        }
        let (Some(stmt), Some(key)) = (&self.lookup, r.key.clone()) else { return Ok(()) };
        if let Some(row) = client.query_opt(stmt, &[&key]).await? {
            let text: String = row.get(0);
            let serde_json::Value::Object(json) = serde_json::from_str(&text).with_context(|| format!("the row with key {key} as JSON"))? else {
                anyhow::bail!("the row with key {key}: to_jsonb gave no object")
            };
            r.fill_unavailable(&record_of_json(&json, None, Some(key)));
        }
        Ok(())
    }
}
