//! `digidesk-upload sandbox`: runs the local DigiDesk until Ctrl-C.

use crate::cli::SandboxArgs;
use crate::exit::{Exit, Fatal};

pub async fn run(_args: SandboxArgs) -> Result<Exit, Fatal> {
    todo!("cmd sandbox")
}
