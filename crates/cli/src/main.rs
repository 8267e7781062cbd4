//! The `tensorcdc` binary: clap subcommands, progress, pictures, and the demo's orchestration.
//! The only crate that uses `anyhow`; everything it calls returns typed errors.

mod args;
mod capture;
mod commands;
mod demo;
mod download;
mod export;
mod follow;
mod pictures;
mod progress;
use tensorcdc_learn::run;
mod sinks;
mod source;
mod tabular;
mod train;

use std::path::PathBuf;

use anyhow::{Context as _, Result};

/// mimalloc: training allocates and frees ~400 kB tensors every step; glibc serves those
/// with mmap/munmap and page faults, mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tensorcdc", version, about = "Live Postgres data into machine learning: change data capture, Kafka, and training in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The blog's whole story in one command: private Postgres, load, capture, train, evaluate while inserting, predict live.
    Demo(demo::DemoArgs),
    /// Continuous learning on one table: train on labelled rows as they commit, publish
    /// versions that pass the held-out gate, predict unlabelled rows with the serving one.
    /// `--config pipeline.toml` holds any of these flags (the command line's win).
    #[command(args_override_self = true)]
    Run(run::RunArgs),
    /// MNIST files: download them, turn them into SQL (the blog's mnist2sql).
    Mnist {
        #[command(subcommand)]
        command: MnistCommand,
    },
    /// Train a model and save a checkpoint folder: the blog's MNIST network on images, or, with
    /// --label, a network on any table's columns.
    Train(args::TrainArgs),
    /// Evaluate a checkpoint on a data set, a topic or a table: loss and accuracy (or regression errors).
    Evaluate(args::EvaluateArgs),
    /// Predict with a checkpoint: one image (--pixels, --png), one row (--row), or every new
    /// row as it commits (--follow).
    Predict(args::PredictArgs),
    /// Capture changes from Postgres (snapshot, then the WAL stream) as Debezium events.
    Capture(capture::CaptureArgs),
    /// Write a checkpoint as a Keras `.keras` file (keras.models.load_model reads it).
    Export(export::ExportArgs),
}

#[derive(Subcommand)]
enum MnistCommand {
    /// Download the four MNIST files into a directory.
    Download {
        /// Directory to put the files in.
        #[arg(long, default_value = "mnist")]
        out: PathBuf,
        #[command(flatten)]
        mirror: Mirror,
    },
    /// Write mnist_train.sql and mnist_test.sql (CREATE TABLE + one INSERT a row), loadable by `psql -f`.
    Sql {
        /// Directory holding the four MNIST .gz files.
        #[arg(long, default_value = "mnist")]
        data: PathBuf,
        /// Directory to write the two SQL files to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Download the files into --data first.
        #[arg(long)]
        download: bool,
        #[command(flatten)]
        mirror: Mirror,
        /// Only the first N rows of each split.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Load mnist_train and/or mnist_test directly into Postgres (binary COPY).
    Load {
        /// Directory holding the four MNIST .gz files.
        #[arg(long, default_value = "mnist")]
        data: PathBuf,
        /// Postgres connection URL.
        #[arg(long)]
        postgres: String,
        /// train, test or both.
        #[arg(long, default_value = "both")]
        split: String,
        /// Only the first N rows of each split.
        #[arg(long)]
        limit: Option<usize>,
        /// Rows per transaction.
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
    },
}

#[derive(clap::Args)]
struct Mirror {
    /// Base URL of the MNIST mirror.
    #[arg(long, default_value = download::DEFAULT_URL)]
    url: String,
    /// Skip the MD5 check (for other data sets in the MNIST format).
    #[arg(long)]
    no_checksum: bool,
}

fn main() {
    follow::mark_start();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENSORCDC_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let argv = match run::config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(Cli::parse_from(argv)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn load(data: &std::path::Path, url: &str, split: &str, limit: Option<usize>, chunk: usize) -> Result<()> {
    use tensorcdc_dataset::mnist::{self, Split};
    let splits: Vec<Split> = match split {
        "train" => vec![Split::Train],
        "test" => vec![Split::Test],
        "both" => vec![Split::Train, Split::Test],
        o => anyhow::bail!("--split {o:?}: expected train, test or both"),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = tensorcdc_postgres::conn::connect(url).await.with_context(|| format!("connecting to {}", tensorcdc_postgres::conn::redact(url)))?;
        for s in splits {
            let mut ex = mnist::load(data, s)?;
            if let Some(n) = limit {
                ex = ex.truncate(n);
            }
            let n = tensorcdc_postgres::load::load_examples(&client, s.table(), &ex, chunk).await?;
            println!("{}: {n} rows", s.table());
        }
        Ok(())
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mnist { command } => match command {
            MnistCommand::Download { out, mirror } => download::download(&mirror.url, &out, !mirror.no_checksum),
            MnistCommand::Sql { data, out, download, mirror, limit } => {
                if download {
                    download::download(&mirror.url, &data, !mirror.no_checksum)?;
                }
                for (path, n) in tensorcdc_dataset::mnist::export_sql(&data, &out, limit)? {
                    println!("wrote {} ({n} rows)", path.display());
                }
                Ok(())
            }
            MnistCommand::Load { data, postgres, split, limit, chunk } => load(&data, &postgres, &split, limit, chunk),
        },
        Command::Train(a) => commands::train(a),
        Command::Evaluate(a) => commands::evaluate(a),
        Command::Predict(a) => commands::predict(a),
        Command::Capture(a) => capture::capture(a),
        Command::Export(a) => export::export(a),
        Command::Demo(a) => demo::demo(a),
        Command::Run(a) => run::run(a),
    }
}
