//! The parameters of the document's operations: days are dates, months and airlines carry
//! their patterns, and the reads' conditional requests (`If-None-Match`, `ETag`,
//! `Cache-Control`, `304`).

use serde_json::{Map, Value, json};

/// The reads answered with an `ETag`, `Cache-Control`, and `304` for `If-None-Match`.
const CONDITIONAL_READS: [&str; 5] = [
    "getTransactions",
    "getDailyTransactions",
    "getMonthlyTransactions",
    "getManyTransactions",
    "getTopRoutes",
];
/// An airline code, as a route begins.
pub const AIRLINE_PATTERN: &str = "^(?:[A-Za-z][A-Za-z0-9]|[0-9][A-Za-z]|[A-Za-z]{3})$";

/// A month as the API writes it: `YYYY-MM`, years from 0001.
pub const MONTH_PATTERN: &str = r"^([1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])-(0[1-9]|1[0-2])$";

/// `If-None-Match` on every conditional read.
pub(super) fn if_none_match(id: &str, op: &mut Map<String, Value>) {
    if !CONDITIONAL_READS.contains(&id) {
        return;
    }
    if let Some(parameters) = op
        .entry("parameters")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        parameters.push(json!({
            "name": "If-None-Match",
            "in": "header",
            "required": false,
            "description": "The `ETag` of an earlier answer to the same read: if the answer \
                would be the same, it is `304 Not Modified` with no body.",
            "schema": {"type": "string"},
        }));
    }
}

/// A read's `ETag` and `Cache-Control` on its `200`, and its `304`.
pub(super) fn conditional_answers(id: &str, responses: &mut Map<String, Value>) {
    if !CONDITIONAL_READS.contains(&id) {
        return;
    }
    let cache_control = if id == "getTopRoutes" {
        "`private, max-age=<seconds>`: the ranking may be kept until the next one is due."
    } else {
        "`private, no-cache`: counts change at any time; keep the answer, but ask again with \
         `If-None-Match`."
    };
    let headers = json!({
        "ETag": {
            "description": "A digest of the body: the same on every instance for the same \
                answer. Send it back as `If-None-Match`.",
            "schema": {"type": "string"},
        },
        "Cache-Control": {"description": cache_control, "schema": {"type": "string"}},
    });
    if let Some(ok) = responses.get_mut("200").and_then(Value::as_object_mut) {
        let existing = ok.entry("headers").or_insert_with(|| json!({}));
        if let (Some(existing), Some(new)) = (existing.as_object_mut(), headers.as_object()) {
            existing.extend(new.clone());
        }
    }
    responses.insert(
        "304".into(),
        json!({
            "description": "Not Modified: `If-None-Match` named this answer's `ETag`; no body.",
            "headers": headers,
        }),
    );
}

/// Days are dates and months carry their pattern, in the query as in the answers.
pub(super) fn finish_parameters(id: &str, op: &mut Map<String, Value>) {
    let Some(parameters) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for parameter in parameters {
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let name = name.as_str();
        if name == "route" && id == "getManyTransactions" {
            if let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut) {
                schema.insert(
                    "items".into(),
                    json!({"$ref": "#/components/schemas/Route"}),
                );
            }
            continue;
        }
        if name == "airline" {
            if let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut) {
                schema.insert("pattern".into(), json!(AIRLINE_PATTERN));
            }
            continue;
        }
        if id == "getTopRoutes" {
            if let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut) {
                match name {
                    "day" => {
                        schema.insert("format".into(), json!("date"));
                    }
                    "month" => {
                        schema.insert("pattern".into(), json!(MONTH_PATTERN));
                    }
                    _ => {}
                }
            }
            continue;
        }
        if !matches!(name, "from" | "to") {
            continue;
        }
        let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut) else {
            continue;
        };
        match id {
            "getDailyTransactions" => {
                schema.insert("format".into(), json!("date"));
            }
            "getMonthlyTransactions" => {
                schema.insert("pattern".into(), json!(MONTH_PATTERN));
            }
            _ => {}
        }
    }
}
