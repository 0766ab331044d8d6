//! Structured outputs: when a request asks for JSON matching a schema (Responses
//! `text.format` or Chat `response_format` of type `json_schema`) and no `x-mock-reply`
//! says otherwise, the reply is a deterministic instance of that schema, so
//! clients that parse the output (`responses.parse`, `beta.chat.completions.parse`) work.

use serde_json::{Map, Value};

/// How deep `$ref`s and nesting are followed before giving up with `null`.
const MAX_DEPTH: usize = 32;

/// The reply text for a structured-output request: `json_schema` → an instance of the
/// schema; anything else (`json_object`, `text`, absent) → `None`: JSON mode keeps the
/// default quote, so what was asked stays visible in the reply.
pub(crate) fn reply_for(format_type: Option<&str>, schema: Option<&Value>) -> Option<String> {
    match format_type? {
        "json_schema" => {
            let empty = Value::Object(Map::new());
            let schema = schema.unwrap_or(&empty);
            Some(instance(schema, schema, 0).to_string())
        }
        _ => None,
    }
}

/// A value valid against `schema`: the first of `const`, `default`, `enum`, `anyOf`/`oneOf`
/// (first non-null branch); otherwise by `type`: objects with every property, arrays with
/// `minItems` items, `"mock"` strings (dates for date formats), `0`, `false`, `null`.
fn instance(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        return Value::Null;
    };
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        return match resolve(reference, root) {
            Some(target) => instance(target, root, depth + 1),
            None => Value::Null,
        };
    }
    if let Some(value) = obj.get("const").or_else(|| obj.get("default")) {
        return value.clone();
    }
    if let Some(first) = obj.get("enum").and_then(Value::as_array).and_then(|values| values.first()) {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = obj.get(key).and_then(Value::as_array) {
            let non_null = branches.iter().find(|b| b.get("type").and_then(Value::as_str) != Some("null"));
            if let Some(branch) = non_null.or_else(|| branches.first()) {
                return instance(branch, root, depth + 1);
            }
        }
    }
    let kind = match obj.get("type") {
        Some(Value::String(kind)) => Some(kind.as_str()),
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null"),
        _ if obj.contains_key("properties") => Some("object"),
        _ => None,
    };
    match kind {
        Some("object") => {
            let mut out = Map::new();
            if let Some(properties) = obj.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    out.insert(name.clone(), instance(property, root, depth + 1));
                }
            }
            Value::Object(out)
        }
        Some("array") => {
            let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0).min(16);
            let item = obj.get("items").map_or(Value::Null, |items| instance(items, root, depth + 1));
            Value::Array((0..min).map(|_| item.clone()).collect())
        }
        Some("string") => Value::String(
            match obj.get("format").and_then(Value::as_str) {
                Some("date-time") => "2024-01-01T00:00:00Z",
                Some("date") => "2024-01-01",
                Some("time") => "00:00:00",
                Some("email") => "mock@example.com",
                Some("uri") => "https://example.com/",
                Some("uuid") => "00000000-0000-4000-8000-000000000000",
                _ => "mock",
            }
            .to_owned(),
        ),
        Some("integer" | "number") => {
            let inclusive = obj.get("minimum").and_then(Value::as_f64).map(f64::ceil);
            let exclusive = obj.get("exclusiveMinimum").and_then(Value::as_f64).map(|m| m.floor() + 1.0);
            let least = exclusive.or(inclusive).unwrap_or(0.0).clamp(0.0, 1e15);
            // NB: clamped to a range where f64 holds whole numbers exactly.
            Value::from(least as i64)
        }
        Some("boolean") => Value::Bool(false),
        _ => Value::Null,
    }
}

/// A local JSON pointer `#/...` into the root schema.
fn resolve<'a>(reference: &str, root: &'a Value) -> Option<&'a Value> {
    root.pointer(reference.strip_prefix('#')?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pydantic_style_schema_gets_a_valid_instance() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 18},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "when": {"type": "string", "format": "date-time"},
                "mood": {"enum": ["happy", "sad"]},
                "nick": {"anyOf": [{"type": "null"}, {"type": "string"}]},
                "address": {"$ref": "#/$defs/Address"},
            },
            "required": ["name", "age", "tags", "when", "mood", "nick", "address"],
            "additionalProperties": false,
            "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}}},
        });
        let text = reply_for(Some("json_schema"), Some(&schema)).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({
                "name": "mock", "age": 18, "tags": ["mock"], "when": "2024-01-01T00:00:00Z",
                "mood": "happy", "nick": "mock", "address": {"city": "mock"},
            })
        );
    }

    #[test]
    fn other_formats() {
        assert_eq!(reply_for(Some("json_object"), None), None);
        assert_eq!(reply_for(Some("text"), None), None);
        assert_eq!(reply_for(None, None), None);
        let recursive = json!({"$ref": "#"});
        assert_eq!(reply_for(Some("json_schema"), Some(&recursive)).unwrap(), "null");
    }
}
