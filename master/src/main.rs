use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};
use hps_common::seconds::at_least_ms;
use hps_common::Seconds;
use hps_master::{presets, run, views};
use hps_report::FigureFormat;
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
    Init(InitArgs),
    /// Propose settings, collect results, stop when the budget is spent.
    /// Running it again on the same directory continues the search.
    Run(RunArgs),
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
    Export(ExportArgs),
    /// One HTML file with the study's figures and statistics, readable
    /// offline; with several DIRs, a comparison of the studies.
    Report(ReportArgs),
}

#[derive(Args)]
struct InitArgs {
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
}

#[derive(Args)]
struct RunArgs {
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
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
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
}

#[derive(Args)]
struct ExportArgs {
    dir: PathBuf,
    #[arg(long, value_enum, default_value_t = views::ExportFormat::Csv)]
    format: views::ExportFormat,
    /// The long format instead: one row per finished trial and epoch
    /// (or exec report), with the training instruments.
    #[arg(long)]
    curves: bool,
    /// Write here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
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
    #[arg(
        long,
        default_value = "svg",
        requires = "figures",
        value_parser = clap::builder::PossibleValuesParser::new(["svg", "png"])
            .map(|s| if s == "png" { FigureFormat::Png } else { FigureFormat::Svg })
    )]
    format: FigureFormat,
    /// Colour the learning curves by this hyperparameter [default: the
    /// first searched one]; the page can switch to any other.
    #[arg(long, value_name = "PARAM")]
    color_by: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` on a terminal: a live progress line, the log written around it.
    let progress = (matches!(cli.cmd, Cmd::Run(_)) && std::io::stderr().is_terminal())
        .then(run::ProgressLine::new);
    match &progress {
        Some(p) => hps_shared_fs::logging::init_with_writer(cli.log.verbose, p.log_writer()),
        None => hps_shared_fs::logging::init(cli.log.verbose),
    }
    let done = match cli.cmd {
        Cmd::Init(args) => init(args),
        Cmd::Run(args) => run(args, progress),
        Cmd::Migrate { dir } => migrate(&dir),
        Cmd::Status { dir } => status(&dir),
        Cmd::Best { dir, n } => best(&dir, n),
        Cmd::Export(args) => export(args),
        Cmd::Report(args) => report(args),
    };
    match done {
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

/// `init`: the study text from a file or a preset, the directory, and
/// what the user should know before running it.
fn init(args: InitArgs) -> Result<()> {
    if args.list_presets {
        print!("{}", presets::list());
        return Ok(());
    }
    let Some(dir) = args.dir else {
        bail!("give the study directory to create, or --list-presets");
    };
    let (text, source) = match (args.study, args.preset) {
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
    let planned = study
        .total_trials()
        .map_or_else(|_| "?".into(), |n| n.to_string());
    println!(
        "created study `{}` in {} ({planned} trials planned{expansion})",
        study.name,
        dir.display(),
    );
    let sampler = hps_master::samplers::build(&study, &source).ok();
    let startup = sampler.and_then(|s| hps_master::samplers::startup_warning(&study, s.as_ref()));
    for w in startup
        .into_iter()
        .chain(hps_master::overflow_warning(&study))
    {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// `run`: the master loop until the budget is spent or a signal stops it.
fn run(args: RunArgs, progress: Option<run::ProgressLine>) -> Result<()> {
    let mut cfg = run::RunConfig::new(args.dir);
    cfg.poll = args.poll.map(Seconds::duration);
    cfg.rescan = args.rescan.duration();
    cfg.worker_grace = args.worker_grace.duration();
    cfg.lease_interval = args.lease_interval.duration();
    cfg.accept_study_change = args.accept_study_change;
    cfg.max_consecutive_failures = args.max_consecutive_failures;
    cfg.max_attempts = args.max_attempts;
    cfg.progress = progress;
    // The report is written by this same binary in a child process.
    cfg.report_exe = std::env::current_exe().ok();
    let shutdown = Arc::new(AtomicBool::new(false));
    hps_shared_fs::shutdown::set_on_signal(shutdown.clone(), "finishing the current scan");
    let summary = run::run(&cfg, shutdown)?;
    // writeln, not println: a reader that went away (a tee killed by the
    // same Ctrl-C) is no reason to panic; see main().
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

fn migrate(dir: &Path) -> Result<()> {
    hps_master::migrate::migrate(dir, &mut std::io::stdout())?;
    Ok(())
}

fn status(dir: &Path) -> Result<()> {
    Ok(views::status(&open(dir)?, &mut std::io::stdout().lock())?)
}

fn best(dir: &Path, n: usize) -> Result<()> {
    Ok(views::best(&open(dir)?, n, &mut std::io::stdout().lock())?)
}

/// `export`: to standard output, or atomically into a file.
fn export(args: ExportArgs) -> Result<()> {
    let d = open(&args.dir)?;
    let export = if args.curves {
        views::export_curves
    } else {
        views::export
    };
    match args.output {
        Some(path) => {
            let mut buf = Vec::new();
            export(&d, args.format, &mut buf)?;
            hps_shared_fs::write_atomic(&path, &buf)?;
            Ok(())
        }
        None => Ok(export(&d, args.format, &mut std::io::stdout().lock())?),
    }
}

fn report(args: ReportArgs) -> Result<()> {
    let out = args.output.unwrap_or_else(|| match args.dirs.as_slice() {
        [one] => one.join("report.html"),
        _ => PathBuf::from("hps-compare.html"),
    });
    let opts = hps_report::Options {
        color_by: args.color_by,
    };
    let figures = args.figures.as_deref().map(|d| (d, args.format));
    let w = hps_report::write(&args.dirs, &out, &opts, figures)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "wrote {} ({} figures, {:.0} KB)",
        w.html.display(),
        w.figures,
        w.bytes as f64 / 1024.0
    )?;
    if let Some(d) = args.figures {
        writeln!(stdout, "wrote the figures into {}", d.display())?;
    }
    Ok(())
}

fn open(dir: &Path) -> Result<StudyDir> {
    Ok(StudyDir::open(dir)?)
}
