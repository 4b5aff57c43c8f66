//! `POST /api/v1/privacy/scan` and `POST /api/v1/privacy/anonymize` (scope `read`): the
//! ML-engineer guide's `DataPrivacyManager` as a service, over [`pynomaly_privacy`].
//!
//! Both take any JSON document in `data`. `scan` reports where personal data is (JSON
//! Pointer paths, kind, count), never the values. `anonymize` returns the document with
//! personal data masked or replaced by keyed hash tokens. `fields`, `mode` and `types`
//! override the server's defaults (`PYNOMALY_PII_FIELDS`, `PYNOMALY_PII_MODE`) for one
//! request; nothing sent is stored or logged.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use pynomaly_privacy::{Mode, PiiKind, Privacy};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::ReadAccess;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scan))
        .routes(routes!(anonymize))
}

const MAX_FIELDS: usize = 256;

/// The request's members: `data` (any JSON document), and overrides of the server's
/// settings: `fields` (names hidden wholly), `types` (kinds looked for), `mode` (`mask` or
/// `hash`). Read by hand rather than derived, because `data` is free-form: the shared
/// extractor's diagnosis of `data` as rows of numbers does not apply here.
///
/// Its schema (derived here) is what `from_json` accepts: `serde(deny_unknown_fields)`
/// only marks the schema `additionalProperties: false`, as `from_json` refuses other names.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PrivacyRequest {
    /// Any JSON document.
    #[schema(value_type = Value, required = true)]
    data: Option<Value>,
    /// Field names whose whole value is hidden, at any depth (default: PYNOMALY_PII_FIELDS).
    #[schema(max_items = 256)]
    fields: Option<Vec<String>>,
    /// Kinds looked for (default: all).
    #[schema(value_type = Option<Vec<crate::openapi_doc::types::PiiKind>>)]
    types: Option<Vec<String>>,
    /// anonymize: labels, or keyed HMAC tokens (default: PYNOMALY_PII_MODE).
    #[schema(value_type = Option<crate::openapi_doc::types::PrivacyMode>)]
    mode: Option<String>,
    /// `age` → `age_group`, `zip_code` → 3 characters + `XX` (anonymize; default true, as
    /// the guide's `anonymize_data`).
    generalize: Option<bool>,
}

fn member<T: DeserializeOwned>(name: &str, value: Value, expected: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|_| {
        ApiError::invalid_with(
            format!("'{name}' must be {expected}"),
            json!({"field": name}),
        )
    })
}

impl PrivacyRequest {
    fn from_json(body: Value) -> Result<Self, ApiError> {
        let Value::Object(map) = body else {
            return Err(ApiError::invalid("the request body must be a JSON object"));
        };
        let mut req = PrivacyRequest::default();
        for (key, value) in map {
            match key.as_str() {
                "data" => req.data = Some(value),
                // `null` is the member left out (the server's setting), as documented.
                "fields" => req.fields = member(&key, value, "an array of field names")?,
                "types" => req.types = member(&key, value, "an array of PII types")?,
                "mode" => req.mode = member(&key, value, "\"mask\" or \"hash\"")?,
                "generalize" => req.generalize = member(&key, value, "true or false")?,
                other => {
                    return Err(ApiError::invalid_with(
                        format!(
                            "unknown field '{other}' (accepted: data, fields, types, mode, generalize)"
                        ),
                        json!({"field": other}),
                    ));
                }
            }
        }
        Ok(req)
    }
}

/// The server's privacy settings with this request's overrides, and the document.
fn configure(state: &AppState, req: PrivacyRequest) -> Result<(Privacy, Value), ApiError> {
    let Some(data) = req.data else {
        return Err(ApiError::invalid_with(
            "'data' is required: the JSON document to check",
            json!({"field": "data"}),
        ));
    };
    let mut privacy = (*state.privacy).clone();
    if let Some(fields) = req.fields {
        if fields.len() > MAX_FIELDS || fields.iter().any(|f| f.is_empty() || f.len() > 256) {
            return Err(ApiError::invalid_with(
                format!("'fields' takes at most {MAX_FIELDS} names of 1 to 256 characters"),
                json!({"field": "fields"}),
            ));
        }
        privacy = privacy.with_fields(&fields);
    }
    if let Some(types) = req.types {
        let kinds = types
            .iter()
            .map(|t| t.parse::<PiiKind>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::invalid_with(e, json!({"field": "types"})))?;
        privacy = privacy.with_kinds(&kinds);
    }
    if let Some(mode) = req.mode {
        let mode: Mode = mode
            .parse()
            .map_err(|e: String| ApiError::invalid_with(e, json!({"field": "mode"})))?;
        privacy = privacy.with_mode(mode);
    }
    privacy = privacy.with_generalization(req.generalize.unwrap_or(true));
    Ok((privacy, data))
}

/// Find personal data in a JSON document
///
/// E-mail addresses, phone numbers, SSNs, Luhn-valid card numbers and configured fields;
/// values are never echoed.
#[utoipa::path(
    post,
    path = "/api/v1/privacy/scan",
    operation_id = "privacy_scan",
    tag = "privacy",
    request_body = PrivacyRequest,
    responses((status = 200, description = "Where personal data is", body = crate::openapi_doc::types::PrivacyScan)),
    security(("bearer" = ["read"])),
)]
async fn scan(
    State(state): State<AppState>,
    ReadAccess(_caller): ReadAccess,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (privacy, data) = configure(&state, PrivacyRequest::from_json(body)?)?;
    let findings = privacy.scan_json(&data);
    let mut summary: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &findings {
        *summary.entry(f.kind.as_str()).or_default() += f.count;
    }
    let total: usize = summary.values().sum();
    Ok(Json(json!({
        "pii_found": total > 0,
        "total": total,
        "summary": summary,
        "findings": findings,
    })))
}

/// Mask or hash personal data in a JSON document
#[utoipa::path(
    post,
    path = "/api/v1/privacy/anonymize",
    operation_id = "privacy_anonymize",
    tag = "privacy",
    request_body = PrivacyRequest,
    responses((status = 200, description = "The anonymized document", body = crate::openapi_doc::types::PrivacyAnonymized)),
    security(("bearer" = ["read"])),
)]
async fn anonymize(
    State(state): State<AppState>,
    ReadAccess(_caller): ReadAccess,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (privacy, mut data) = configure(&state, PrivacyRequest::from_json(body)?)?;
    let replaced = privacy.mask_json(&mut data);
    Ok(Json(json!({
        "data": data,
        "replacements": replaced,
        "mode": privacy.mode(),
    })))
}
