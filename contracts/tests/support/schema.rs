//! The shipped JSON Schema files, compiled by the independent `jsonschema` implementation.

use std::collections::BTreeSet;
use std::error::Error;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Retrieve, Uri, Validator};
use salestalk_contracts::{pointer, schemas};
use serde_json::Value;

/// Serves the schema files from the crate, so `$ref`s resolve without any network.
struct ShippedSchemas;

impl Retrieve for ShippedSchemas {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(schemas::BASE_URI)
            .ok_or("outside the schema base")?;
        let (_, text) = schemas::FILES
            .iter()
            .find(|(file, _)| *file == name)
            .ok_or("no such schema file")?;
        Ok(serde_json::from_str(text)?)
    }
}

pub fn compile(file: &str) -> Validator {
    let (_, text) = schemas::FILES
        .iter()
        .find(|(f, _)| *f == file)
        .expect("schema file exists");
    let schema: Value = serde_json::from_str(text).expect("schema file is JSON");
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(true)
        .with_retriever(ShippedSchemas)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file} does not compile: {e}"))
}

/// Pointers of the schema's errors; a missing property is reported at its own pointer, as
/// the Rust validator does, rather than at its parent.
pub fn schema_pointers(validator: &Validator, value: &Value) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for error in validator.iter_errors(value) {
        let mut path = error.instance_path().as_str().to_string();
        if let ValidationErrorKind::Required { property } = error.kind() {
            path.push('/');
            pointer::push_escaped(&mut path, property.as_str().unwrap_or_default());
        }
        paths.insert(path);
    }
    paths.into_iter().collect()
}
