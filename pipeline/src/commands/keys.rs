//! `salestalk keys`: make, list and revoke API keys (`salestalk_store::tables::api_keys`). A new key is
//! printed once, on standard output alone, so it can be piped into a secret store; it is
//! stored only as a hash.

use salestalk_operators::time::now_datetime;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use salestalk_store::tables::api_keys::{ApiKey, KeyRequest, Role};

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
        /// An event type a publisher key may publish (repeatable; a pattern such as
        /// `conversation.*`); none: every type but platform ones (`tenant.provisioned.*`,
        /// which only a pattern naming it grants).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// When the key stops working: a duration from now (`90d`, `12h`) or a UTC time
        /// (`2027-03-31`, `2027-03-31T12:00:00Z`). None: it works until revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every key: id, role, tenants, when made and revoked (never the key itself).
    List,
    /// Revoke a key by its id (the hex digits after `stk_`): it stops working everywhere.
    Revoke {
        /// The key's id.
        id: String,
    },
}

/// When a key made at `now_s` with `--expires text` stops working, Unix s.
fn expiry(text: &str, now_s: u32) -> anyhow::Result<u32> {
    let text = text.trim();
    let at = if let Ok(duration) = humantime::parse_duration(text) {
        i64::from(now_s).saturating_add(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX))
    } else if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        time.timestamp()
    } else if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp()
    } else {
        bail!("--expires '{text}' is neither a duration (90d) nor a UTC time (2027-03-31)");
    };
    u32::try_from(at).with_context(|| format!("--expires '{text}' is out of range"))
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
    let expires = key
        .expires_at
        .map_or(String::new(), |e| format!("  expires {}", at(e)));
    let types = if key.event_types.is_empty() {
        String::new()
    } else {
        format!("  types {}", key.event_types.join(","))
    };
    format!(
        "{}  {:<9}  {}  {tenants}{types}{expires}{revoked}",
        key.id,
        key.role.as_str(),
        at(key.created_at)
    )
}

/// Runs the subcommand.
pub fn execute(config: Option<&Path>, command: Command) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let endpoint = &settings.clickhouse;
    let probes = salestalk_http::probes::Probes::starting();
    runtime.block_on(crate::run::migrate(&settings, &probes))?;
    match command {
        Command::Create {
            tenants,
            role,
            event_types,
            expires,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("unknown role '{role}' (publisher, reader or admin)");
            };
            let now = now_datetime();
            let request = KeyRequest {
                role,
                tenants,
                event_types,
                expires_at: expires.map(|text| expiry(&text, now)).transpose()?,
            };
            let (key, listed) = runtime
                .block_on(endpoint.create_key(&request, now))
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
                .block_on(endpoint.revoke_key(&id, now_datetime()))
                .context("revoking the key")?;
            if !revoked {
                bail!("no active key with id '{id}'");
            }
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_durations_or_utc_times() {
        let now = 1_800_000_000;
        assert_eq!(expiry("90d", now).expect("duration"), now + 90 * 86_400);
        assert_eq!(expiry("2027-03-31", now).expect("day"), 1_806_451_200);
        assert_eq!(
            expiry("2027-03-31T12:00:00Z", now).expect("time"),
            1_806_451_200 + 43_200
        );
        assert!(expiry("soon", now).is_err());
    }
}
