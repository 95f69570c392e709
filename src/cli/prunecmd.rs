//! `drtool prune` (being written).

use super::exit::Failure;
use super::{Global, PruneArgs};

pub async fn run(_g: &Global, _a: PruneArgs) -> Result<u8, Failure> {
    Err(Failure::usage("prune is not implemented yet"))
}
