//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`, generated with utoipa
//! from the routes and the types themselves:
//!
//! - the paths, their parameters, bodies and answers come from each handler's
//!   `#[utoipa::path]` and are collected by the same `OpenApiRouter` that serves them
//!   ([`crate::routes::api_routes`]), so a route cannot be served without being documented;
//! - request bodies are the handlers' own `Deserialize` types (`deny_unknown_fields` gives
//!   `additionalProperties: false`), or, for the bodies carrying an algorithm and its
//!   parameters, schemas built from detect-core's parameter table ([`params`]);
//! - answers the handlers build from other crates' types are described by [`types`],
//!   checked against real answers by the API tests.
//!
//! What every operation shares is added once, in [`finish`]: the scope an operation needs
//! (`Scope: \`read\`.` in its description, the `bearer` requirement) with its 401, 403 and
//! 429 answers; 503 (timeouts); the 400, 413 and 422 of operations taking a body or
//! parameters; the `X-Request-Id` header on every answer and `Retry-After` on 429 and 503;
//! and the links that let a client (or a stateful fuzzer) go from one operation to the
//! next.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{OpenApi, PartialSchema, ToSchema};

pub(crate) mod params;
pub(crate) mod types;

use params::Fields;

/// The document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pynomaly",
        description = "Anomaly detection as a service: scikit-learn's and PyOD's detectors. Scores: higher = more anomalous; predictions: -1 anomaly, 1 normal. Every answer carries `X-Request-Id`; every error has the shape of `Error`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/")),
    components(schemas(
        types::Error,
        DetectRequest,
        TrainRequest,
        BatchRequest,
        ScheduleRequest,
        Contamination,
        Explain,
        types::FeatureContribution,
        types::ModelVersion,
        StageChange,
        TrainedVersion,
        JobResult,
        types::BatchResult,
        types::BatchOutput,
        types::OutputFormat,
    )),
)]
struct ApiDoc;

/// `"auto"` or a fraction: detect-core's `contamination`.
pub(crate) struct Contamination;

impl PartialSchema for Contamination {
    fn schema() -> RefOr<Schema> {
        params::contamination()
    }
}
impl ToSchema for Contamination {}

/// `explain` of detect, predict and batch: a boolean, or an object giving `top_k`.
pub(crate) struct Explain;

impl PartialSchema for Explain {
    fn schema() -> RefOr<Schema> {
        let top_k = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .default(Some(json!(crate::explain::DEFAULT_TOP_K)))
            .description(Some(
                "Features per row, at most the number of features (default 3, or all of them when there are fewer)",
            ));
        RefOr::T(Schema::OneOf(
            utoipa::openapi::schema::OneOfBuilder::new()
                .description(Some(
                    "Per-row explanations: each row's top features by their share of its anomaly (shares over all of a row's features sum to 1). `true`: the top 3; `false`: none; `{\"top_k\": N}`: the top N.",
                ))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .title(Some("explain: true or false")),
                )
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .title(Some("explain: top_k"))
                        .property("top_k", top_k)
                        .additional_properties(Some(
                            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                        )),
                )
                .build(),
        ))
    }
}
impl ToSchema for Explain {}

fn r(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// `model_name` of a new model.
fn model_name() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_.-]{1,128}$"))
            .description(Some("1 to 128 letters, digits, '_', '-' or '.'"))
            .build(),
    ))
}

/// The fields of a training's rollout (`promote`, `gate_metric`, `min_improvement`,
/// `bake_seconds`, `validation_data`); `validation_data` of a training on inline `data`
/// is labelled rows only (a data source is read by a training job).
fn rollout_fields(inline: bool) -> Fields {
    vec![
        (
            "promote",
            params::choice(
                &["always", "manual", "if_better"],
                Some("always"),
                "What happens to the new version: production at once, staging until promoted, or production only if it passes the validation gate (needs validation_data)",
            ),
            false,
        ),
        (
            "gate_metric",
            params::choice(
                &["roc_auc", "average_precision", "precision_at_contamination"],
                Some("roc_auc"),
                "The figure the if_better gate compares",
            ),
            false,
        ),
        (
            "min_improvement",
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.0))
                    .maximum(Some(1.0))
                    .default(Some(json!(0.0)))
                    .description(Some("How much better than production the gate asks"))
                    .build(),
            )),
            false,
        ),
        (
            "bake_seconds",
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0.0))
                    .maximum(Some(2_592_000.0))
                    .default(Some(json!(0)))
                    .description(Some("When the new version replaces a production version: how long it is watched by the default guards against its own training rate, and rolled back on a breach (0: not watched)"))
                    .build(),
            )),
            false,
        ),
        (
            "validation_data",
            if inline {
                r("ValidationRows")
            } else {
                r("ValidationData")
            },
            false,
        ),
    ]
}

/// What the new version and production are measured on: labelled rows, or (for a
/// training from `training_data`) a data source of them.
fn validation_data() -> RefOr<Schema> {
    let no_more = || {
        Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(
            false,
        ))
    };
    let source = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("A data source of labelled rows, read by the training job (with training_data only): its features, and the column holding each row's label (1 anomaly, 0 normal)"))
        .property(
            "source",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .examples([params::SOURCE_EXAMPLE]),
        )
        .property(
            "label_column",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("Default: the training's label_column")),
        )
        .required("source")
        .additional_properties(no_more())
        .build();
    let named = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .examples([params::SOURCE_EXAMPLE])
        .description(Some("A data source's name alone (with training_data only), its labels in the training's label_column"))
        .build();
    RefOr::T(Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .description(Some("What the new version and production are measured on (needed by promote: if_better)"))
            .item(r("ValidationRows"))
            .item(source)
            .item(named)
            .build(),
    ))
}

/// Labelled rows, one label per row.
fn inline_validation_rows() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Labelled rows the new version and production are measured on; one label per row",
            ))
            .property(
                "data",
                params::rows("Rows of finite numbers, all of one length", 1),
            )
            .property(
                "labels",
                utoipa::openapi::schema::ArrayBuilder::new()
                    .min_items(Some(1))
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .enum_values(Some([0, 1])),
                    ),
            )
            .required("data")
            .required("labels")
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ))
            .build(),
    )
}

const ROWS: &str = "Rows of finite numbers, all of one length";
/// Fewest rows a model is fitted on (detect, training on `data`).
const MIN_FIT_ROWS: usize = 2;

/// `POST /api/v1/detect`: rows and an algorithm.
pub(crate) struct DetectRequest;

impl PartialSchema for DetectRequest {
    fn schema() -> RefOr<Schema> {
        RefOr::T(params::with_algorithm(
            "detect",
            "Rows to fit on and label, the algorithm (default isolation_forest), contamination, and the algorithm's parameters nested in `parameters` or flat at the top level (not both for one parameter).",
            &vec![
                ("data", params::rows(ROWS, MIN_FIT_ROWS), true),
                ("explain", r("Explain"), false),
            ],
        ))
    }
}
impl ToSchema for DetectRequest {}

/// `POST /api/v1/models`: train now on `data`, or in a job from `training_data`.
pub(crate) struct TrainRequest;

impl PartialSchema for TrainRequest {
    fn schema() -> RefOr<Schema> {
        let mut inline: Fields = vec![
            ("model_name", model_name(), true),
            ("data", params::rows(ROWS, MIN_FIT_ROWS), true),
            (
                "feature_names",
                RefOr::T(Schema::Array(
                    utoipa::openapi::schema::ArrayBuilder::new()
                        .unique_items(true)
                        .description(Some("One name per column (dotted names reach into a streamed event's nested objects)"))
                        .items(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .min_length(Some(1))
                                .max_length(Some(256))
                                .pattern(Some(params::NOT_BLANK)),
                        )
                        .build(),
                )),
                false,
            ),
        ];
        inline.extend(rollout_fields(true));
        let mut source: Fields = vec![
            ("model_name", model_name(), true),
            (
                "training_data",
                params::source(
                    "A data source: a path relative to the sources directory, or file:// inside it; trains in a job (202)",
                ),
                true,
            ),
            (
                "label_column",
                params::name("A column of 0/1 labels in the source, left out of the features"),
                false,
            ),
        ];
        source.extend(rollout_fields(false));
        let mut one = utoipa::openapi::schema::OneOfBuilder::new().description(Some(
            "Give `data` (trains now, 201) or `training_data` (a data source, 202 with a job), with the algorithm, contamination and the algorithm's parameters nested in `parameters` or flat.",
        ));
        for v in params::algorithm_variants("train on data", &inline)
            .into_iter()
            .chain(params::algorithm_variants(
                "train from training_data",
                &source,
            ))
        {
            one = one.item(v);
        }
        RefOr::T(Schema::OneOf(one.build()))
    }
}
impl ToSchema for TrainRequest {}

/// `POST /api/v1/batch`: data sources, scored with a model or fitted on.
pub(crate) struct BatchRequest;

/// The most data sources in one batch job.
const MAX_SOURCES: usize = 100;

impl PartialSchema for BatchRequest {
    fn schema() -> RefOr<Schema> {
        let source = params::source(
            "A data source: a path relative to the sources directory, or file:// inside it",
        );
        let sources = || {
            RefOr::T(Schema::Array(
                utoipa::openapi::schema::ArrayBuilder::new()
                    .min_items(Some(1))
                    .max_items(Some(MAX_SOURCES))
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .examples([params::SOURCE_EXAMPLE]),
                    )
                    .description(Some(
                        "Several data sources, one output each (with data_source: that one first)",
                    ))
                    .build(),
            ))
        };
        let common: Fields = vec![
            (
                "output_format",
                params::choice(&["json", "csv"], Some("json"), "The output files' format"),
                false,
            ),
            (
                "label_column",
                params::name("A column of the sources left out of the features"),
                false,
            ),
            ("explain", r("Explain"), false),
        ];
        // One source, or a list (with or without the one); the label starts the titles.
        let shapes: [(&str, Fields); 2] = [
            (
                "batch on data_source",
                vec![
                    ("data_source", source.clone(), true),
                    ("data_sources", sources(), false),
                ],
            ),
            (
                "batch on data_sources",
                vec![("data_sources", sources(), true)],
            ),
        ];
        let mut one = utoipa::openapi::schema::OneOfBuilder::new().description(Some(
            "`data_source` and/or `data_sources`; `model_name` (and `version`) to score with a model, or an algorithm, contamination and its parameters (nested or flat) to fit on each source. The header `Idempotency-Key` makes a retried submission return the first job.",
        ));
        for (label, shape) in &shapes {
            let mut with_model = shape.clone();
            with_model.extend(common.clone());
            with_model.push(("model_name", model_name(), true));
            with_model.push((
                "version",
                RefOr::T(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .description(Some("Default: the production version"))
                        .build(),
                )),
                false,
            ));
            with_model.push((
                "algorithm",
                params::choice(
                    &detect_core::params::ALGORITHM_NAMES,
                    None,
                    "If given, the model's own algorithm",
                ),
                false,
            ));
            let mut o = ObjectBuilder::new()
                .schema_type(Type::Object)
                .title(Some(format!("{label}: score with a model")))
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ));
            for (name, schema, required) in with_model {
                o = o.property(name, schema);
                if required {
                    o = o.required(name);
                }
            }
            one = one.item(Schema::Object(o.build()));
            let mut fit = shape.clone();
            fit.extend(common.clone());
            for v in params::algorithm_variants(label, &fit) {
                one = one.item(v);
            }
        }
        RefOr::T(Schema::OneOf(one.build()))
    }
}
impl ToSchema for BatchRequest {}

/// `POST /api/v1/models/{name}/versions`: a model file, as bytes (`format: binary`: not
/// text), so that clients send it as a file.
pub(crate) struct ModelFile;

impl PartialSchema for ModelFile {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                    utoipa::openapi::schema::KnownFormat::Binary,
                )))
                .content_media_type("application/octet-stream")
                .description(Some(
                    "A pynomaly model file: the Python estimators' `to_bytes()`",
                ))
                .build(),
        ))
    }
}
impl ToSchema for ModelFile {}

/// `PUT /api/v1/models/{name}/schedule`: a cron expression and a training from a source.
pub(crate) struct ScheduleRequest;

impl PartialSchema for ScheduleRequest {
    fn schema() -> RefOr<Schema> {
        let mut fields: Fields = vec![
            (
                "cron",
                params::named("5 fields, UTC, e.g. \"0 3 * * *\"", Some("0 3 * * *")),
                true,
            ),
            (
                "training_data",
                params::source("The data source each run trains on"),
                true,
            ),
            (
                "label_column",
                params::name("A column of 0/1 labels in the source, left out of the features"),
                false,
            ),
        ];
        fields.extend(rollout_fields(false));
        RefOr::T(params::with_algorithm(
            "schedule",
            "When to retrain (cron) and what a training from a data source takes: the algorithm, contamination and parameters (nested or flat), label_column, and the rollout fields.",
            &fields,
        ))
    }
}
impl ToSchema for ScheduleRequest {}

/// A version after a stage change: the version, its previous stage and the version it
/// replaced.
pub(crate) struct StageChange;

impl PartialSchema for StageChange {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::AllOf(
            AllOfBuilder::new()
                .item(r("ModelVersion"))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .property("previous_stage", r("Stage"))
                        .property(
                            "replaced_version",
                            ObjectBuilder::new().schema_type(
                                utoipa::openapi::schema::SchemaType::from_iter([
                                    Type::Integer,
                                    Type::Null,
                                ]),
                            ),
                        )
                        .required("previous_stage"),
                )
                .build(),
        ))
    }
}
impl ToSchema for StageChange {}

/// The answer of an inline training: the new version, with its anomalies and warnings.
pub(crate) struct TrainedVersion;

impl PartialSchema for TrainedVersion {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::AllOf(
            AllOfBuilder::new()
                .item(r("ModelVersion"))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .property(
                            "anomaly_count",
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(0))
                                .description(Some("Anomalies among the training rows")),
                        )
                        .property(
                            "warnings",
                            utoipa::openapi::schema::ArrayBuilder::new()
                                .items(ObjectBuilder::new().schema_type(Type::String)),
                        )
                        .required("anomaly_count")
                        .required("warnings"),
                )
                .build(),
        ))
    }
}
impl ToSchema for TrainedVersion {}

/// A succeeded job's `result`: a batch's figures and outputs, or a training's version.
pub(crate) struct JobResult;

impl PartialSchema for JobResult {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::OneOf(
            utoipa::openapi::schema::OneOfBuilder::new()
                .description(Some(
                    "A batch job: rows, anomalies and one output per source; a training job: the version it registered, with its promotion",
                ))
                .item(r("BatchResult"))
                .item(r("TrainedVersion"))
                .build(),
        ))
    }
}
impl ToSchema for JobResult {}

/// The document, built once.
pub(crate) fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut api = ApiDoc::openapi();
        api.merge(crate::routes::api_routes().into_openapi());
        let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serializes");
        finish(&mut doc);
        doc
    })
}

fn header_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/headers/{name}")})
}

fn response_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

/// The shared answers, headers and links (see the module docs).
fn finish(doc: &mut Value) {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    let with_id = |description: &str, more: Value| {
        let mut headers = json!({"X-Request-Id": header_ref("X-Request-Id")});
        if let (Some(h), Value::Object(more)) = (headers.as_object_mut(), more) {
            h.extend(more);
        }
        json!({"description": description, "headers": headers, "content": error.clone()})
    };
    doc["components"]["headers"] = json!({
        "X-Request-Id": {"description": "The request's id: the caller's X-Request-Id if it sent a valid one, else a new UUID; also in error bodies and logs", "required": true,
            "schema": {"type": "string"}},
        "Retry-After": {"description": "Seconds to wait before retrying", "required": true,
            "schema": {"type": "integer", "minimum": 0}},
        "Retry-After-Optional": {"description": "Seconds to wait before retrying, when known", "required": false,
            "schema": {"type": "integer", "minimum": 0}},
        "WWW-Authenticate": {"description": "Bearer", "required": true, "schema": {"type": "string", "enum": ["Bearer"]}}
    });
    doc["components"]["responses"] = json!({
        "MalformedJson": with_id("malformed_json: the body is not valid JSON (or is empty)", json!({})),
        "InvalidInput": with_id("invalid_input: names the field, parameter, row/column or header that was wrong, and what is accepted", json!({})),
        "Unauthorized": with_id("unauthorized: no, an unknown, a revoked or an expired API key or token", json!({"WWW-Authenticate": header_ref("WWW-Authenticate")})),
        "Forbidden": with_id("forbidden: the key or user lacks the scope the operation needs, or the resource is another tenant's", json!({})),
        "PayloadTooLarge": with_id("payload_too_large: the body is over the configured limit (details.limit_bytes)", json!({})),
        "RateLimited": with_id("rate_limited: over the caller's request limit; retry after Retry-After seconds", json!({"Retry-After": header_ref("Retry-After")})),
        "Unavailable": with_id("unavailable: the request timed out or a dependency is down (Retry-After when known)", json!({"Retry-After": header_ref("Retry-After-Optional")})),
        "InsufficientStorage": with_id("insufficient_storage: the server's disk is full; nothing was written", json!({}))
    });
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "An API key (pk_…) or a JWT from POST /api/v1/auth/token"}});
    // Every algorithm's parameters object, referenced by the nested variants.
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for spec in detect_core::params::ALGORITHMS {
            let schema =
                serde_json::to_value(params::parameters_object(spec)).expect("a schema serializes");
            schemas.insert(params::parameters_name(spec), schema);
        }
        let validation = serde_json::to_value(validation_data()).expect("a schema serializes");
        schemas.insert("ValidationData".into(), validation);
        let rows = serde_json::to_value(inline_validation_rows()).expect("a schema serializes");
        schemas.insert("ValidationRows".into(), rows);
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let writes = method != "get";
            finish_operation(op, writes);
        }
    }
    add_links(doc);
}

fn finish_operation(op: &mut Value, writes: bool) {
    let scope = op["security"][0]["bearer"][0].as_str().map(str::to_string);
    let mut responses = std::mem::take(&mut op["responses"]);
    let add = |responses: &mut Value, code: &str, name: &str| {
        if responses.get(code).is_none() {
            responses[code] = response_ref(name);
        }
    };
    match &scope {
        Some(scope) => {
            let own = op["description"].as_str().unwrap_or_default().to_string();
            op["description"] = json!(if own.is_empty() {
                format!("Scope: `{scope}`.")
            } else {
                format!("Scope: `{scope}`. {own}")
            });
            add(&mut responses, "401", "Unauthorized");
            add(&mut responses, "403", "Forbidden");
            add(&mut responses, "429", "RateLimited");
        }
        None => op["security"] = json!([]),
    }
    // An optional body (`Option<T>`): the schema is `T`, the body may be left out.
    if let Some(schema) = op.pointer_mut("/requestBody/content/application~1json/schema")
        && let Some([a, b]) = schema
            .get("oneOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        && b == &json!({"type": "null"})
    {
        *schema = a.clone();
        op["requestBody"]["required"] = json!(false);
    }
    let has_body = op.get("requestBody").is_some();
    let json_body = op["requestBody"]["content"]
        .get("application/json")
        .is_some();
    let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
    if json_body {
        add(&mut responses, "400", "MalformedJson");
    }
    if has_body {
        add(&mut responses, "413", "PayloadTooLarge");
    }
    if has_body || has_params {
        add(&mut responses, "422", "InvalidInput");
    }
    add(&mut responses, "503", "Unavailable");
    if writes {
        add(&mut responses, "507", "InsufficientStorage");
    }
    // Every answer has X-Request-Id (the shared ones say so themselves).
    if let Some(map) = responses.as_object_mut() {
        for response in map.values_mut() {
            if response.get("$ref").is_some() {
                continue;
            }
            if let Some(r) = response.as_object_mut() {
                let headers = r
                    .entry("headers")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(h) = headers.as_object_mut() {
                    h.entry("X-Request-Id")
                        .or_insert_with(|| header_ref("X-Request-Id"));
                }
            }
        }
        // Answers in code order.
        let mut sorted: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        map.extend(sorted);
    }
    op["responses"] = responses;
}

/// Links from an answer to the operations that follow it.
fn add_links(doc: &mut Value) {
    let links: &[(&str, &str, &str, &str, &str, Value)] = &[
        // (path, method, status, link name, operationId, parameters)
        (
            "/api/v1/models",
            "post",
            "201",
            "PredictWithModel",
            "predict",
            json!({"name": "$response.body#/model_name"}),
        ),
        (
            "/api/v1/models",
            "post",
            "201",
            "GetModelVersion",
            "get_model_version",
            json!({"name": "$response.body#/model_name", "version": "$response.body#/version"}),
        ),
        (
            "/api/v1/models",
            "post",
            "201",
            "GetModel",
            "get_model",
            json!({"name": "$response.body#/model_name"}),
        ),
        (
            "/api/v1/models",
            "post",
            "202",
            "GetTrainingJob",
            "get_job",
            json!({"job_id": "$response.body#/job_id"}),
        ),
        (
            "/api/v1/batch",
            "post",
            "202",
            "GetBatchJob",
            "get_job",
            json!({"job_id": "$response.body#/job_id"}),
        ),
        (
            "/api/v1/batch",
            "post",
            "200",
            "GetBatchJob",
            "get_job",
            json!({"job_id": "$response.body#/job_id"}),
        ),
        (
            "/api/v1/jobs/{job_id}",
            "get",
            "200",
            "GetJobResult",
            "get_job_result",
            json!({"job_id": "$response.body#/job_id"}),
        ),
        (
            "/api/v1/jobs/{job_id}",
            "get",
            "200",
            "CancelJob",
            "cancel_job",
            json!({"job_id": "$response.body#/job_id"}),
        ),
        (
            "/api/v1/auth/keys",
            "post",
            "201",
            "RevokeKey",
            "revoke_key",
            json!({"id": "$response.body#/id"}),
        ),
        (
            "/api/v1/users",
            "post",
            "201",
            "DisableUser",
            "disable_user",
            json!({"id": "$response.body#/id"}),
        ),
        (
            "/api/v1/models/{name}/versions",
            "post",
            "201",
            "PredictWithModel",
            "predict",
            json!({"name": "$response.body#/model_name"}),
        ),
        (
            "/api/v1/models/{name}/schedule",
            "put",
            "200",
            "GetSchedule",
            "get_schedule",
            json!({"name": "$response.body#/model_name"}),
        ),
    ];
    for (path, method, status, name, operation, parameters) in links {
        let response = &mut doc["paths"][*path][*method]["responses"][*status];
        if response.is_null() {
            // A link from an answer that is not documented is a mistake here.
            panic!("no {status} answer of {method} {path} to link from");
        }
        response["links"][*name] = json!({"operationId": operation, "parameters": parameters});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_not_blank_string_has_the_one_white_space_class() {
        let schemas = &document()["components"]["schemas"];
        for (schema, field) in [
            ("KeyCreate", "name"),
            ("PromoteRequest", "reason"),
            ("StageChangeRequest", "reason"),
        ] {
            assert_eq!(
                schemas[schema]["properties"][field]["pattern"],
                params::NOT_BLANK,
                "{schema}.{field}"
            );
        }
    }
}
