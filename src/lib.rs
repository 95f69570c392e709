//! drtool: backup and disaster recovery for databases and volumes.
//!
//! Layers, top to bottom (lower never imports higher):
//! cli -> job -> source/target -> repo -> pipeline -> store.

pub mod cli;
pub mod job;
pub mod pipeline;
pub mod repo;
pub mod source;
pub mod store;
pub mod target;
