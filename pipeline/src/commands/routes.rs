//! `salestalk routes`: the routing table as configured (rules in order, their targets and
//! topics, what happens to unmatched events), and, given an event's type, tenant and source,
//! the rule and targets it would take. Needs no service: a way to check a routing change
//! before deploying it.

use std::path::Path;
use std::process::ExitCode;

use salestalk_operators::routing::{METRICS, RoutingTable};

/// `salestalk routes` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// An event type to route (with --tenant and --source).
    #[arg(long)]
    event_type: Option<String>,
    /// Its tenant.
    #[arg(long, default_value = "")]
    tenant: String,
    /// Its source.
    #[arg(long, default_value = "")]
    source: String,
}

/// Prints the table, or one event's route.
pub fn execute(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let settings = crate::settings::Settings::load(config)?;
    let routing = &settings.routing;
    let table = RoutingTable::compile(routing)
        .map_err(|problems| anyhow::anyhow!("routing: {}", problems.join("; ")))?;
    let describe = |name: &str| {
        let topic = table
            .targets()
            .iter()
            .position(|t| t == name)
            .and_then(|i| table.topic(i));
        match (routing.targets.get(name), topic) {
            (Some(target), Some(topic)) => {
                format!("{name} (topic {topic}; {})", target.description)
            }
            _ if name == METRICS => format!("{METRICS} (the pipeline's own metrics)"),
            _ => name.to_string(),
        }
    };
    if let Some(event_type) = &args.event_type {
        let (rule, targets) = table.route(event_type, &args.tenant, &args.source);
        println!("rule: {}", rule.unwrap_or("none: the unmatched targets"));
        for &target in targets {
            println!("  -> {}", describe(&table.targets()[target]));
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (i, rule) in routing.rules.iter().enumerate() {
        let any = |patterns: &[String]| {
            if patterns.is_empty() {
                "*".to_string()
            } else {
                patterns.join(", ")
            }
        };
        println!(
            "{}. {}: event types {}; tenants {}; sources {}",
            i + 1,
            rule.name,
            any(&rule.event_types),
            any(&rule.tenants),
            any(&rule.sources)
        );
        for target in &rule.targets {
            println!("     -> {}", describe(target));
        }
    }
    println!("unmatched events:");
    for target in &routing.unmatched {
        println!("     -> {}", describe(target));
    }
    let partly = table.not_always_routed();
    if !partly.is_empty() {
        println!(
            "event types not taken by a rule for every tenant and source (the rest of their \
             events go to the unmatched targets): {}",
            partly.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
