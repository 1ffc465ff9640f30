//! Request bodies read field by field from tables of field specs, so that every failing field
//! is answered in one 422 and the OpenAPI document describes each body from the same table
//! (`crate::openapi::form_schema`): what the document promises is what the parser checks.
//!
//! Values are taken as given (nothing is trimmed or case-folded); `null` counts as absent.

use common::rules::TextRule;
use serde_json::{Map, Value};

use crate::ApiError;
use crate::error::FieldError;

/// What a field holds.
pub enum Kind {
    /// A string following a rule, with the rule's length bounds or this field's own (in
    /// characters, fewest and most).
    Text {
        /// The rule.
        rule: &'static TextRule,
        /// This field's own length bounds.
        bounds: Option<(usize, usize)>,
    },
    /// One of these strings, exactly.
    Choice(&'static [&'static str]),
    /// A list of strings, each following the text rule.
    Texts {
        /// Each item's rule.
        rule: &'static TextRule,
        /// Each item's fewest characters.
        min_chars: usize,
        /// Each item's most characters.
        max_chars: usize,
        /// The fewest items.
        min_items: usize,
        /// The most items.
        max_items: usize,
    },
    /// `true` or `false`.
    Flag,
    /// An object of string values: each key follows `key`, each value `value`.
    TextMap {
        /// Each key's rule.
        key: &'static TextRule,
        /// Each value's rule.
        value: &'static TextRule,
        /// The most entries.
        max_items: usize,
    },
}

/// One field of a request body.
pub struct Field {
    /// Its name.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Whether it must be present (and not `null`).
    pub required: bool,
    /// What it is for, in the document.
    pub description: &'static str,
}

impl Field {
    /// A string field following `rule` with the rule's own length bounds.
    pub const fn text(name: &'static str, rule: &'static TextRule, required: bool, description: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Text { rule, bounds: None },
            required,
            description,
        }
    }

    /// A string field following `rule`'s pattern, with its own length bounds.
    pub const fn text_within(
        name: &'static str,
        rule: &'static TextRule,
        min_chars: usize,
        max_chars: usize,
        required: bool,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            kind: Kind::Text {
                rule,
                bounds: Some((min_chars, max_chars)),
            },
            required,
            description,
        }
    }
}

/// A body's valid fields, by name; every problem was answered already.
pub(crate) struct Values(Map<String, Value>);

impl Values {
    /// A string field's value (absent, `null` or not a string: `None`).
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(Value::as_str).map(str::to_owned)
    }

    /// A required string field's value.
    pub(crate) fn required(&self, name: &str) -> Result<String, ApiError> {
        self.text(name)
            .ok_or_else(|| ApiError::invalid(name.to_owned(), "is required"))
    }

    /// A list field's value.
    pub(crate) fn texts(&self, name: &str) -> Option<Vec<String>> {
        self.0
            .get(name)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
    }

    /// A map field's value.
    pub(crate) fn text_map(&self, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
        self.0.get(name).and_then(Value::as_object).map(|entries| {
            entries
                .iter()
                .filter_map(|(key, value)| value.as_str().map(|value| (key.clone(), value.to_owned())))
                .collect()
        })
    }

    /// A flag's value (`false` when absent).
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.0.get(name).and_then(Value::as_bool).unwrap_or(false)
    }
}

/// Reads a JSON object body against `fields`: unknown fields are refused and every problem is
/// answered in one 422 (`invalid_field`, with `fields`); a body that is not a JSON object is a
/// 400 `malformed_json`.
pub(crate) fn parse(body: &[u8], fields: &[Field]) -> Result<Values, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| ApiError::malformed(error.to_string()))?;
    let Value::Object(object) = value else {
        return Err(ApiError::malformed("the body must be a JSON object"));
    };
    let mut errors: Vec<FieldError> = object
        .keys()
        .filter(|key| !fields.iter().any(|field| field.name == key.as_str()))
        .map(|key| FieldError {
            field: key.clone(),
            message: "unknown field".to_owned(),
        })
        .collect();
    for field in fields {
        if let Err(message) = check(field, object.get(field.name)) {
            errors.push(FieldError {
                field: field.name.to_owned(),
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(Values(object))
    } else {
        Err(ApiError::invalid_fields(errors))
    }
}

fn check(field: &Field, value: Option<&Value>) -> Result<(), String> {
    let value = match value {
        None | Some(Value::Null) if field.required => return Err("is required".to_owned()),
        None | Some(Value::Null) => return Ok(()),
        Some(value) => value,
    };
    match &field.kind {
        Kind::Text { rule, bounds } => {
            let text = value.as_str().ok_or("must be a string")?;
            let (min_chars, max_chars) = bounds.unwrap_or((rule.min_chars, rule.max_chars));
            check_text(text, rule, min_chars, max_chars)
        }
        Kind::Choice(allowed) => match value.as_str() {
            Some(text) if allowed.contains(&text) => Ok(()),
            _ => Err(format!("must be one of: {}", allowed.join(", "))),
        },
        Kind::Texts {
            rule,
            min_chars,
            max_chars,
            min_items,
            max_items,
        } => {
            let items = value.as_array().ok_or("must be a list of strings")?;
            if !(*min_items..=*max_items).contains(&items.len()) {
                return Err(format!("must hold {min_items} to {max_items} items"));
            }
            for item in items {
                let text = item.as_str().ok_or("must be a list of strings")?;
                check_text(text, rule, *min_chars, *max_chars).map_err(|reason| format!("each item {reason}"))?;
            }
            Ok(())
        }
        Kind::Flag => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| "must be true or false".to_owned()),
        Kind::TextMap {
            key,
            value: value_rule,
            max_items,
        } => {
            let entries = value.as_object().ok_or("must be an object of strings")?;
            if entries.len() > *max_items {
                return Err(format!("must hold at most {max_items} entries"));
            }
            for (name, item) in entries {
                check_text(name, key, key.min_chars, key.max_chars).map_err(|reason| format!("each name {reason}"))?;
                let text = item.as_str().ok_or("must be an object of strings")?;
                check_text(text, value_rule, value_rule.min_chars, value_rule.max_chars)
                    .map_err(|reason| format!("each value {reason}"))?;
            }
            Ok(())
        }
    }
}

fn check_text(text: &str, rule: &TextRule, min_chars: usize, max_chars: usize) -> Result<(), String> {
    if !(min_chars..=max_chars).contains(&text.chars().count()) {
        return Err(format!("must be {min_chars} to {max_chars} characters"));
    }
    if rule.matches_within(text, min_chars, max_chars) {
        Ok(())
    } else {
        Err(rule.hint.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::rules::{EIN, LINE};
    use serde_json::json;

    const FIELDS: [Field; 3] = [
        Field::text("name", &LINE, true, "a name"),
        Field::text("ein", &EIN, false, "an EIN"),
        Field {
            name: "kind",
            kind: Kind::Choice(&["llc", "corporation"]),
            required: false,
            description: "a kind",
        },
    ];

    fn fields_of(error: ApiError) -> Vec<String> {
        let body = serde_json::to_value(error.body()).unwrap();
        body["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|field| field["field"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn every_problem_is_named_once() {
        let body = json!({"ein": "123", "kind": "LLC", "extra": 1}).to_string();
        let error = parse(body.as_bytes(), &FIELDS).err().unwrap();
        assert_eq!(fields_of(error), ["extra", "name", "ein", "kind"]);
    }

    #[test]
    fn values_are_taken_as_given_and_null_is_absent() {
        let body = json!({"name": "Acme ", "ein": null}).to_string();
        let values = parse(body.as_bytes(), &FIELDS).unwrap();
        assert_eq!(values.text("name").as_deref(), Some("Acme "));
        assert_eq!(values.text("ein"), None);
        let blank = json!({"name": "  "}).to_string();
        assert!(parse(blank.as_bytes(), &FIELDS).is_err());
        assert!(parse(b"[]", &FIELDS).is_err());
    }
}
