//! Child processes, whoever starts them: what they inherit of drtool's
//! environment, and how their output is drained.
//!
//! The lowest layer: every module that spawns a process (job hooks, sources,
//! targets, engine tools, drill scratch servers) uses it; it uses nothing of
//! drtool.

mod env;
mod tail;

pub use env::{is_secret, minimal, register_secret_var, scrub, scrub_tool};
pub use tail::{TAIL_KEEP, keep_tail};
