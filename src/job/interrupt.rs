//! SIGINT and SIGTERM, latched for the rest of the process.
//!
//! Until [`install`] runs, the signals keep their default action (the
//! process ends). tokio's handler, once installed, stays installed for the
//! life of the process, so a signal that arrives while no task happens to be
//! watching would be consumed and lost: a Ctrl-C during the commit, the
//! retention step or a post hook would do nothing. So one listener, started
//! by the first watch, counts every signal for as long as the process lives;
//! watchers compare against a [`Mark`] and see any signal since it, even one
//! that arrived before they started watching.

use std::sync::OnceLock;
use tokio::sync::watch;

/// Signals received so far, and the name of the latest.
#[derive(Debug, Clone, Copy)]
struct Received {
    count: u64,
    last: &'static str,
}

static LISTENER: OnceLock<Option<watch::Receiver<Received>>> = OnceLock::new();

/// A point in the stream of signals: "any signal after this one".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

impl Mark {
    /// Before the first signal: any signal at all counts.
    pub const START: Mark = Mark(0);
}

/// Start the listener (idempotent). From then on SIGINT and SIGTERM no longer
/// end the process by themselves: the code running must check
/// [`since`] or await [`wait_since`]. Outside a tokio runtime, or when the
/// handlers cannot be installed, nothing changes (the default action stays).
pub fn install() {
    LISTENER.get_or_init(start);
}

fn start() -> Option<watch::Receiver<Received>> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let _entered = runtime.enter();
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return None;
    };
    let (tx, rx) = watch::channel(Received { count: 0, last: "" });
    runtime.spawn(async move {
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tx.send_modify(|r| {
                r.count += 1;
                r.last = name;
            });
        }
    });
    Some(rx)
}

fn receiver() -> Option<&'static watch::Receiver<Received>> {
    LISTENER.get().and_then(Option::as_ref)
}

/// Now, in the stream of signals.
pub fn mark() -> Mark {
    Mark(receiver().map_or(0, |rx| rx.borrow().count))
}

/// The latest signal, if one arrived after `mark`. Never blocks.
pub fn since(mark: Mark) -> Option<&'static str> {
    let r = *receiver()?.borrow();
    (r.count > mark.0).then_some(r.last)
}

/// Resolves (with the signal's name) once a signal has arrived after `mark`;
/// at once if one already has. Installs the listener.
pub async fn wait_since(mark: Mark) -> &'static str {
    install();
    let Some(rx) = receiver() else {
        // No handlers: the default action still ends the process.
        return std::future::pending().await;
    };
    let mut rx = rx.clone();
    match rx.wait_for(|r| r.count > mark.0).await {
        Ok(r) => r.last,
        // The listener never stops while the runtime runs.
        Err(_) => std::future::pending().await,
    }
}
