//! `drtool key ...`

use super::commands::open_repo;
use super::exit::{self, Failure};
use super::output::outln;
use super::output::print_json;
use super::{Global, KeyCommand, secrets};

pub async fn run(g: &Global, cmd: KeyCommand) -> Result<u8, Failure> {
    let repo = open_repo(g).await?;
    match cmd {
        KeyCommand::List => {
            let keys = repo.list_keys().await?;
            if g.json {
                print_json(&keys)?;
            } else {
                for k in keys {
                    outln!(
                        "{} {}  created {}",
                        if k.current { "*" } else { " " },
                        k.id,
                        k.created.format("%Y-%m-%d %H:%M:%S UTC")
                    );
                }
            }
        }
        KeyCommand::Add { new_password_file } => {
            let pw = secrets::new_password(new_password_file.as_deref())?;
            let id = repo.add_key(&pw).await?;
            outln!("added key {id}");
        }
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(&id).await?;
            outln!("removed key {removed}");
        }
        KeyCommand::Passwd { new_password_file } => {
            let pw = secrets::new_password(new_password_file.as_deref())?;
            let mut repo = std::sync::Arc::try_unwrap(repo)
                .map_err(|_| Failure::new(exit::ERROR, anyhow::anyhow!("repository in use")))?;
            let id = repo.change_password(&pw).await?;
            outln!("password changed; key slot is now {id}");
        }
    }
    Ok(exit::OK)
}
