//! Alerts never echo personal data once masking is installed (its own test process: the
//! masking configuration is process-wide).

use pynomaly_privacy::{Privacy, PrivacyConfig};
use pynomaly_stream::alert::{Verdict, mask_with, original_data, write_alert};
use serde_json::{Value, json};

#[test]
fn alerts_mask_configured_fields_and_detected_personal_data() {
    let config = PrivacyConfig {
        fields: vec!["owner".into()],
        ..PrivacyConfig::default()
    };
    mask_with(Privacy::new(&config, [7; 32]));
    let event = json!({
        "id": "e1", "temp": 21.5, "owner": "Jane Roe",
        "meta": {"contact": "jane@example.com", "note": "card 4111 1111 1111 1111"}
    });
    let event = event.as_object().unwrap();
    let masked = original_data(event);
    let text = serde_json::to_string(&*masked).unwrap();
    for secret in ["Jane Roe", "jane@example.com", "4111 1111 1111 1111"] {
        assert!(!text.contains(secret), "{secret} echoed in {text}");
    }
    assert_eq!(masked["temp"], json!(21.5));
    assert_eq!(masked["id"], json!("e1"));
    // The whole alert, as written to the sink.
    let verdict = Verdict {
        score: 0.7,
        threshold: 0.5,
        algorithm: "isolation_forest",
        model_version: 1,
        processing_time_ms: 0.1,
    };
    let mut out = Vec::new();
    write_alert(event, &verdict, &json!("2026-11-26T00:00:00Z"), &mut out);
    let alert: Value = serde_json::from_slice(&out).unwrap();
    assert!(!alert.to_string().contains("jane@example.com"), "{alert}");
    assert_eq!(alert["original_data"]["temp"], json!(21.5));
    // An event without personal data is passed through as it is.
    let clean = json!({"id": "e2", "temp": 1.0});
    assert_eq!(
        *original_data(clean.as_object().unwrap()),
        *clean.as_object().unwrap()
    );
}
