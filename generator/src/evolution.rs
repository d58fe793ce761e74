//! The contract's evolution as live traffic carries it: producers that have moved to
//! `classification.performed.v2`, and enum values added to the contract after this build.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use salestalk_contracts::{EventKind, EventType};
use serde_json::{Value, json};

use super::model::CleanEvent;

/// Language tags a v2 classification carries.
const LANGUAGES: [&str; 4] = ["en-US", "en-GB", "de-DE", "fr-FR"];

/// Rewrites a `classification.performed.v1` event as v2 (`confidence` renamed
/// `confidenceScore`, a `language` added); other events are left alone. Returns whether it did.
pub fn upgrade_to_v2(rng: &mut ChaCha8Rng, event: &mut CleanEvent) -> bool {
    if event.event_type != EventType::ClassificationPerformedV1 {
        return false;
    }
    let classification = &mut event.json["data"]["classification"];
    let Some(fields) = classification.as_object_mut() else {
        return false;
    };
    let confidence = fields.remove("confidence").unwrap_or(Value::Null);
    fields.insert("confidenceScore".into(), confidence);
    let language = LANGUAGES[rng.random_range(0..LANGUAGES.len())];
    fields.insert("language".into(), json!(language));
    event.json["eventType"] = json!(EventType::ClassificationPerformedV2.as_str());
    event.event_type = EventType::ClassificationPerformedV2;
    true
}

/// Gives an event a value of an open enum that this build does not know (a value added to
/// the contract since). Returns whether the event has such a field.
pub fn add_new_enum_value(rng: &mut ChaCha8Rng, event: &mut CleanEvent) -> bool {
    let data = &mut event.json["data"];
    let pick = rng.random_range(0..3usize);
    match event.event_type.kind() {
        EventKind::ClassificationPerformed | EventKind::NarrativeGenerated => {
            let (field, value) = [
                ("intent", "small_talk"),
                ("subject", "quota"),
                ("measure", "median"),
            ][pick];
            if event.event_type.kind() == EventKind::NarrativeGenerated && pick == 2 {
                data["aiModel"]["provider"] = json!("openai");
            } else {
                data["classification"][field] = json!(value);
            }
        }
        EventKind::ConversationCompleted => {
            let Some(subjects) = data["subjects"].as_array_mut() else {
                return false;
            };
            subjects.push(json!("weather"));
        }
        EventKind::MetricsIngested => data["source"] = json!("sftp_drop"),
        _ => return false,
    }
    true
}
