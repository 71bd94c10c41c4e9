//! `digidesk-upload check`: map and validate every row with no network.

use crate::cli::CheckArgs;
use crate::exit::{Exit, Fatal};

pub fn run(_args: CheckArgs) -> Result<Exit, Fatal> {
    todo!("cmd check")
}
