//! Graceful stop on SIGTERM / SIGINT — how Slurm and Kubernetes preempt,
//! and what Ctrl-C sends. The first signal sets a flag that the master and
//! worker loops poll; a second one exits at once with status 130.
//!
//! SIGUSR2 is Slurm's warning before a time limit (`--signal=B:USR2@120`,
//! passed on by `deploy/slurm/`'s batch scripts) or a preemption: stop
//! cleanly, like the first SIGTERM. It never forces: the batch script and
//! Slurm may both deliver it, and a SIGTERM after it (the job ending) is
//! still the first SIGTERM; only a second SIGTERM/SIGINT exits at once.
//!
//! A SIGINT and a SIGTERM within [`SAME_REQUEST`] of each other are one
//! request, not two: a launcher that passes the terminal's Ctrl-C on as
//! SIGTERM to children that got the SIGINT too (they share the terminal's
//! process group) must not make them drop their trials. The same signal
//! twice — a second Ctrl-C — always forces.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How close a SIGINT and a SIGTERM must be to count as one request.
pub const SAME_REQUEST: Duration = Duration::from_secs(2);

/// The signals that ask for a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
    Usr2,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Usr2 => "SIGUSR2",
        }
    }
}

/// What one more signal asks for, given those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The first: stop cleanly.
    Stop,
    /// The other kind, soon after the first: the same request again.
    SameStop,
    /// A second request: exit at once.
    Force,
}

/// The signals received so far.
#[derive(Debug, Default)]
pub struct Signals {
    /// The first SIGINT or SIGTERM.
    first: Option<(Signal, Instant)>,
    merged: bool,
    usr2: bool,
}

impl Signals {
    pub fn meaning(&mut self, sig: Signal, now: Instant) -> Meaning {
        if sig == Signal::Usr2 {
            let again = self.usr2 || self.first.is_some();
            self.usr2 = true;
            return if again {
                Meaning::SameStop
            } else {
                Meaning::Stop
            };
        }
        if self.usr2 && self.first.is_none() {
            // Already stopping on SIGUSR2: this one asks for the same.
            self.first = Some((sig, now));
            self.merged = true;
            return Meaning::SameStop;
        }
        match self.first {
            None => {
                self.first = Some((sig, now));
                Meaning::Stop
            }
            Some((first, at))
                if first != sig
                    && !self.merged
                    && now.saturating_duration_since(at) < SAME_REQUEST =>
            {
                self.merged = true;
                Meaning::SameStop
            }
            Some(_) => Meaning::Force,
        }
    }
}

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
            let (Ok(mut term), Ok(mut int), Ok(mut usr2)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::user_defined2()),
            ) else {
                tracing::warn!("cannot install signal handlers; SIGTERM will kill this process without cleanup");
                return;
            };
            let mut seen = Signals::default();
            loop {
                let sig = tokio::select! {
                    _ = term.recv() => Signal::Term,
                    _ = int.recv() => Signal::Int,
                    _ = usr2.recv() => Signal::Usr2,
                };
                match seen.meaning(sig, Instant::now()) {
                    Meaning::Stop => {
                        flag.store(true, Ordering::SeqCst);
                        if sig == Signal::Usr2 {
                            tracing::info!("{} received; {on_first} (SIGTERM twice exits at once)", sig.name());
                        } else {
                            tracing::info!("{} received; {on_first} (again to exit at once)", sig.name());
                        }
                    }
                    Meaning::SameStop => tracing::info!(
                        "{} received after the first signal; taken as the same request",
                        sig.name()
                    ),
                    Meaning::Force => {
                        tracing::warn!("{} received again; exiting at once", sig.name());
                        std::process::exit(130);
                    }
                }
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sigint_then_a_sigterm_from_the_launcher_is_one_stop_request() {
        let t = Instant::now();
        let mut s = Signals::default();
        assert_eq!(s.meaning(Signal::Int, t), Meaning::Stop);
        let soon = t + Duration::from_millis(300);
        assert_eq!(s.meaning(Signal::Term, soon), Meaning::SameStop);
        // A second Ctrl-C still forces.
        assert_eq!(s.meaning(Signal::Int, soon), Meaning::Force);

        let mut s = Signals::default();
        assert_eq!(s.meaning(Signal::Term, t), Meaning::Stop);
        assert_eq!(s.meaning(Signal::Int, soon), Meaning::SameStop);
        assert_eq!(s.meaning(Signal::Term, soon), Meaning::Force);
    }

    /// Slurm's warning (and the batch script passing it on) never forces;
    /// the SIGTERM that ends the job after it is not a second request.
    #[test]
    fn sigusr2_stops_and_never_forces() {
        let t = Instant::now();
        let mut s = Signals::default();
        assert_eq!(s.meaning(Signal::Usr2, t), Meaning::Stop);
        assert_eq!(s.meaning(Signal::Usr2, t), Meaning::SameStop);
        let late = t + 10 * SAME_REQUEST;
        assert_eq!(s.meaning(Signal::Term, late), Meaning::SameStop);
        assert_eq!(s.meaning(Signal::Usr2, late), Meaning::SameStop);
        // A second SIGTERM still exits at once.
        assert_eq!(s.meaning(Signal::Term, late), Meaning::Force);

        // Preemption: Slurm's SIGTERM first, the script's SIGUSR2 after it.
        let mut s = Signals::default();
        assert_eq!(s.meaning(Signal::Term, t), Meaning::Stop);
        assert_eq!(s.meaning(Signal::Usr2, late), Meaning::SameStop);
        assert_eq!(s.meaning(Signal::Int, t), Meaning::SameStop);
    }

    #[test]
    fn the_same_signal_twice_or_the_other_one_late_forces() {
        let t = Instant::now();
        let mut s = Signals::default();
        assert_eq!(s.meaning(Signal::Int, t), Meaning::Stop);
        assert_eq!(s.meaning(Signal::Int, t), Meaning::Force);

        let mut s = Signals::default();
        assert_eq!(s.meaning(Signal::Int, t), Meaning::Stop);
        assert_eq!(s.meaning(Signal::Term, t + SAME_REQUEST), Meaning::Force);
    }
}
