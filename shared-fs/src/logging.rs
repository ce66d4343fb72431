//! The log output of both binaries: `tracing` to stderr, at `info` by
//! default, `-v` for debug and `-vv` for trace; `RUST_LOG` overrides.
//! Colour only on a terminal, so log files stay plain text.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;

/// Install the subscriber; `verbose` counts the `-v` flags.
pub fn init(verbose: u8) {
    init_with_writer(verbose, std::io::stderr);
}

/// [`init`] with the log lines written through `writer` instead of straight
/// to stderr (e.g. around a progress line that `writer` redraws). Colour
/// still follows whether stderr is a terminal.
pub fn init_with_writer<W>(verbose: u8, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
