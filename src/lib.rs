//! drtool: backup and disaster recovery for databases and volumes.
//!
//! Layers, top to bottom (lower never imports higher):
//! cli -> drill -> job/policy -> source/target -> engine -> repo -> pipeline -> store
//! (`child`, what spawned processes inherit and how their output is drained,
//! sits below them all;
//! `engine` holds what source and target share about database servers;
//! `drill` restores through `job`'s database restore; `policy` is pure).

pub mod child;
pub mod cli;
pub mod drill;
pub mod engine;
pub mod job;
pub mod pipeline;
pub mod policy;
pub mod repo;
pub mod source;
pub mod store;
pub mod target;
