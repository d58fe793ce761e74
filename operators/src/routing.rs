//! The routing table: which targets each valid event goes to, decided by the first of an
//! ordered list of rules that matches its event type, tenant and source (as a firewall or an
//! EventBridge rule set reads: put the narrow rules first). A target is a downstream
//! consumer's Kafka topic, or `metrics`, the pipeline's own windowed metrics. Events no rule
//! matches go to the `unmatched` targets. Pure: the runtime asks, and delivers.
//!
//! Patterns are `*` (anything), `prefix*`, or an exact value; an event-type pattern must match
//! at least one type this build knows. A rule every event of which an earlier rule already
//! takes is unreachable, and refused at start-up like every other problem here.

use std::collections::BTreeMap;

use salestalk_contracts::EventType;
use serde::Deserialize;
use strum::VariantArray;

/// The built-in target: the pipeline's own metrics.
pub const METRICS: &str = "metrics";

/// `metrics`' index among [`RoutingTable::targets`].
const METRICS_INDEX: usize = 0;

/// `[routing]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    /// Downstream consumers' topics, by target name.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSettings>,
    /// The rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleSettings>,
    /// Targets of an event no rule matches.
    pub unmatched: Vec<String>,
    /// The topic of a target that names none: `{target}` is replaced by its name.
    #[serde(default = "default_target_topic_template")]
    pub target_topic_template: String,
    /// How long a target's broker has to acknowledge a record before the attempt failed.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// How long a target is paused after a flush's retries ran out on it (its events are
    /// dead-lettered at once meanwhile); doubles while it stays unavailable, up to 32 times.
    #[serde(default = "default_unavailable_pause_ms")]
    pub unavailable_pause_ms: u64,
    /// How often the targets' consumer groups' lag is sampled, ms; 0: never.
    #[serde(default = "default_consumer_watch_interval_ms")]
    pub consumer_watch_interval_ms: u64,
    /// How often a target with undelivered events is tried again, its dead letters redriven to
    /// it once it answers, ms; 0: never (then `salestalk dlq redrive` does it by hand).
    #[serde(default = "default_heal_interval_ms")]
    pub heal_interval_ms: u64,
    /// Most of one target's dead letters redriven per try (the healing's rate bound).
    #[serde(default = "default_heal_batch")]
    pub heal_batch: u64,
}

fn default_heal_interval_ms() -> u64 {
    30_000
}

fn default_heal_batch() -> u64 {
    1_000
}

fn default_consumer_watch_interval_ms() -> u64 {
    15_000
}

fn default_delivery_timeout_ms() -> u64 {
    5_000
}

fn default_unavailable_pause_ms() -> u64 {
    10_000
}

/// `routing.target_topic_template`'s default.
pub const DEFAULT_TARGET_TOPIC_TEMPLATE: &str = "salestalk.consumer.{target}";

fn default_target_topic_template() -> String {
    DEFAULT_TARGET_TOPIC_TEMPLATE.to_string()
}

/// `[routing.targets.<name>]`: one downstream consumer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    /// The Kafka topic it reads; empty: `routing.target_topic_template`'s.
    #[serde(default)]
    pub topic: String,
    /// What it is for (shown in `salestalk routes` and on the SRE page).
    #[serde(default)]
    pub description: String,
    /// The consumer groups reading its topic: their lag is measured (docs/routing.md).
    #[serde(default)]
    pub consumer_groups: Vec<String>,
}

/// `[[routing.rules]]`: one rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// Its name, unique.
    pub name: String,
    /// Event-type patterns (`classification.performed.*`); empty: any.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Tenant patterns (`tenant-abc*`); empty: any.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Source patterns (`chat-handler`); empty: any.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Where matching events go (target names, `metrics`).
    pub targets: Vec<String>,
}

/// `*`, `prefix*` or an exact value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Anything.
    Any,
    /// Values starting with this.
    Prefix(String),
    /// This value.
    Exact(String),
}

impl Pattern {
    /// The pattern `text` stands for, or why it is none.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text.find('*') {
            None if text.is_empty() => Err("an empty pattern".into()),
            None => Ok(Self::Exact(text.to_string())),
            Some(0) if text == "*" => Ok(Self::Any),
            Some(at) if at == text.len() - 1 => Ok(Self::Prefix(text[..at].to_string())),
            Some(_) => Err(format!("'{text}': '*' may only end a pattern")),
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Self::Exact(exact) => value == exact,
        }
    }

    /// Whether some event type this build knows matches (a pattern matching none is a typo).
    pub fn matches_a_known_event_type(&self) -> bool {
        EventType::VARIANTS.iter().any(|t| self.matches(t.as_str()))
    }

    /// Whether everything `other` matches, this matches too.
    pub fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (_, Self::Any) => false,
            (Self::Prefix(p), Self::Prefix(q) | Self::Exact(q)) => q.starts_with(p.as_str()),
            (Self::Exact(p), Self::Exact(q)) => p == q,
            (Self::Exact(_), Self::Prefix(_)) => false,
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Exact(exact) => f.write_str(exact),
        }
    }
}

/// Patterns of one dimension of a rule: any of them matches (none given: anything).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Patterns(Vec<Pattern>);

impl Patterns {
    fn matches(&self, value: &str) -> bool {
        self.0.iter().any(|p| p.matches(value))
    }

    /// Whether every value `other` matches, these match too.
    fn cover(&self, other: &Patterns) -> bool {
        other.0.iter().all(|q| self.0.iter().any(|p| p.covers(q)))
    }
}

/// A rule, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: String,
    event_types: Patterns,
    tenants: Patterns,
    sources: Patterns,
    targets: Vec<usize>,
}

/// The routing table, compiled: targets are indexes into [`RoutingTable::targets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    targets: Vec<String>,
    /// Each target's topic, by index (`None` for `metrics`).
    topics: Vec<Option<String>>,
    rules: Vec<Rule>,
    unmatched: Vec<usize>,
}

impl RoutingTable {
    /// The table of `settings`, or every problem with them, each naming its key.
    pub fn compile(settings: &RoutingSettings) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut targets: Vec<String> = vec![METRICS.to_string()];
        let mut topics: Vec<Option<String>> = vec![None];
        for (name, target) in &settings.targets {
            if name == METRICS {
                problems.push(format!(
                    "routing.targets.{name}: '{METRICS}' is the built-in target"
                ));
            }
            let topic = if target.topic.trim().is_empty() {
                let template = &settings.target_topic_template;
                if !template.contains("{target}") {
                    problems.push(format!(
                        "routing.target_topic_template: '{template}' lacks '{{target}}', and \
                         routing.targets.{name} names no topic of its own"
                    ));
                }
                template.replace("{target}", name)
            } else {
                target.topic.trim().to_string()
            };
            if !is_topic_like(&topic) {
                problems.push(format!(
                    "routing.targets.{name}.topic: '{topic}' is not a topic name"
                ));
            }
            if let Some(other) = topics
                .iter()
                .position(|t| t.as_deref() == Some(topic.as_str()))
            {
                problems.push(format!(
                    "routing.targets.{name}.topic: '{topic}' is target '{}''s topic too",
                    targets[other]
                ));
            }
            targets.push(name.clone());
            topics.push(Some(topic));
        }
        let resolve = |names: &[String], key: &str, problems: &mut Vec<String>| -> Vec<usize> {
            if names.is_empty() {
                problems.push(format!("{key}: at least one target is needed"));
            }
            let mut out = Vec::new();
            for name in names {
                match targets.iter().position(|t| t == name) {
                    Some(i) if !out.contains(&i) => out.push(i),
                    Some(_) => problems.push(format!("{key}: '{name}' is listed twice")),
                    None => problems.push(format!(
                        "{key}: unknown target '{name}' (known: {})",
                        targets.join(", ")
                    )),
                }
            }
            out
        };
        let mut rules: Vec<Rule> = Vec::new();
        for (i, rule) in settings.rules.iter().enumerate() {
            let key = format!("routing.rules[{i}] ('{}')", rule.name);
            if rule.name.trim().is_empty() {
                problems.push(format!("routing.rules[{i}].name: must not be empty"));
            } else if rules.iter().any(|r| r.name == rule.name) {
                problems.push(format!("{key}: the name is used by an earlier rule"));
            }
            let mut patterns = |texts: &[String], dimension: &str| -> Patterns {
                if texts.is_empty() {
                    return Patterns(vec![Pattern::Any]);
                }
                Patterns(
                    texts
                        .iter()
                        .filter_map(|text| {
                            Pattern::parse(text)
                                .map_err(|e| problems.push(format!("{key}.{dimension}: {e}")))
                                .ok()
                        })
                        .collect(),
                )
            };
            let event_types = patterns(&rule.event_types, "event_types");
            let tenants = patterns(&rule.tenants, "tenants");
            let sources = patterns(&rule.sources, "sources");
            for pattern in &event_types.0 {
                if !pattern.matches_a_known_event_type() {
                    problems.push(format!(
                        "{key}.event_types: '{pattern}' matches no event type this build knows"
                    ));
                }
            }
            let compiled = Rule {
                name: rule.name.clone(),
                event_types,
                tenants,
                sources,
                targets: resolve(&rule.targets, &format!("{key}.targets"), &mut problems),
            };
            if let Some(earlier) = rules.iter().find(|earlier| {
                earlier.event_types.cover(&compiled.event_types)
                    && earlier.tenants.cover(&compiled.tenants)
                    && earlier.sources.cover(&compiled.sources)
            }) {
                problems.push(format!(
                    "{key}: unreachable, rule '{}' before it takes every event it would",
                    earlier.name
                ));
            }
            rules.push(compiled);
        }
        let unmatched = resolve(&settings.unmatched, "routing.unmatched", &mut problems);
        if !(100..=300_000).contains(&settings.delivery_timeout_ms) {
            problems.push(format!(
                "routing.delivery_timeout_ms: {} is outside 100..=300000",
                settings.delivery_timeout_ms
            ));
        }
        let interval = settings.consumer_watch_interval_ms;
        if interval != 0 && !(1_000..=3_600_000).contains(&interval) {
            problems.push(format!(
                "routing.consumer_watch_interval_ms: {interval} is outside 1000..=3600000 (0: off)"
            ));
        }
        let heal = settings.heal_interval_ms;
        if heal != 0 && !(1_000..=3_600_000).contains(&heal) {
            problems.push(format!(
                "routing.heal_interval_ms: {heal} is outside 1000..=3600000 (0: off)"
            ));
        }
        if !(1..=100_000).contains(&settings.heal_batch) {
            problems.push(format!(
                "routing.heal_batch: {} is outside 1..=100000",
                settings.heal_batch
            ));
        }
        for (name, target) in &settings.targets {
            for group in &target.consumer_groups {
                if !is_topic_like(group) {
                    problems.push(format!(
                        "routing.targets.{name}.consumer_groups: '{group}' is not a group name \
                         ([a-zA-Z0-9._-], 1 to 249 characters)"
                    ));
                }
            }
        }
        if !(100..=3_600_000).contains(&settings.unavailable_pause_ms) {
            problems.push(format!(
                "routing.unavailable_pause_ms: {} is outside 100..=3600000",
                settings.unavailable_pause_ms
            ));
        }
        if problems.is_empty() {
            Ok(Self {
                targets,
                topics,
                rules,
                unmatched,
            })
        } else {
            Err(problems)
        }
    }

    /// Target names, by index (`metrics` first).
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// Target `index`'s topic (`None` for `metrics`).
    pub fn topic(&self, index: usize) -> Option<&str> {
        self.topics.get(index).and_then(Option::as_deref)
    }

    /// The downstream targets: (index, name, topic).
    pub fn downstream(&self) -> impl Iterator<Item = (usize, &str, &str)> {
        self.targets
            .iter()
            .zip(&self.topics)
            .enumerate()
            .filter_map(|(i, (name, topic))| Some((i, name.as_str(), topic.as_deref()?)))
    }

    /// Whether every event goes to the metrics, whatever rule it matches.
    pub fn always_counts_in_metrics(&self) -> bool {
        self.unmatched.contains(&METRICS_INDEX)
            && self
                .rules
                .iter()
                .all(|r| r.targets.contains(&METRICS_INDEX))
    }

    /// Whether an event of `event_type`, `tenant` and `source` goes to the metrics.
    pub fn counts_in_metrics(&self, event_type: &str, tenant: &str, source: &str) -> bool {
        self.route(event_type, tenant, source)
            .1
            .contains(&METRICS_INDEX)
    }

    /// The rule an event of `event_type`, `tenant` and `source` matches (`None`: unmatched),
    /// and its targets.
    pub fn route(&self, event_type: &str, tenant: &str, source: &str) -> (Option<&str>, &[usize]) {
        self.rules
            .iter()
            .find(|r| {
                r.event_types.matches(event_type)
                    && r.tenants.matches(tenant)
                    && r.sources.matches(source)
            })
            .map_or((None, &self.unmatched[..]), |r| {
                (Some(r.name.as_str()), &r.targets[..])
            })
    }

    /// Event types this build knows that no rule takes for every tenant and source: for some
    /// (or all) of their events, the `unmatched` targets apply. Said at start-up.
    pub fn not_always_routed(&self) -> Vec<&'static str> {
        EventType::VARIANTS
            .iter()
            .map(|t| t.as_str())
            .filter(|t| {
                !self.rules.iter().any(|r| {
                    r.event_types.matches(t)
                        && r.tenants.cover(&Patterns(vec![Pattern::Any]))
                        && r.sources.cover(&Patterns(vec![Pattern::Any]))
                })
            })
            .collect()
    }
}

/// Whether `name` could be a Kafka topic ([a-zA-Z0-9._-], 1 to 249 characters).
fn is_topic_like(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, types: &[&str], tenants: &[&str], targets: &[&str]) -> RuleSettings {
        let strings = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        RuleSettings {
            name: name.into(),
            event_types: strings(types),
            tenants: strings(tenants),
            sources: Vec::new(),
            targets: strings(targets),
        }
    }

    /// The names of `targets` (indexes into `table`'s targets).
    fn target_names<'t>(table: &'t RoutingTable, targets: &[usize]) -> Vec<&'t str> {
        targets
            .iter()
            .map(|&i| table.targets()[i].as_str())
            .collect()
    }

    fn settings(rules: Vec<RuleSettings>) -> RoutingSettings {
        let target = |topic: &str| TargetSettings {
            topic: topic.into(),
            description: String::new(),
            consumer_groups: Vec::new(),
        };
        RoutingSettings {
            targets: BTreeMap::from([
                ("insights".to_string(), target("c.insights")),
                ("billing".to_string(), target("c.billing")),
                ("vip".to_string(), target("c.vip")),
            ]),
            rules,
            unmatched: vec![METRICS.into()],
            target_topic_template: DEFAULT_TARGET_TOPIC_TEMPLATE.into(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            unavailable_pause_ms: default_unavailable_pause_ms(),
            consumer_watch_interval_ms: default_consumer_watch_interval_ms(),
            heal_interval_ms: default_heal_interval_ms(),
            heal_batch: default_heal_batch(),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_tenant_patterns_narrow_it() {
        let table = RoutingTable::compile(&settings(vec![
            rule(
                "vip",
                &["classification.*"],
                &["tenant-vip*"],
                &["vip", "metrics"],
            ),
            rule(
                "insights",
                &["classification.performed.*"],
                &[],
                &["insights", "metrics"],
            ),
            rule(
                "billing",
                &["conversation.completed.v1", "tenant.provisioned.v1"],
                &[],
                &["billing"],
            ),
        ]))
        .expect("valid");
        let names = |targets: &[usize]| target_names(&table, targets);
        let (rule, targets) = table.route("classification.performed.v2", "tenant-vip-7", "chat");
        assert_eq!(
            (rule, names(targets)),
            (Some("vip"), vec!["vip", "metrics"])
        );
        let (rule, targets) = table.route("classification.performed.v1", "tenant-1", "chat");
        assert_eq!(
            (rule, names(targets)),
            (Some("insights"), vec!["insights", "metrics"])
        );
        let (rule, targets) = table.route("tenant.provisioned.v1", "tenant-1", "onboard");
        assert_eq!((rule, names(targets)), (Some("billing"), vec!["billing"]));
        let (rule, targets) = table.route("metrics.ingested.v1", "tenant-1", "etl");
        assert_eq!((rule, names(targets)), (None, vec!["metrics"]));
        assert_eq!(
            table.not_always_routed(),
            ["narrative.generated.v1", "metrics.ingested.v1"]
        );
    }

    #[test]
    fn source_patterns_route_by_the_emitting_service() {
        let by_source = |name: &str, sources: &[&str], targets: &[&str]| RuleSettings {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            ..rule(name, &[], &[], targets)
        };
        let table = RoutingTable::compile(&settings(vec![
            by_source("chat", &["chat-handler"], &["insights", "metrics"]),
            by_source("billing", &["billing-*"], &["billing"]),
            rule("rest", &["*"], &[], &["metrics"]),
        ]))
        .expect("valid");
        let names = |targets: &[usize]| target_names(&table, targets);
        let route = |source: &str| {
            let (rule, targets) = table.route("narrative.generated.v1", "tenant-1", source);
            (rule, names(targets))
        };
        assert_eq!(
            route("chat-handler"),
            (Some("chat"), vec!["insights", "metrics"])
        );
        assert_eq!(
            route("chat-handler-2"),
            (Some("rest"), vec!["metrics"]),
            "exact, not a prefix"
        );
        assert_eq!(route("billing-worker"), (Some("billing"), vec!["billing"]));
        assert_eq!(route("billing-"), (Some("billing"), vec!["billing"]));
        assert_eq!(route("metrics-handler"), (Some("rest"), vec!["metrics"]));
        // A rule over a source prefix makes a later rule for one of its sources unreachable.
        let shadowed = RoutingTable::compile(&settings(vec![
            by_source("all-billing", &["billing-*"], &["billing"]),
            by_source("one-billing", &["billing-worker"], &["insights"]),
        ]))
        .expect_err("the second rule is unreachable")
        .join("\n");
        assert!(
            shadowed.contains("('one-billing'): unreachable, rule 'all-billing'"),
            "{shadowed}"
        );
    }

    #[test]
    fn every_problem_is_named() {
        let mut bad = settings(vec![
            rule("all", &["*"], &[], &["metrics"]),
            rule(
                "shadowed",
                &["classification.performed.v1"],
                &["t-*"],
                &["insights"],
            ),
            rule("typo", &["clasification.*"], &[], &["insight"]),
            rule(
                "star",
                &["classification.*.v1"],
                &[],
                &["metrics", "metrics"],
            ),
            rule("all", &["narrative.*"], &[], &[]),
        ]);
        bad.targets.insert(
            "broken".into(),
            TargetSettings {
                topic: "no spaces allowed".into(),
                description: String::new(),
                consumer_groups: Vec::new(),
            },
        );
        bad.unmatched = vec!["nowhere".into()];
        let problems = RoutingTable::compile(&bad).expect_err("invalid").join("\n");
        for needle in [
            "('shadowed'): unreachable, rule 'all'",
            "('typo').event_types: 'clasification.*' matches no event type",
            "('typo').targets: unknown target 'insight'",
            "('star').event_types: 'classification.*.v1': '*' may only end a pattern",
            "('star').targets: 'metrics' is listed twice",
            "routing.rules[4] ('all'): the name is used by an earlier rule",
            "routing.rules[4] ('all').targets: at least one target is needed",
            "routing.targets.broken.topic",
            "routing.unmatched: unknown target 'nowhere'",
        ] {
            assert!(
                problems.contains(needle),
                "{needle} missing from:\n{problems}"
            );
        }
    }

    #[test]
    fn patterns_cover_what_they_match() {
        let p = |s: &str| Pattern::parse(s).expect("pattern");
        assert!(p("*").covers(&p("a*")));
        assert!(p("a*").covers(&p("ab*")));
        assert!(p("a*").covers(&p("abc")));
        assert!(!p("ab*").covers(&p("a*")));
        assert!(!p("abc").covers(&p("a*")));
        assert!(p("abc").covers(&p("abc")));
        assert!(!p("a*").covers(&p("*")));
    }
}
