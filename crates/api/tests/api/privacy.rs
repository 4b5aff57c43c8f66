//! `POST /api/v1/privacy/scan` and `/anonymize`: what they find (Luhn edge cases
//! included), that they never echo raw values when scanning, mask and hash modes, and their
//! refusals.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

const SCAN: &str = "/api/v1/privacy/scan";
const ANON: &str = "/api/v1/privacy/anonymize";

fn findings(body: &Value) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn f(path: &str, kind: &str, count: u64) -> (String, String, u64) {
    (path.into(), kind.into(), count)
}

#[tokio::test]
async fn scan_reports_paths_types_and_counts_without_echoing_values() {
    // Detection by content alone: no field is hidden by name here.
    let app = spawn_app_with(|s| s.security.pii.fields.clear()).await;
    let doc = json!({
        "users": [
            {"email": "jane.doe@example.com", "phone": "(555) 123-4567",
             "ssn": "123-45-6789", "card": "4111 1111 1111 1111"},
            {"notes": "call 555.987.6543 or mail bob@example.org / alice@example.net"}
        ],
        "amount": 1234.5
    });
    let r = app.post(SCAN, &json!({"data": doc})).await;
    let body = r.assert_status(200);
    assert_eq!(
        findings(body),
        vec![
            f("/users/0/card", "credit_card", 1),
            f("/users/0/email", "email", 1),
            f("/users/0/phone", "phone", 1),
            f("/users/0/ssn", "ssn", 1),
            f("/users/1/notes", "email", 2),
            f("/users/1/notes", "phone", 1),
        ]
    );
    assert_eq!(body["total"], 7);
    assert_eq!(body["summary"]["email"], 3);
    assert_eq!(body["pii_found"], true);
    let text = body.to_string();
    for raw in ["jane.doe", "123-4567", "123-45-6789", "4111", "bob@", "987"] {
        assert!(!text.contains(raw), "the scan echoed '{raw}': {text}");
    }
}

#[tokio::test]
async fn luhn_decides_what_is_a_card_number() {
    let app = spawn_app().await;
    let doc = json!({
        "visa": "4111111111111111",
        "visa_one_digit_off": "4111111111111112",
        "sixteen_non_luhn": "1234 5678 1234 5678",
        "amex_4_6_5": "3782-822463-10005",
        "luhn_but_11_digits": "79927398713",
        "zeros": "0000 0000 0000 0000",
        "visa_13": "4222222222222",
        "as_number": 5500000000000004u64,
        "number_non_luhn": 5500000000000005u64,
        "glued": "ref4111111111111111",
        "twenty_digits": "41111111111111111111"
    });
    let r = app
        .post(SCAN, &json!({"data": doc, "types": ["credit_card"]}))
        .await;
    assert_eq!(
        findings(r.assert_status(200)),
        vec![
            f("/amex_4_6_5", "credit_card", 1),
            f("/as_number", "credit_card", 1),
            f("/visa", "credit_card", 1),
            f("/visa_13", "credit_card", 1),
        ]
    );
}

#[tokio::test]
async fn the_guides_example_record_is_anonymized_by_the_default_fields() {
    let app = spawn_app().await;
    let record = json!({"name": "John Doe", "email": "john@example.com", "age": 32,
                        "zip_code": "12345", "address": "1 Main St", "phone": "555-0100",
                        "ssn": "078-05-1120", "city": "Paris"});
    let r = app.post(ANON, &json!({"data": record})).await;
    let data = &r.assert_status(200)["data"];
    for field in ["name", "email", "address", "phone", "ssn"] {
        assert_eq!(data[field], "[REDACTED]", "{field}: {data}");
    }
    assert_eq!(data["age_group"], "30_49", "{data}");
    assert_eq!(data["zip_code"], "123XX", "{data}");
    assert_eq!(data["city"], "Paris", "not a default field: {data}");
    // Hashed, as the guide does, when asked: one token per value, never the value.
    let r = app
        .post(ANON, &json!({"data": record, "mode": "hash"}))
        .await;
    let hashed = r.assert_status(200)["data"]["name"].to_string();
    assert!(!hashed.contains("John"), "{hashed}");
    assert_ne!(hashed, "\"[REDACTED]\"");
}

#[tokio::test]
async fn anonymize_masks_values_and_configured_fields() {
    let app =
        spawn_app_with(|s| s.security.pii.fields = vec!["name".into(), "address".into()]).await;
    let doc = json!({
        "Name": "Jane Doe",
        "address": {"street": "1 Main St", "zip": "12345"},
        "contact": "jane@example.com, +1 555-123-4567",
        "card": 4111111111111111u64,
        "not_a_card": "4111111111111112",
        "ssn": "SSN 078-05-1120",
        "score": 0.97
    });
    let r = app.post(ANON, &json!({"data": doc})).await;
    let body = r.assert_status(200);
    assert_eq!(body["mode"], "mask");
    assert_eq!(body["replacements"], 6);
    assert_eq!(
        body["data"],
        json!({
            "Name": "[REDACTED]",
            "address": "[REDACTED]",
            "contact": "[EMAIL], [PHONE]",
            "card": "[CREDIT_CARD]",
            "not_a_card": "4111111111111112",
            "ssn": "SSN [SSN]",
            "score": 0.97
        })
    );
    // The guide's quasi-identifiers are generalised, unless asked not to.
    let person = json!({"age": 42, "zip_code": "94107", "email": "x@y.io"});
    let r = app.post(ANON, &json!({"data": person})).await;
    assert_eq!(
        r.assert_status(200)["data"],
        json!({"age_group": "30_49", "zip_code": "941XX", "email": "[EMAIL]"})
    );
    let r = app
        .post(ANON, &json!({"data": person, "generalize": false}))
        .await;
    assert_eq!(
        r.assert_status(200)["data"],
        json!({"age": 42, "zip_code": "94107", "email": "[EMAIL]"})
    );
    app.post(ANON, &json!({"data": person, "generalize": "yes"}))
        .await
        .assert_error(422, "invalid_input");
    // `null` is a member left out: the defaults.
    let r = app
        .post(
            ANON,
            &json!({"data": person, "generalize": null, "fields": null, "mode": null, "types": null}),
        )
        .await;
    assert_eq!(
        r.assert_status(200)["data"],
        json!({"age_group": "30_49", "zip_code": "941XX", "email": "[EMAIL]"})
    );
    // A request's own field list replaces the server's.
    let r = app
        .post(
            ANON,
            &json!({"data": {"name": "Jane", "city": "Paris"}, "fields": ["city"]}),
        )
        .await;
    assert_eq!(
        r.assert_status(200)["data"],
        json!({"name": "Jane", "city": "[REDACTED]"})
    );
}

#[tokio::test]
async fn hash_mode_gives_the_same_token_for_the_same_value_and_hides_it() {
    let app = spawn_app().await;
    let anon = |data: Value| {
        let app = &app;
        async move {
            app.post(
                ANON,
                &json!({"data": data, "mode": "hash", "fields": ["customer"]}),
            )
            .await
            .assert_status(200)["data"]
                .clone()
        }
    };
    let one =
        anon(json!({"customer": "Jane Doe", "mail": "Jane@Example.com", "tel": "555-123-4567"}))
            .await;
    let two =
        anon(json!({"customer": "Jane Doe", "mail": "jane@example.com", "tel": "(555) 123 4567"}))
            .await;
    let other =
        anon(json!({"customer": "John Roe", "mail": "john@example.com", "tel": "555-123-4568"}))
            .await;
    assert_eq!(
        one, two,
        "same values (up to case and formatting), same tokens"
    );
    for field in ["customer", "mail", "tel"] {
        assert_ne!(one[field], other[field], "{field}");
    }
    let text = one.to_string();
    assert!(
        text.contains("[REDACTED:") && text.contains("[EMAIL:") && text.contains("[PHONE:"),
        "{text}"
    );
    assert!(
        !text.to_lowercase().contains("jane") && !text.contains("4567"),
        "{text}"
    );
    // Tokens are keyed by the server's secret: another server gives other tokens.
    let elsewhere = spawn_app().await;
    let r = elsewhere
        .post(
            ANON,
            &json!({"data": {"mail": "jane@example.com"}, "mode": "hash"}),
        )
        .await;
    assert_ne!(r.assert_status(200)["data"]["mail"], one["mail"]);
}

#[tokio::test]
async fn privacy_requests_are_checked_and_need_the_read_scope() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({}), "data"),
        (json!({"data": "x", "types": ["passport"]}), "types"),
        (json!({"data": "x", "mode": "shred"}), "mode"),
        (json!({"data": "x", "fields": [""]}), "fields"),
    ] {
        for path in [SCAN, ANON] {
            let r = app.post(path, &body).await;
            let e = r.assert_error(422, "invalid_input");
            assert_eq!(e["details"]["field"], field, "{body}");
        }
    }
    let r = app.post(SCAN, &json!({"data": 1, "colour": "red"})).await;
    r.assert_error(422, "invalid_input");
    assert!(r.message().contains("colour"), "{}", r.message());
    app.post_raw(SCAN, "{\"data\": [1,")
        .await
        .assert_error(400, "malformed_json");
    let body = json!({"data": "a@b.io"});
    app.request(Method::POST, SCAN, None, Some(&body))
        .await
        .assert_error(401, "unauthorized");
    let write_only = app.create_key(&["write"]).await;
    app.request(Method::POST, ANON, Some(&write_only), Some(&body))
        .await
        .assert_error(403, "forbidden");
    let read_only = app.create_key(&["read"]).await;
    let r = app
        .request(Method::POST, ANON, Some(&read_only), Some(&body))
        .await;
    assert_eq!(r.assert_status(200)["data"], "[EMAIL]");
}
