//! `salestalk keys`: make, list and revoke API keys (`salestalk_store::keys`). A new key is
//! printed once, on standard output alone, so it can be piped into a secret store; it is
//! stored only as a hash.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use salestalk_store::keys::{ApiKey, Role};

/// `salestalk keys` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a key and print it once.
    Create {
        /// A tenant the key is for (repeatable; none for an admin key).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// publisher (publishes for its tenants), reader (reads its tenants' numbers) or
        /// admin (reads every tenant's).
        #[arg(long)]
        role: String,
    },
    /// Every key: id, role, tenants, when made and revoked (never the key itself).
    List,
    /// Revoke a key by its id (the 8 hex digits after `stk_`): it stops working everywhere.
    Revoke {
        /// The key's id.
        id: String,
    },
}

fn now_s() -> u32 {
    u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX)
}

fn line(key: &ApiKey) -> String {
    let at = |s: u32| {
        chrono::DateTime::from_timestamp(s.into(), 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let tenants = if key.tenants.is_empty() {
        "*".to_string()
    } else {
        key.tenants.join(",")
    };
    let revoked = key
        .revoked_at
        .map_or(String::new(), |r| format!("  revoked {}", at(r)));
    format!(
        "{}  {:<9}  {}  {tenants}{revoked}",
        key.id,
        key.role.as_str(),
        at(key.created_at)
    )
}

/// Runs the subcommand.
pub fn execute(config: Option<&Path>, command: Command) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let endpoint = &settings.clickhouse;
    runtime.block_on(crate::runtime::migrate(&settings))?;
    match command {
        Command::Create { tenants, role } => {
            let Some(role) = Role::parse(&role) else {
                bail!("unknown role '{role}' (publisher, reader or admin)");
            };
            let (key, listed) = runtime
                .block_on(endpoint.create_key(role, &tenants, now_s()))
                .context("making the key")?;
            eprintln!("made {}; it is shown once:", line(&listed));
            println!("{key}");
        }
        Command::List => {
            let keys = runtime
                .block_on(endpoint.keys())
                .context("reading the keys")?;
            for key in &keys {
                println!("{}", line(key));
            }
        }
        Command::Revoke { id } => {
            let revoked = runtime
                .block_on(endpoint.revoke_key(&id, now_s()))
                .context("revoking the key")?;
            if !revoked {
                bail!("no active key with id '{id}'");
            }
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
