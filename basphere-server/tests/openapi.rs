//! The OpenAPI document is a promise to the clients generated from it: it may grow (new paths,
//! responses, fields, schemes) but nothing in it may be removed or changed. `openapi-baseline.json`
//! is the document as it was published before the wire types moved to `basphere-api`; the one
//! change allowed against it is the fix of error media types: errors were documented as
//! `application/json` but have always been sent as `application/problem+json`. Descriptions are
//! prose and may be reworded.

use basphere_server::openapi::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

const BASELINE: &str = include_str!("openapi-baseline.json");

/// Where a value is in the document, for messages.
fn show(at: &[String]) -> String {
    at.join(" → ")
}

/// Whether `at` is the `content` of an error response (`.../responses/4xx/content`).
fn error_content(at: &[String]) -> bool {
    matches!(at, [.., responses, status, content]
        if responses == "responses" && content == "content" && (status.starts_with('4') || status.starts_with('5')))
}

/// Every way `new` is not `old` plus additions.
fn grows(old: &Value, new: &Value, at: &mut Vec<String>, problems: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, was) in old {
                let moved = key == "application/json" && error_content(at) && !new.contains_key(key);
                let name = if moved { "application/problem+json" } else { key.as_str() };
                at.push(key.clone());
                match new.get(name) {
                    Some(now) => grows(was, now, at, problems),
                    None => problems.push(format!("{} was removed", show(at))),
                }
                at.pop();
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            // Lists (parameters, required fields, enum values) may gain members, in any order.
            for (index, was) in old.iter().enumerate() {
                let kept = new.iter().any(|now| {
                    let mut found = Vec::new();
                    grows(was, now, &mut at.clone(), &mut found);
                    found.is_empty()
                });
                if !kept {
                    problems.push(format!("{} [{index}] {was} was removed or changed", show(at)));
                }
            }
        }
        (_, _) if at.last().is_some_and(|key| key == "description") => {}
        (old, new) if old != new => problems.push(format!("{} changed from {old} to {new}", show(at))),
        _ => {}
    }
}

#[test]
fn the_document_only_grows() {
    let old: Value = serde_json::from_str(BASELINE).expect("the baseline is JSON");
    let new = serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON");
    let mut problems = Vec::new();
    grows(&old, &new, &mut Vec::new(), &mut problems);
    assert!(problems.is_empty(), "the OpenAPI document lost or changed what clients rely on:\n{}", problems.join("\n"));
}

#[test]
fn the_growth_check_notices_removals_and_changes() {
    let old = serde_json::json!({
        "paths": {"/a": {"get": {"responses": {
            "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "string"}}}},
            "404": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        }, "parameters": [{"name": "x"}, {"name": "y"}]}}},
        "components": {"schemas": {"Problem": {"required": ["type"]}}},
    });
    let grown = serde_json::json!({
        "paths": {"/a": {"get": {"responses": {
            "200": {"description": "all fine", "content": {"application/json": {"schema": {"type": "string"}}}},
            "404": {"description": "Not found", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
            "401": {"description": ""},
        }, "parameters": [{"name": "y"}, {"name": "z"}, {"name": "x"}]}}, "/b": {}},
        "components": {"schemas": {"Problem": {"required": ["type", "title"]}}},
    });
    let mut problems = Vec::new();
    grows(&old, &grown, &mut Vec::new(), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");

    let shrunk = serde_json::json!({
        "paths": {"/a": {"get": {"responses": {
            "200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "integer"}}}},
            "404": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        }, "parameters": [{"name": "x"}]}}},
        "components": {"schemas": {"Problem": {"required": []}}},
    });
    let mut problems = Vec::new();
    grows(&old, &shrunk, &mut Vec::new(), &mut problems);
    let text = problems.join("\n");
    assert!(text.contains("200 → content → application/json was removed"), "{text}");
    assert!(text.contains("parameters [1]"), "{text}");
    assert!(text.contains("required [0]"), "{text}");
    assert_eq!(problems.len(), 3, "{text}");
}
