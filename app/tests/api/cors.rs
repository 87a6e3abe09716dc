//! Cross-origin access for browser dashboards, as a browser asks for it: preflights, then the
//! request with `Origin`. Chromium runs the same through a page on another origin in CI
//! (.ci/clients/cors.mjs).

use crate::{
    auth::KeysFile,
    helpers::{TestApp, client, config_with, test_config},
};

const PAGE: &str = "https://dash.example.com";

async fn preflight(app: &TestApp, origin: &str, method: &str) -> reqwest::Response {
    client()
        .request(reqwest::Method::OPTIONS, app.url("/transactions/AR1133"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,idempotency-key",
        )
        .send()
        .await
        .expect("sent")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[tokio::test]
async fn listed_origins_may_read_and_record_with_a_key() {
    let keys = KeysFile::standard();
    let app = TestApp::spawn(config_with(|c| {
        c.auth.api_keys_file = Some(keys.path());
        c.server.cors_allow_origin = vec![PAGE.to_owned(), "http://127.0.0.1:9".to_owned()];
    }))
    .await;
    let pre = preflight(&app, PAGE, "POST").await;
    assert_eq!(pre.status(), 200);
    assert_eq!(header(&pre, "access-control-allow-origin"), PAGE);
    let allowed = header(&pre, "access-control-allow-headers");
    for name in ["authorization", "idempotency-key", "content-type"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(header(&pre, "access-control-allow-methods").contains("post"));
    assert!(header(&pre, "access-control-allow-credentials").is_empty());

    let posted = client()
        .post(app.url("/transactions/AR1133"))
        .header("Origin", PAGE)
        .header(
            "Authorization",
            format!("Bearer {}", crate::auth::WRITE_KEY),
        )
        .header("Idempotency-Key", "cors-1")
        .send()
        .await
        .expect("sent");
    assert_eq!(posted.status(), 200);
    assert_eq!(header(&posted, "access-control-allow-origin"), PAGE);
    let exposed = header(&posted, "access-control-expose-headers");
    for name in ["retry-after", "idempotent-replayed"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    let body: serde_json::Value = posted.json().await.expect("json");
    assert_eq!(body["transactions"], 1);

    // Another origin is refused, in the JSON error shape.
    let refused = preflight(&app, "https://elsewhere.example", "GET").await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    assert!(header(&refused, "access-control-allow-origin").is_empty());
    let body: serde_json::Value = refused.json().await.expect("JSON error");
    assert!(body["error"].is_string(), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_star_lets_any_origin_read_and_none_record() {
    let app = TestApp::spawn(config_with(|c| {
        c.server.cors_allow_origin = vec!["*".to_owned()]
    }))
    .await;
    let read = preflight(&app, "https://anywhere.example", "GET").await;
    assert_eq!(read.status(), 200);
    assert_eq!(
        header(&read, "access-control-allow-origin"),
        "https://anywhere.example"
    );
    let write = preflight(&app, "https://anywhere.example", "POST").await;
    assert!(write.status().is_client_error(), "{}", write.status());
    app.stop().await;
}

#[tokio::test]
async fn without_the_flag_no_origin_is_allowed() {
    let app = TestApp::spawn(test_config()).await;
    let pre = preflight(&app, PAGE, "GET").await;
    assert_eq!(pre.status(), 405);
    assert!(header(&pre, "access-control-allow-origin").is_empty());
    let read = client()
        .get(app.url("/transactions/AR1133"))
        .header("Origin", PAGE)
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), 200);
    assert!(header(&read, "access-control-allow-origin").is_empty());
    app.stop().await;
}
