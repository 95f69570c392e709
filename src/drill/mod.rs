//! Restore drills: prove that the latest backup restores (docs/DRILLS.md).

pub mod checks;
pub mod galera;
pub mod report;
pub mod run;
pub mod scratch;
mod scratch_mariadb;
mod scratch_mongodb;
mod scratch_postgres;
mod scratch_proc;
