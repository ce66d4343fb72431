//! Graceful stop on SIGTERM / SIGINT — how Slurm and Kubernetes preempt,
//! and what Ctrl-C sends. The first signal sets a flag that the master and
//! worker loops poll; a second one exits at once with status 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Install the handlers on a background thread. `on_first` is logged when
/// the first signal arrives (what the process will do now).
pub fn set_on_signal(flag: Arc<AtomicBool>, on_first: &'static str) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            tracing::warn!(
                "cannot install signal handlers; SIGTERM will kill this process without cleanup"
            );
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                tracing::warn!("cannot install signal handlers; SIGTERM will kill this process without cleanup");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if flag.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                tracing::info!("signal received; {on_first} (again to exit at once)");
            }
        });
    });
}
