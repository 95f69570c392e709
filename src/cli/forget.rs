//! `drtool forget` (being written).

use super::exit::Failure;
use super::{ForgetArgs, Global};

pub async fn run(_g: &Global, _a: ForgetArgs) -> Result<u8, Failure> {
    Err(Failure::usage("forget is not implemented yet"))
}
