//! Encryption at rest through the whole service: models and batch outputs written by the
//! API and the job worker are sealed on disk, read back through the API, survive a key
//! rotation, and a missing key is an error answer (not a panic, not ciphertext). Models
//! stored before a key was configured still serve.

use std::path::Path;

use pynomaly_store::crypto::{Keyring, MAGIC, MasterKey};
use serde_json::{Value, json};

use crate::helpers::{TestApp, csv_source, start, test_settings, training_rows};

fn key(byte: &str) -> MasterKey {
    MasterKey::from_hex(&byte.repeat(32)).unwrap()
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// Stored objects: (path, bytes).
type Objects = Vec<(String, Vec<u8>)>;

/// (drift reference profiles, every other object): each model has its reference beside it.
fn split_references(fs: Objects) -> (Objects, Objects) {
    fs.into_iter()
        .partition(|(path, _)| path.ends_with(".reference"))
}

async fn predict_ok(app: &TestApp, name: &str) {
    let r = app
        .predict(
            name,
            &json!({"data": [[0.1, 0.2, 0.3], [50.0, 51.0, 52.0]]}),
        )
        .await;
    let body = r.assert_status(200);
    assert_eq!(body["predictions"][1], -1, "{body}");
}

#[tokio::test]
async fn models_and_batch_outputs_are_encrypted_at_rest_and_keys_rotate() {
    let dir = tempfile::tempdir().unwrap();
    // 1. No key: a model stored in plaintext.
    let app = start(test_settings(dir.path()), None).await;
    app.train_inline("before").await;
    let (_, data_dir, admin) = app.stop().await;
    let storage = data_dir.join("storage");
    let plain = files(&storage);
    let (references, plain) = split_references(plain);
    assert_eq!(plain.len(), 1);
    assert_eq!(&plain[0].1[..4], b"PNMY");
    // The model's drift reference lies beside it, in plaintext too.
    assert_eq!(references.len(), 1);
    assert_eq!(&references[0].1[..4], b"PNRF");

    // 2. Key A: new models and outputs are sealed; the old model still serves.
    let mut settings = test_settings(dir.path());
    settings.storage.encryption = Some(Keyring::new("A", key("a1")).unwrap());
    let app = start(settings, Some(admin.clone())).await;
    predict_ok(&app, "before").await;
    app.train(
        &json!({"model_name": "m", "n_estimators": 50, "random_state": 1,
                      "data": training_rows(200, 3)}),
    )
    .await
    .assert_status(201);
    app.write_source("data.csv", &csv_source(3000, 3));
    let mut jobs = Vec::new();
    for format in ["json", "csv"] {
        let batch = json!({"data_source": "data.csv", "model_name": "m", "output_format": format});
        jobs.push(app.submit_batch(&batch).await);
    }
    assert_eq!(app.drain_jobs().await, 2);
    let json_out = app.get(&format!("/api/v1/jobs/{}/result", jobs[0])).await;
    let rows = json_out.assert_status(200).as_array().unwrap().clone();
    assert_eq!(rows.len(), 3000);
    assert_eq!(rows[2999]["row"], 2999);
    let csv_out = app.get(&format!("/api/v1/jobs/{}/result", jobs[1])).await;
    let Value::String(csv_text) = &csv_out.body else {
        panic!("{}", csv_out.body)
    };
    assert_eq!(csv_text.lines().count(), 3001);
    assert_eq!(
        csv_out.headers["content-length"].to_str().unwrap(),
        csv_text.len().to_string(),
        "Content-Length is the plaintext's"
    );
    let (references, at_rest) = split_references(files(&storage));
    // The old model's reference stays as it was; the new model's is sealed.
    assert_eq!(
        references
            .iter()
            .filter(|(_, b)| b.starts_with(MAGIC))
            .count(),
        1,
        "{:?}",
        references.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(references.len(), 2);
    assert_eq!(
        at_rest.len(),
        4,
        "{:?}",
        at_rest.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let sealed: Vec<&(String, Vec<u8>)> = at_rest
        .iter()
        .filter(|(_, b)| b.starts_with(MAGIC))
        .collect();
    assert_eq!(sealed.len(), 3, "the new model and both outputs are sealed");
    for (path, bytes) in &sealed {
        assert!(
            !bytes
                .windows(6)
                .any(|w| w == b"\"row\":" || w == b"row,pr" || w == b"PNMY\x01\x00"),
            "{path} holds plaintext"
        );
    }
    let (_, _, admin) = app.stop().await;

    // 3. Rotation: B is current, A kept for reading. Everything still reads; new objects
    // are sealed under B.
    let mut settings = test_settings(dir.path());
    settings.storage.encryption = Some(
        Keyring::new("B", key("b2"))
            .unwrap()
            .with_old_key("A", key("a1"))
            .unwrap(),
    );
    let app = start(settings, Some(admin.clone())).await;
    predict_ok(&app, "m").await;
    predict_ok(&app, "before").await;
    let again = app.get(&format!("/api/v1/jobs/{}/result", jobs[0])).await;
    assert_eq!(again.assert_status(200).as_array().unwrap(), &rows);
    app.train_inline("after").await;
    let (references, models) = split_references(files(&storage));
    let under_b = |fs: &[(String, Vec<u8>)]| {
        fs.iter()
            .filter(|(_, b)| b.starts_with(MAGIC) && b[9..10] == *b"B")
            .count()
    };
    assert_eq!(under_b(&models), 1);
    assert_eq!(under_b(&references), 1);
    let (_, _, admin) = app.stop().await;

    // 4. A dropped: A's objects cannot be opened. The answer is the contract's 500 (the
    // cause, naming the key id, goes to the log), never ciphertext; the rest still works.
    let mut settings = test_settings(dir.path());
    settings.storage.encryption = Some(Keyring::new("B", key("b2")).unwrap());
    let app = start(settings, Some(admin.clone())).await;
    let r = app.predict("m", &json!({"data": [[0.1, 0.2, 0.3]]})).await;
    r.assert_error(500, "internal");
    let r = app.get(&format!("/api/v1/jobs/{}/result", jobs[0])).await;
    r.assert_error(500, "internal");
    predict_ok(&app, "after").await;
    predict_ok(&app, "before").await;
    app.stop().await;
}
