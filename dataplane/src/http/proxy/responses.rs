//! `POST /v1/responses`: the Responses API served through the request path's Chat
//! Completions form. The body is decoded once here (with the `previous_response_id` chain
//! read from the database, scoped to the caller), governed like any chat request, and the
//! answer is encoded back as a Response object or the Responses API's typed events, then
//! stored when the caller asked for it (`store`, the default).

use super::*;
use crate::store::StoredResponse;

/// How many links of a `previous_response_id` chain are followed.
const MAX_CHAIN: usize = 1000;

/// What the request path keeps of a Responses call to encode and store its answer.
pub(in crate::http) struct ResponsesRequest {
    /// The caller's body (the Response object echoes some of its fields).
    pub(super) request: Value,
    /// The request's own input items, with ids, as stored and listed.
    pub(super) input_items: Vec<Value>,
    /// Whether the answer is stored (the Responses API's default: yes).
    pub(super) store: bool,
    pub(super) previous_response_id: Option<String>,
}

/// Decodes a Responses body into the chat form the rest of the path governs.
pub(super) async fn prepare(
    shared: &Shared,
    key: &KeyRecord,
    body: Value,
) -> Result<(Value, ResponsesRequest), ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid("the request body must be a JSON object", None));
    };
    let store = match obj.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("`store` must be a boolean", Some("store".into()))),
    };
    let previous = match obj.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                "`previous_response_id` must be a response id",
                Some("previous_response_id".into()),
            ));
        }
    };
    let history = match &previous {
        None => Vec::new(),
        Some(id) => {
            let p = &key.principal;
            let found = shared
                .keys
                .store()
                .conversation(id, p.kind.as_str(), &p.name, MAX_CHAIN)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "could not read a stored response");
                    ApiError::unavailable("store_unavailable", "stored responses cannot be read right now")
                })?;
            found.ok_or_else(|| {
                ApiError::not_found(
                    "previous_response_not_found",
                    format!("Previous response with id '{}' not found.", super::super::sanitize_path(id)),
                )
                .with_param("previous_response_id")
            })?
        }
    };
    let chat = translate::responses_request_to_chat(&body, &history)
        .map_err(|e| ApiError::invalid(e.message, Some(e.path)))?;
    let input_items = translate::normalize_input_items(&body);
    Ok((chat, ResponsesRequest { request: body, input_items, store, previous_response_id: previous }))
}

impl ResponsesRequest {
    /// Applies the input policy's redactions to the input items kept for storage, so what
    /// is stored, listed and sent again with `previous_response_id` is what the provider
    /// saw. Called only when the request itself was redacted.
    pub(super) fn redact_input(&mut self, policy: &crate::safety::PolicySet) {
        fn walk(value: &mut Value, policy: &crate::safety::PolicySet) {
            match value {
                Value::String(text) => {
                    let verdict = policy.check_text(text, crate::safety::Stage::Input);
                    if let crate::safety::Outcome::Redact(Value::String(redacted)) = verdict.outcome {
                        *text = redacted;
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(|v| walk(v, policy)),
                Value::Object(fields) => fields
                    .iter_mut()
                    // NB: ids, types and roles are the API's own words, never the caller's text.
                    .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "role" | "status" | "call_id"))
                    .for_each(|(_, v)| walk(v, policy)),
                _ => {}
            }
        }
        self.input_items.iter_mut().for_each(|item| walk(item, policy));
    }

    /// The Response object for a chat answer (`out`, as the caller would have got it).
    pub(super) fn encode(&self, model: &str, out: &[u8]) -> Value {
        let chat = serde_json::from_slice::<Value>(out).unwrap_or(Value::Null);
        translate::chat_response_to_responses(&chat, &translate::ResponseMeta::new(&self.request, model))
    }

    /// The stream encoder for this call.
    pub(super) fn stream(&self, model: &str) -> translate::ChatToResponsesStream {
        translate::ChatToResponsesStream::new(translate::ResponseMeta::new(&self.request, model))
    }

    /// Stores `response` for the principal `(kind, name)` when the caller asked for it.
    /// A failure is logged: the answer is still delivered, chaining on it then says 404.
    pub(super) async fn save(&self, shared: &Shared, principal: (&str, &str), response: &Value) {
        if !self.store {
            return;
        }
        let Some(id) = response.get("id").and_then(Value::as_str) else { return };
        let stored = StoredResponse {
            id: id.to_owned(),
            principal_kind: principal.0.to_owned(),
            principal_name: principal.1.to_owned(),
            created_at_ms: crate::now_ms(),
            previous_response_id: self.previous_response_id.clone(),
            model: response.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            input_items: Value::Array(self.input_items.clone()),
            response: response.clone(),
        };
        if let Err(e) = shared.keys.store().put_response(&stored).await {
            tracing::warn!(error = %e, response_id = id, "could not store a response");
        }
    }
}
