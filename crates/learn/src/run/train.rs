//! `tensorcdc run`'s training thread: it owns the trainer, fine-tunes it job after job, scores
//! each version on the held-out rows, publishes it, and sends back the predictor of a version
//! the gate admits. Serving never waits for it.

use std::sync::mpsc as std_mpsc;

use crate::{Gate, Score, TrainingBuffer, VersionMeta, Versions};
use tensorcdc_change::Lsn;
use tensorcdc_dataset::features::{FeatureSpec, Record, Task};
use tensorcdc_dataset::Position;
use tensorcdc_model::device_from_env;
use tensorcdc_model::sequential::{checkpoint, Data, FitSettings, Loss, SeqPredictor, SeqTrainer, SequentialSpec};

use super::RunArgs;
use tensorcdc_source::clock::unix_ms as now_ms;

/// A training job: the data of one version.
pub struct Job {
    pub spec: FeatureSpec,
    pub train: Data,
    pub held: Data,
    pub epochs: usize,
    pub position: String,
    /// The end LSN of the last transaction whose labelled rows it counts.
    pub ack_lsn: u64,
    pub examples_seen: u64,
    /// Every labelled row counted but not trained on so far, by reason (this job's new rows
    /// added to what the last version carried).
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// A new model (the first, or one reading other columns), trained on every row held.
    pub fresh: bool,
    /// A new model's held-out rows as the serving version reads them (its own spec), so the
    /// gate compares the two on the same rows.
    pub held_serving: Option<Data>,
}

/// What the training thread sends back.
pub struct Done {
    pub meta: VersionMeta,
    pub predictor: Option<SeqPredictor>,
    /// The spec the version reads.
    pub spec: FeatureSpec,
}

/// Where the thread starts: a fresh model, or the last published version (after a restart)
/// and the serving version.
pub struct Start {
    pub trainer: Option<SeqTrainer>,
    pub serving: Option<SeqPredictor>,
}

fn score(p: &SeqPredictor, spec: &FeatureSpec, held: &Data) -> Score {
    let m = p.evaluate(held, 1024);
    Score { loss: m.loss(), accuracy: (spec.task == Task::Classification).then(|| m.accuracy()), rows: m.n }
}

/// Why a version could not be trained or published (the loop ends with it).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] tensorcdc_model::ModelError),
    #[error(transparent)]
    Versions(#[from] crate::VersionError),
}

fn fresh(a: &RunArgs, job: &Job) -> Result<SeqTrainer, TrainError> {
    let model = SequentialSpec::dense(job.spec.width(), &a.layers, job.spec.outputs());
    let loss = match job.spec.task {
        Task::Regression => Loss::MeanSquaredError,
        Task::Classification if model.outputs() == 1 => Loss::BinaryCrossentropy,
        Task::Classification => Loss::SparseCategoricalCrossentropy,
    };
    // One thread: the stream shares the machine with training.
    let settings = FitSettings { epochs: job.epochs, batch_size: 64, learning_rate: a.learning_rate, seed: a.seed, optimizer: None, threads: 1 };
    Ok(SeqTrainer::new(model, loss, settings, &device_from_env()?)?)
}

pub fn train_versions(
    a: RunArgs,
    versions: Versions,
    start: Start,
    jobs: std_mpsc::Receiver<Job>,
    done: tokio::sync::mpsc::UnboundedSender<Result<Done, TrainError>>,
) {
    let gate = Gate { margin: a.margin };
    let Start { mut trainer, mut serving } = start;
    for job in jobs {
        let r = (|| -> Result<Done, TrainError> {
            let t = match &mut trainer {
                Some(t) if !job.fresh => t,
                _ => trainer.insert(fresh(&a, &job)?),
            };
            for _ in 0..job.epochs {
                t.fit_epoch(&job.train, |_| {});
            }
            let p = t.predictor();
            // Both on the same held-out rows, as they are now.
            let candidate = score(&p, &job.spec, &job.held);
            let admitted = gate.admits(&candidate, serving.as_ref().map(|s| score(s, &job.spec, job.held_serving.as_ref().unwrap_or(&job.held))).as_ref());
            let meta = VersionMeta {
                version: versions.next_number()?,
                position: job.position,
                examples_seen: job.examples_seen,
                skipped: job.skipped,
                ack_lsn: job.ack_lsn,
                score: candidate,
                serving: admitted,
                published_ms: now_ms(),
            };
            versions.publish(&meta, |dir| checkpoint::save(t, &job.spec, dir))?;
            // Old checkpoints that cannot be deleted are said, not fatal: learning goes on.
            if let Err(e) = versions.prune(a.keep_versions) {
                eprintln!("run: pruning old checkpoints: {e}");
            }
            if admitted {
                serving = Some(p.clone());
            }
            Ok(Done { meta, predictor: admitted.then_some(p), spec: job.spec })
        })();
        if done.send(r).is_err() {
            return;
        }
    }
}

/// The job of the next version: the new training rows and a replay sample of the buffer, or,
/// for a new model (`fresh`: the first, or one reading other columns), every training row
/// held; scored on the held-out rows (and, for a new model replacing a serving one, the same
/// rows as `serving_spec` reads them). `count_all` (the first version): every labelled row
/// held that does not encode is added to `skipped` (later ones are counted as they arrive,
/// [`count_skipped`]).
#[allow(clippy::too_many_arguments)] // the loop's state, each part borrowed apart
pub(super) fn make_job(
    a: &RunArgs,
    spec: &FeatureSpec,
    buf: &mut TrainingBuffer,
    fresh: bool,
    count_all: bool,
    position: Option<&Position>,
    ack_lsn: Lsn,
    skipped: &std::collections::BTreeMap<String, u64>,
    serving_spec: Option<&FeatureSpec>,
) -> Job {
    let new = buf.take_new();
    let mut skipped = skipped.clone();
    if count_all {
        for r in buf.training().chain(buf.held_out()) {
            count_skipped(spec, r, &mut skipped);
        }
    }
    let mut rows: Vec<&Record> = new.iter().collect();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(a.seed ^ buf.labelled_changes);
    if fresh {
        // Every training row held, each once (the new ones are among them).
        rows = buf.training().collect();
    } else {
        rows.extend(buf.replay(a.replay, a.replay_window, &mut rng));
    }
    let held: Vec<&Record> = if a.held_out_window == 0 { buf.held_out().collect() } else { buf.recent(true, a.held_out_window) };
    Job {
        train: Data::encode(spec, rows.iter().copied()).0,
        held: Data::encode(spec, held.iter().copied()).0,
        spec: spec.clone(),
        epochs: if fresh { a.initial_epochs } else { a.refresh_epochs },
        position: position.map(ToString::to_string).unwrap_or_default(),
        ack_lsn: ack_lsn.0,
        examples_seen: buf.labelled_changes,
        skipped,
        fresh,
        held_serving: serving_spec.map(|s| Data::encode(s, held.iter().copied()).0),
    }
}

/// Adds a labelled row that does not encode to `skipped`, by reason; the first of each
/// reason is said on stderr.
pub(super) fn count_skipped(spec: &FeatureSpec, r: &Record, skipped: &mut std::collections::BTreeMap<String, u64>) {
    let mut scratch = Vec::new();
    if let Err(e) = spec.target(r).and_then(|_| spec.encode(r, &mut scratch)) {
        let reason = e.reason();
        if !skipped.contains_key(&reason) {
            eprintln!(
                "run: labelled row with key {} not trained on: {e} (counted in the version's \"skipped\" and /metrics' examples_skipped)",
                r.key.as_deref().unwrap_or("(none)")
            );
        }
        *skipped.entry(reason).or_default() += 1;
    }
}
