//! What `tensorcdc run`'s loop holds between batches, and what it does with each: whole
//! transactions applied to the training buffer, unlabelled rows predicted (or kept until a
//! version serves, or a restart's backlog predicted beside the stream), versions received
//! from the training thread, the next version's job when one is due, and the LSN the slot
//! may be confirmed to (the exactly-once rule).

use std::collections::HashMap;
use std::time::Instant;

use crate::{Applied, TrainingBuffer, Txns};
use anyhow::Result;
use tensorcdc_change::Lsn;
use tensorcdc_dataset::features::{Change, FeatureSpec, SpecOptions};
use tensorcdc_dataset::Position;
use tensorcdc_model::sequential::SeqPredictor;
use tensorcdc_source::ChangeItem;

use super::predictions::{Pending, Predictions};
use super::train::{self, Done, Job};
use super::{metrics, RunArgs};

/// What the loop holds between batches.
pub(super) struct State {
    /// Changes come from a capture (gathered into whole transactions), not Kafka records.
    pub(super) by_txn: bool,
    pub(super) buf: TrainingBuffer,
    pub(super) txns: Txns<ChangeItem>,
    /// The spec the next version trains with.
    pub(super) spec: Option<FeatureSpec>,
    /// The serving version: its predictor, number and spec (a version fitted after a column
    /// change reads other columns than the one before).
    pub(super) serving: Option<(SeqPredictor, u64, FeatureSpec)>,
    /// The table's columns as rows arrive, and unchanged TOASTed values.
    pub(super) schema: super::schema::Schema,
    /// Unlabelled rows not yet predicted (no version serves yet), by key.
    pub(super) waiting: HashMap<String, Pending>,
    /// Keys of the rows this process predicted: one labelled since loses its prediction.
    pub(super) predicted_keys: std::collections::HashSet<String>,
    /// A restart's unlabelled rows, predicted again beside the stream a chunk at a time.
    pub(super) backlog: Vec<Pending>,
    /// Keys the stream changed while the backlog lasts: their backlog row is out of date.
    pub(super) superseded: std::collections::HashSet<String>,
    /// When the backlog was read, and how many rows it held.
    pub(super) backlog_since: Option<(Instant, usize)>,
    /// The position of the last change read (a restart's starts from the version's).
    pub(super) position: Option<Position>,
    pub(super) predicted: usize,
    /// Labelled changes counted by the last published version.
    pub(super) counted: u64,
    /// Labelled changes counted but not trained on (they did not encode), by reason.
    pub(super) skipped: std::collections::BTreeMap<String, u64>,
    pub(super) training: bool,
    /// No version published yet: a crash starts over (a new slot, `resume::reset_slot`), so
    /// what is read may be confirmed (an incremental first snapshot then goes on from its
    /// last chunk after a reconnect).
    pub(super) first: bool,
    /// The labelled changes when the first version's spec last failed to fit for want of rows.
    pub(super) unfit_at: Option<u64>,
    pub(super) last_version: Instant,
    /// The LSN confirmed to the slot so far, and the one that may be confirmed next.
    pub(super) confirmed: Lsn,
    pub(super) confirmable: Lsn,
}

impl State {
    /// Applies whole transactions (and snapshot rows) to the buffer; deletes remove their
    /// prediction; returns the unlabelled rows to predict.
    pub(super) async fn apply(&mut self, out: &Predictions, m: &metrics::Metrics, items: Vec<ChangeItem>) -> Result<Vec<Pending>> {
        let mut fresh = Vec::new();
        for it in items {
            let ack = it.ack_lsn;
            if let (true, true, Some(a)) = (it.snapshot, self.by_txn, ack) {
                self.txns.passed(a);
            }
            let txn = if it.snapshot || !self.by_txn { Some(vec![it]) } else { self.txns.push(it, ack) };
            for it in txn.into_iter().flatten() {
                if !self.backlog.is_empty() {
                    match &it.change {
                        Change::Upsert(r) => self.superseded.extend(r.key.clone()),
                        Change::Delete(k) => {
                            self.superseded.insert(k.clone());
                        }
                        Change::Skip => {}
                    }
                }
                if it.position.is_some() {
                    self.position.clone_from(&it.position);
                }
                if let Change::Delete(k) = &it.change {
                    // Its prediction goes, and so does one this batch was about to write.
                    out.delete(k).await?;
                    self.predicted_keys.remove(k);
                    // A row waiting for a first version that is deleted is not predicted.
                    self.waiting.remove(k);
                    fresh.retain(|p: &Pending| p.record.key.as_ref() != Some(k));
                }
                let mut change = it.change;
                if let Change::Upsert(r) = &mut change {
                    if r.has_unavailable() {
                        self.schema.fill(&out.client, r, &self.buf).await?;
                    }
                    self.schema.observe(r, m);
                }
                // A snapshot's read of a row already held is not counted again.
                let before = self.buf.labelled_changes;
                let applied = if it.snapshot { self.buf.apply_read(change) } else { self.buf.apply(change) };
                let counted = self.buf.labelled_changes > before;
                match applied {
                    Applied::Labelled { key, .. } => {
                        // Counted, so trained on or reported: one that does not encode is
                        // counted apart (before the first spec, the first job counts them).
                        if let (true, Some(spec), Some(r)) = (counted, &self.spec, self.buf.get(&key)) {
                            train::count_skipped(spec, r, &mut self.skipped);
                        }
                        // A row labelled late: its label is the answer now, not a prediction.
                        if self.predicted_keys.remove(&key) {
                            out.delete(&key).await?;
                        }
                        self.waiting.remove(&key);
                        fresh.retain(|p: &Pending| p.record.key.as_ref() != Some(&key));
                        m.labelled_rows.inc()
                    }
                    Applied::Unlabelled(record) => {
                        fresh.push(Pending { record, position: it.position, commit_ts_ms: it.commit_ts_ms, snapshot: it.snapshot });
                        0
                    }
                    Applied::Retracted(k) => {
                        self.waiting.remove(&k);
                        0
                    }
                    Applied::Ignored => 0,
                };
            }
        }
        Ok(fresh)
    }

    /// Predicts with the serving version, or keeps the rows until one serves.
    pub(super) async fn serve(&mut self, out: &Predictions, m: &metrics::Metrics, rows: Vec<Pending>) -> Result<()> {
        match &self.serving {
            Some((p, v, s)) => {
                self.predicted += out.predict(m, s, p, *v, &rows).await?;
                self.predicted_keys.extend(rows.iter().filter_map(|r| r.record.key.clone()));
            }
            None => self.waiting.extend(rows.into_iter().filter_map(|p| p.record.key.clone().map(|k| (k, p)))),
        }
        Ok(())
    }

    /// Predicts the next chunk of a restart's backlog (rows the stream changed since are left
    /// to the stream); says the rate when the backlog is done.
    pub(super) async fn repredict(&mut self, out: &Predictions, m: &metrics::Metrics) -> Result<()> {
        const CHUNK: usize = 8192;
        let chunk = self.backlog.split_off(self.backlog.len().saturating_sub(CHUNK));
        let rows: Vec<Pending> = chunk.into_iter().filter(|p| p.record.key.as_ref().is_none_or(|k| !self.superseded.contains(k))).collect();
        self.serve(out, m, rows).await?;
        if self.backlog.is_empty() {
            self.superseded = Default::default();
            if let Some((t, n)) = self.backlog_since.take() {
                let s = t.elapsed().as_secs_f64();
                println!("run: predicted the {n} unlabelled rows of the restart again in {s:.2} s ({:.0} rows/s), beside the stream", n as f64 / s.max(1e-9));
            }
        }
        Ok(())
    }

    /// A version came back from the training thread.
    pub(super) async fn published(&mut self, out: &Predictions, m: &metrics::Metrics, d: Done) -> Result<()> {
        self.training = false;
        let s = d.meta.score;
        println!(
            "version {}: {} examples seen{}, held-out {} on {} rows{}",
            d.meta.version,
            d.meta.examples_seen,
            match d.meta.skipped.values().sum::<u64>() {
                0 => String::new(),
                n => format!(" ({n} of them skipped: they did not encode)"),
            },
            s.accuracy.map(|x| format!("accuracy {x:.4}")).unwrap_or_else(|| format!("loss {:.4}", s.loss)),
            s.rows,
            if d.meta.serving { ", serving" } else { ", worse than the serving version: kept, not serving" }
        );
        m.live.version(&d.meta);
        self.counted = d.meta.examples_seen;
        self.first = false;
        self.confirmable = self.confirmable.max(Lsn(d.meta.ack_lsn));
        m.examples_trained.set(d.meta.examples_seen as i64);
        m.set_skipped(&d.meta.skipped);
        if !d.meta.serving {
            m.versions_refused.inc();
        }
        if let Some(p) = d.predictor {
            m.model_version.set(d.meta.version as i64);
            m.heldout_loss.set(s.loss);
            m.heldout_accuracy.set(s.accuracy.unwrap_or(f64::NAN));
            self.serving = Some((p, d.meta.version, d.spec));
            let rows: Vec<Pending> = self.waiting.drain().map(|(_, p)| p).collect();
            self.serve(out, m, rows).await?;
        }
        Ok(())
    }

    /// The next version's job, when one is due: the first after the snapshot, then every
    /// `--retrain-every` new labelled rows or `--retrain-secs` seconds; at the end of the
    /// stream (`ending`), whatever is left. Only between transactions, so a version counts
    /// whole transactions.
    pub(super) fn due(&mut self, a: &RunArgs, streaming: bool, ending: bool, key_columns: &[String]) -> Result<Option<Job>> {
        let new = self.buf.new_count();
        let first = self.spec.is_none();
        let due = (!first || streaming || ending)
            && (new >= a.retrain_every
                || (new > 0 && (first || self.last_version.elapsed().as_secs_f64() >= a.retrain_secs))
                || (ending && self.buf.labelled_changes > self.counted));
        if self.training || !due || self.txns.in_transaction() {
            return Ok(None);
        }
        if first {
            let opts = SpecOptions {
                label: a.label.clone(),
                features: a.features.clone(),
                exclude: key_columns.to_vec(),
                scaling: Default::default(),
                nulls: Default::default(),
                task: None,
            };
            // Fitted again only when labelled rows came since the last try.
            if !ending && self.unfit_at == Some(self.buf.labelled_changes) {
                return Ok(None);
            }
            match FeatureSpec::fit(self.buf.training(), &opts) {
                Ok(mut spec) => {
                    spec.impute_missing = true;
                    self.spec = Some(spec)
                }
                // A stream's first rows may all have one class (or a column NULL): more come.
                Err(e) if e.needs_more_rows() && !ending => {
                    if self.unfit_at.is_none() {
                        eprintln!("run: no first version yet: {e}; waiting for more labelled rows");
                    }
                    self.unfit_at = Some(self.buf.labelled_changes);
                    return Ok(None);
                }
                Err(e) => anyhow::bail!("the first version: {e}"),
            }
        }
        // The table's columns changed since the spec was fitted: the next version reads the
        // columns it has now, fitted anew on every row held.
        let mut refit = None;
        if let Some(old) = self.spec.as_ref().filter(|_| !first) {
            let wanted = self.schema.wanted(old, &self.buf);
            let has: Vec<&str> = old.columns.iter().map(|c| c.name.as_str()).collect();
            let mut sorted = wanted.clone();
            sorted.sort();
            let mut had = has.clone();
            had.sort();
            if sorted != had && !wanted.is_empty() {
                let opts = SpecOptions {
                    label: a.label.clone(),
                    features: Some(wanted.clone()),
                    exclude: key_columns.to_vec(),
                    scaling: old.scaling,
                    nulls: old.nulls,
                    task: Some(old.task),
                };
                match FeatureSpec::fit(self.buf.training(), &opts) {
                    Ok(mut spec) => {
                        spec.impute_missing = true;
                        // A column added while running: its NULLs (rows written before it
                        // existed) are imputed, not skipped.
                        for c in spec.columns.iter_mut().filter(|c| !has.contains(&c.name.as_str())) {
                            c.impute_null = true;
                        }
                        println!("run: the next version reads {wanted:?} (the last read {has:?}): a new model, fitted on the {} rows held", self.buf.len());
                        refit = Some(spec);
                    }
                    Err(e) => eprintln!("run: the table's columns changed, but a spec of {wanted:?} does not fit yet ({e}); training goes on with {has:?}"),
                }
            }
        }
        let fresh = first || refit.is_some();
        let spec = refit.clone().or_else(|| self.spec.clone()).expect("fitted");
        // The serving version reads the held-out rows through its own spec whenever it is not
        // this one (a refit, or a refit the gate refused before).
        let serving_spec = self.serving.as_ref().map(|s| &s.2).filter(|s| **s != spec);
        let job = train::make_job(a, &spec, &mut self.buf, fresh, first, self.position.as_ref(), self.txns.through(), &self.skipped, serving_spec);
        if job.train.is_empty() {
            return Ok(None);
        }
        // Only a spec a job trains becomes the training spec.
        if let Some(s) = refit {
            self.spec = Some(s);
        }
        self.skipped.clone_from(&job.skipped);
        self.training = true;
        self.last_version = Instant::now();
        Ok(Some(job))
    }

    /// The LSN the slot may move to: what the last version counted, or everything read when
    /// no labelled change since is waiting for a version.
    pub(super) fn next_confirm(&mut self) -> Option<Lsn> {
        if !self.training && (self.buf.labelled_changes == self.counted || self.first) && !self.txns.in_transaction() {
            self.confirmable = self.confirmable.max(self.txns.through());
        }
        (self.confirmable > self.confirmed).then(|| {
            self.confirmed = self.confirmable;
            self.confirmed
        })
    }
}
