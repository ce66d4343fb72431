use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hps_common::seconds::at_least_ms;
use hps_common::Seconds;
use hps_master::{presets, run, views};
use hps_shared_fs::StudyDir;

/// hps master: proposes hyperparameter settings into a shared study
/// directory and collects the results workers write back.
#[derive(Parser)]
#[command(name = "hps-master", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct LogArgs {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a study directory from a study file or a preset.
    Init {
        #[arg(required_unless_present = "list_presets")]
        dir: Option<PathBuf>,
        /// The study file (see docs/study-file.md).
        #[arg(
            long,
            conflicts_with = "preset",
            required_unless_present_any = ["preset", "list_presets"]
        )]
        study: Option<PathBuf>,
        /// A built-in study (the files in examples/; --list-presets
        /// describes them).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(presets::names()))]
        preset: Option<String>,
        /// List the presets with a one-line description and an estimated
        /// CPU time each, and create nothing.
        #[arg(long, conflicts_with_all = ["dir", "study", "preset"])]
        list_presets: bool,
    },
    /// Propose settings, collect results, stop when the budget is spent.
    /// Running it again on the same directory continues the search.
    Run {
        dir: PathBuf,
        /// Never use filesystem events; rescan every SECONDS instead
        /// (the default on NFS/FUSE/Ceph/Lustre, where events are unreliable).
        #[arg(long, value_name = "SECONDS", value_parser = at_least_ms::<50>)]
        poll: Option<Seconds>,
        /// Rescan at least every SECONDS even when events work.
        #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = at_least_ms::<50>)]
        rescan: Seconds,
        /// Presume a worker dead after its heartbeat has not changed for SECONDS.
        #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = at_least_ms::<500>)]
        worker_grace: Seconds,
        /// Runs of a trial (on workers that died) before it is marked failed.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// Renew the master lease every SECONDS.
        #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = at_least_ms::<100>)]
        lease_interval: Seconds,
        /// Stop proposing and exit with an error after N trials in a row
        /// ended `failed` (a wrong command, path or objective metric);
        /// 0 never stops.
        #[arg(long, value_name = "N", default_value_t = 3)]
        max_consecutive_failures: u32,
        /// Go on although study.json was edited after init (other than
        /// budget.trials, name or description), mixing the trials run before
        /// and after the edit; the edited study is recorded for later runs.
        #[arg(long)]
        accept_study_change: bool,
    },
    /// Convert a study directory of an older release (flat per-trial
    /// folders, directory format 1) to the sharded layout (format 2).
    /// Stop the master and the workers first; safe to run again after an
    /// interruption.
    Migrate { dir: PathBuf },
    /// Counts of pending, running, done and failed trials; live workers; the best so far.
    Status { dir: PathBuf },
    /// A table of the best trials with their hyperparameters.
    Best {
        dir: PathBuf,
        #[arg(short, default_value_t = 10)]
        n: usize,
    },
    /// One row per trial with hyperparameters and final metrics.
    Export {
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// The long format instead: one row per finished trial and epoch
        /// (or exec report), with the training instruments.
        #[arg(long)]
        curves: bool,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// One HTML file with the study's figures and statistics, readable
    /// offline; with several DIRs, a comparison of the studies.
    Report {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The HTML file [default: DIR/report.html for one study,
        /// ./hps-compare.html for several].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Also write every figure as its own file into OUTDIR.
        #[arg(long, value_name = "OUTDIR")]
        figures: Option<PathBuf>,
        /// The format of the --figures files.
        #[arg(long, value_enum, default_value_t = FigureFormat::Svg, requires = "figures")]
        format: FigureFormat,
        /// Colour the learning curves by this hyperparameter [default: the
        /// first searched one]; the page can switch to any other.
        #[arg(long, value_name = "PARAM")]
        color_by: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FigureFormat {
    Svg,
    Png,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Jsonl,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` on a terminal: a live progress line, the log written around it.
    let progress = (matches!(cli.cmd, Cmd::Run { .. }) && std::io::stderr().is_terminal())
        .then(run::ProgressLine::new);
    match &progress {
        Some(p) => hps_shared_fs::logging::init_with_writer(cli.log.verbose, p.log_writer()),
        None => hps_shared_fs::logging::init(cli.log.verbose),
    }
    match dispatch(cli.cmd, progress) {
        Ok(()) => ExitCode::SUCCESS,
        // `hps-master export DIR | head`: the reader has all it wanted.
        // Like ripgrep, a closed pipe is success, and nothing is printed.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", hps_common::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn dispatch(cmd: Cmd, progress: Option<run::ProgressLine>) -> Result<()> {
    match cmd {
        Cmd::Init {
            list_presets: true, ..
        } => {
            print!("{}", presets::list());
            Ok(())
        }
        Cmd::Init {
            dir, study, preset, ..
        } => {
            let Some(dir) = dir else {
                bail!("give the study directory to create, or --list-presets");
            };
            let (text, source) = match (study, preset) {
                (Some(path), _) => (hps_shared_fs::dir::read_study_file(&path)?, path),
                (None, Some(name)) => match presets::preset(&name) {
                    Some(p) => (p.text.to_string(), PathBuf::from(format!("preset:{name}"))),
                    None => bail!(
                        "unknown preset `{name}`; presets are {} (hps-master init --list-presets)",
                        presets::names().collect::<Vec<_>>().join(", ")
                    ),
                },
                (None, None) => bail!("give --study FILE or --preset NAME"),
            };
            let study = hps_master::init(&dir, &text, &source)?;
            let expansion = study
                .grid_expansion()
                .map_or(String::new(), |g| format!("; {g}"));
            println!(
                "created study `{}` in {} ({} trials planned{expansion})",
                study.name,
                dir.display(),
                study
                    .total_trials()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into())
            );
            let sampler = hps_master::samplers::build(&study, &source).ok();
            if let Some(w) =
                sampler.and_then(|s| hps_master::samplers::startup_warning(&study, s.as_ref()))
            {
                eprintln!("warning: {w}");
            }
            if let Some(w) = hps_master::overflow_warning(&study) {
                eprintln!("warning: {w}");
            }
            Ok(())
        }
        Cmd::Migrate { dir } => {
            hps_master::migrate::migrate(&dir, &mut std::io::stdout())?;
            Ok(())
        }
        Cmd::Run {
            dir,
            poll,
            rescan,
            worker_grace,
            max_attempts,
            lease_interval,
            max_consecutive_failures,
            accept_study_change,
        } => {
            let mut cfg = run::RunConfig::new(dir);
            cfg.poll = poll.map(Seconds::duration);
            cfg.rescan = rescan.duration();
            cfg.worker_grace = worker_grace.duration();
            cfg.lease_interval = lease_interval.duration();
            cfg.accept_study_change = accept_study_change;
            cfg.max_consecutive_failures = max_consecutive_failures;
            cfg.progress = progress;
            // The report is written by this same binary in a child process.
            cfg.report_exe = std::env::current_exe().ok();
            if max_attempts == 0 {
                bail!("--max-attempts must be at least 1");
            }
            cfg.max_attempts = max_attempts;
            let shutdown = Arc::new(AtomicBool::new(false));
            {
                let s = shutdown.clone();
                hps_shared_fs::shutdown::set_on_signal(s, "finishing the current scan");
            }
            let summary = run::run(&cfg, shutdown.clone())?;
            // writeln, not println: a reader that went away (a tee killed
            // by the same Ctrl-C) is no reason to panic; see main().
            let mut out = std::io::stdout().lock();
            if summary.finished {
                writeln!(
                    out,
                    "study finished: {} trials, {} results",
                    summary.planned, summary.results
                )?;
            } else {
                writeln!(
                    out,
                    "stopped with {} of {} trials proposed and {} results; run the same command to continue",
                    summary.proposed, summary.planned, summary.results
                )?;
            }
            Ok(())
        }
        Cmd::Report {
            dirs,
            output,
            figures,
            format,
            color_by,
        } => report(dirs, output, figures, format, color_by),
        Cmd::Status { dir } => Ok(views::status(&open(&dir)?, &mut std::io::stdout().lock())?),
        Cmd::Best { dir, n } => Ok(views::best(&open(&dir)?, n, &mut std::io::stdout().lock())?),
        Cmd::Export {
            dir,
            format,
            curves,
            output,
        } => {
            let d = open(&dir)?;
            let format = match format {
                Format::Csv => views::ExportFormat::Csv,
                Format::Jsonl => views::ExportFormat::Jsonl,
            };
            let export = if curves {
                views::export_curves
            } else {
                views::export
            };
            match output {
                Some(path) => {
                    let mut buf = Vec::new();
                    export(&d, format, &mut buf)?;
                    hps_shared_fs::write_atomic(&path, &buf)?;
                    Ok(())
                }
                None => Ok(export(&d, format, &mut std::io::stdout().lock())?),
            }
        }
    }
}

fn report(
    dirs: Vec<PathBuf>,
    output: Option<PathBuf>,
    figures: Option<PathBuf>,
    format: FigureFormat,
    color_by: Option<String>,
) -> Result<()> {
    let out = output.unwrap_or_else(|| match dirs.as_slice() {
        [one] => one.join("report.html"),
        _ => PathBuf::from("hps-compare.html"),
    });
    let format = match format {
        FigureFormat::Svg => hps_report::FigureFormat::Svg,
        FigureFormat::Png => hps_report::FigureFormat::Png,
    };
    let opts = hps_report::Options { color_by };
    let w = hps_report::write(&dirs, &out, &opts, figures.as_deref().map(|d| (d, format)))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "wrote {} ({} figures, {:.0} KB)",
        w.html.display(),
        w.figures,
        w.bytes as f64 / 1024.0
    )?;
    if let Some(d) = figures {
        writeln!(stdout, "wrote the figures into {}", d.display())?;
    }
    Ok(())
}

fn open(dir: &std::path::Path) -> Result<StudyDir> {
    Ok(StudyDir::open(dir)?)
}
