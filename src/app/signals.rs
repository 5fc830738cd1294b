//! SIGINT, SIGTERM and SIGHUP end a run the same way: the load stops, requests in flight become
//! `Cancelled` records, the journal is flushed and a partial summary written; the exit status
//! says which signal it was (130, 143, 129, as a shell reports a process killed by it). SIGTERM
//! matters most: it is what `timeout`, Docker and CI send. A second signal exits at once (the
//! journal then holds what reached the kernel, at most one flush interval short).

use crate::load::{Interrupt, InterruptCause};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The exit status of a run ended by `cause`'s signal, as shells report a process it killed.
pub(crate) fn status_of(cause: InterruptCause) -> i32 {
    128 + match cause {
        InterruptCause::CtrlC => libc::SIGINT,
        InterruptCause::Terminate => libc::SIGTERM,
        InterruptCause::HangUp => libc::SIGHUP,
        // Not a signal: the caller maps it to its own status.
        InterruptCause::JournalFailed => 0,
    }
}

/// The three signals, registered once so none is missed between two waits.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// `None` if a handler could not be installed (the caller then runs without one).
    fn install() -> Option<Signals> {
        Some(Signals {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }

    async fn next(&mut self) -> InterruptCause {
        tokio::select! {
            _ = self.int.recv() => InterruptCause::CtrlC,
            _ = self.term.recv() => InterruptCause::Terminate,
            _ = self.hup.recv() => InterruptCause::HangUp,
        }
    }
}

/// Listens for the three signals while it lives (it stops listening when dropped): the first
/// triggers `interrupt` with its cause, the second ends the process at once with its status.
pub(crate) struct Listener(Option<tokio::task::JoinHandle<()>>);

impl Listener {
    /// `what` says what the first signal does ("finishing the records of requests in
    /// flight"). Must be called inside a tokio runtime.
    pub(crate) fn start(interrupt: Interrupt, what: &'static str) -> Listener {
        let Some(mut signals) = Signals::install() else {
            return Listener(None);
        };
        Listener(Some(tokio::spawn(async move {
            let first = signals.next().await;
            eprintln!(
                "\n{}: {what}; a second signal ends servebench at once",
                name(first)
            );
            interrupt.trigger_because(first);
            let second = signals.next().await;
            eprintln!("{}: exiting now", name(second));
            std::process::exit(status_of(second));
        })))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

pub(crate) fn name(cause: InterruptCause) -> &'static str {
    match cause {
        InterruptCause::CtrlC => "interrupted (SIGINT)",
        InterruptCause::Terminate => "terminated (SIGTERM)",
        InterruptCause::HangUp => "hung up (SIGHUP)",
        InterruptCause::JournalFailed => "the journal could not be written",
    }
}
