//! The served OpenAPI document is exactly true of the running configuration, and in the forms
//! client generators take: plain references, `application/json`, standard formats, one route
//! type, security as configured.

use serde_json::Value;

use crate::{
    auth::KeysFile,
    helpers::{TestApp, client, config_with, test_config},
};

async fn document(app: &TestApp) -> Value {
    let resp = client()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("JSON document")
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops
}

fn is_open(op: &Value) -> bool {
    matches!(
        op["operationId"].as_str(),
        Some("healthz" | "readyz" | "version")
    )
}

/// What holds in every configuration.
fn check_shape(doc: &Value) {
    let text = doc.to_string();
    assert!(
        !text.contains("charset=utf-8"),
        "a media type key with a charset"
    );
    assert!(!text.contains("\"allOf\""), "allOf wrappers");
    assert!(
        !text.contains("uint64") && !text.contains("uint32"),
        "non-standard formats"
    );
    assert!(
        !text.contains("http_version_not_supported"),
        "a code never answered"
    );
    assert_eq!(doc["servers"][0]["url"], "/");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    assert_eq!(
        schemas["Route"]["pattern"],
        flight_counter::route::ROUTE_PATTERN
    );
    assert_eq!(schemas["DayCount"]["properties"]["date"]["format"], "date");
    assert!(schemas["MonthCount"]["properties"]["month"]["pattern"].is_string());
    assert_eq!(
        schemas["Version"]["properties"]["store"]["enum"],
        serde_json::json!(["embedded", "memory", "dynamodb"])
    );
    assert!(
        schemas["InstanceStatus"]["properties"]["status"]["enum"]
            .as_array()
            .expect("enum")
            .contains(&"store_unavailable".into())
    );
    for (method, path, op) in operations(doc) {
        let at = format!("{method} {path}");
        assert!(op["security"].is_array(), "{at}: no security");
        for param in op["parameters"].as_array().into_iter().flatten() {
            if param["name"] == "route" {
                let schema = &param["schema"];
                let reference = schema["$ref"].as_str().or(schema["items"]["$ref"].as_str());
                assert_eq!(reference, Some("#/components/schemas/Route"), "{at}");
            }
        }
        if is_open(&op) {
            assert_eq!(op["security"], serde_json::json!([]), "{at}");
            continue;
        }
        let responses = op["responses"].as_object().expect("responses");
        let default = &responses["default"]["content"]["application/json"];
        assert_eq!(
            default["schema"]["$ref"], "#/components/schemas/ErrorBody",
            "{at}"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let example = &response["content"]["application/json"]["example"];
                assert!(example["error"].is_string(), "{at} {status}: no example");
            }
            if status == "503" || status == "429" {
                let headers = response["headers"].as_object().expect("headers");
                assert!(
                    headers
                        .keys()
                        .any(|h| h.eq_ignore_ascii_case("retry-after")),
                    "{at} {status}: no Retry-After"
                );
            }
        }
    }
    let post = &doc["paths"]["/transactions/{route}"]["post"];
    assert_eq!(
        post["responses"]["200"]["links"]["GetCount"]["operationId"],
        "getTransactions"
    );
    let daily = &doc["paths"]["/transactions/{route}/daily"]["get"]["parameters"];
    let from = daily
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "from")
        .expect("from");
    assert_eq!(from["schema"]["format"], "date");
}

#[tokio::test]
async fn with_authentication_off_nothing_asks_for_a_key() {
    let app = TestApp::spawn(test_config()).await;
    let doc = document(&app).await;
    check_shape(&doc);
    assert!(doc["components"]["securitySchemes"].is_null());
    for (method, path, op) in operations(&doc) {
        assert_eq!(op["security"], serde_json::json!([]), "{method} {path}");
        assert!(op["responses"]["401"].is_null(), "{method} {path}: a 401");
        assert!(op["responses"]["403"].is_null(), "{method} {path}: a 403");
    }
    app.stop().await;
}

#[tokio::test]
async fn with_keys_every_transactions_operation_asks_for_one() {
    let keys = KeysFile::standard();
    let app = TestApp::spawn(config_with(|c| c.auth.api_keys_file = Some(keys.path()))).await;
    let doc = document(&app).await;
    check_shape(&doc);
    assert_eq!(
        doc["components"]["securitySchemes"]["ApiKey"]["scheme"],
        "bearer"
    );
    for (method, path, op) in operations(&doc) {
        if is_open(&op) {
            continue;
        }
        assert_eq!(
            op["security"],
            serde_json::json!([{"ApiKey": []}]),
            "{method} {path}"
        );
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path}: no 401"
        );
        // A read key may not record, and no key but an admin one may export.
        assert_eq!(
            op["responses"]["403"].is_object(),
            method == "post" || path == "/admin/export",
            "{method} {path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn with_public_reads_a_read_takes_a_key_or_none() {
    let keys = KeysFile::standard();
    let app = TestApp::spawn(config_with(|c| {
        c.auth.api_keys_file = Some(keys.path());
        c.auth.public_reads = true;
    }))
    .await;
    let doc = document(&app).await;
    check_shape(&doc);
    for (method, path, op) in operations(&doc) {
        if is_open(&op) {
            continue;
        }
        // An export reads the whole store: public reads never open it.
        let expected = if method == "get" && path != "/admin/export" {
            serde_json::json!([{}, {"ApiKey": []}])
        } else {
            serde_json::json!([{"ApiKey": []}])
        };
        assert_eq!(op["security"], expected, "{method} {path}");
    }
    // Swagger UI shows the same document.
    let page = client()
        .get(app.url("/"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("\"servers\""),
        "the page embeds poem's own document"
    );
    app.stop().await;
}

/// The month pattern the document publishes accepts exactly the months the service parses.
#[test]
fn the_published_month_pattern_agrees_with_the_parser() {
    let pattern = regex::Regex::new(flight_counter::api::document::MONTH_PATTERN).expect("regex");
    for text in [
        "2026-11", "0001-01", "9999-12", "0000-01", "2026-13", "2026-00", "2026-1", "20261-01",
        "-001-02",
    ] {
        assert_eq!(
            pattern.is_match(text),
            flight_counter::calendar::Month::parse(text).is_ok(),
            "{text}"
        );
    }
}
