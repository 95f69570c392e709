//! Policies: what to back up, where, when, and how long to keep it. Pure:
//! parsing, validation, cron schedules and retention rules; no I/O beyond
//! reading the policy files themselves.

pub mod binlog;
pub mod file;
pub mod group;
pub mod retention;
pub mod schedule;
