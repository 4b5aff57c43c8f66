//! The schemas of the bodies that carry an algorithm and its parameters (detect, train,
//! batch, schedule), built from detect-core's parameter table, the one the server checks
//! parameters with: a parameter added to the table appears here with its type, default
//! and range.
//!
//! Such a body takes `algorithm` (default `isolation_forest`), `contamination`, and the
//! algorithm's parameters either nested in `parameters` or flat at the top level; any
//! other field is an unknown parameter (422). So each body is a `oneOf` with, for every
//! algorithm, one variant with the parameters flat and one with them nested, each
//! `additionalProperties: false`: exactly one variant matches a body the server accepts
//! (the nested one requires `parameters`, the flat one has no such field; only the
//! isolation forest's variants leave `algorithm` out).

use detect_core::params::{ALGORITHMS, AlgorithmSpec, CONTAMINATION, Domain, Literal, ParamSpec};
use serde_json::{Value, json};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{Ref, RefOr};

/// The schema of one parameter, from its domain and default.
pub(crate) fn parameter(spec: &ParamSpec) -> RefOr<Schema> {
    let nullable = spec.default == Literal::Null;
    let mut alternatives: Vec<Schema> = Vec::new();
    let auto = || {
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["auto"]))
                .build(),
        )
    };
    let integer = |min: u64, max: u64| {
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(min as usize))
                .maximum(Some(max as usize))
                .build(),
        )
    };
    match spec.domain {
        Domain::Integer { min, max } => alternatives.push(integer(min, max)),
        Domain::CountOrFraction { auto: with_auto } => {
            if with_auto {
                alternatives.push(auto());
            }
            alternatives.push(integer(1, u64::MAX));
            alternatives.push(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(0.0))
                    .maximum(Some(1.0))
                    .build(),
            ));
        }
        Domain::Boolean => alternatives.push(Schema::Object(
            ObjectBuilder::new().schema_type(Type::Boolean).build(),
        )),
        Domain::OneOf(names) => alternatives.push(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names.iter().copied()))
                .build(),
        )),
        Domain::NumberAtLeast(min) => alternatives.push(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(min))
                .build(),
        )),
        Domain::AutoOrFractionUpTo(max) => {
            alternatives.push(auto());
            alternatives.push(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(0.0))
                    .maximum(Some(max))
                    .build(),
            ));
        }
        Domain::NumberBetween(min, max) => {
            let mut b = ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(min));
            if max.is_finite() {
                b = b.exclusive_maximum(Some(max));
            }
            alternatives.push(Schema::Object(b.build()));
        }
        Domain::AutoOrInteger { min, max } => {
            alternatives.push(auto());
            alternatives.push(integer(min, max));
        }
        Domain::Fraction => alternatives.push(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0))
                .maximum(Some(1.0))
                .build(),
        )),
    }
    if nullable {
        alternatives.push(Schema::Object(
            ObjectBuilder::new().schema_type(Type::Null).build(),
        ));
    }
    let description = match spec.note {
        Some(note) => format!("{}; {note}", spec.domain.accepted()),
        None => spec.domain.accepted(),
    };
    let default = Some(spec.default.to_json());
    // One alternative is the schema itself; several are `anyOf` (an integer count is also
    // a number, so the alternatives overlap and `oneOf` would reject valid values).
    if alternatives.len() == 1 {
        let Some(Schema::Object(mut only)) = alternatives.pop() else {
            unreachable!("every alternative above is an object schema")
        };
        only.description = Some(description);
        only.default = default;
        return RefOr::T(Schema::Object(only));
    }
    let mut any = AnyOfBuilder::new()
        .description(Some(description))
        .default(default);
    for a in alternatives {
        any = any.item(a);
    }
    RefOr::T(Schema::AnyOf(any.build()))
}

/// The component name of an algorithm's parameters object (`IsolationForestParameters`).
pub(crate) fn parameters_name(algorithm: &AlgorithmSpec) -> String {
    let camel: String = algorithm
        .name
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect();
    // Acronyms as the algorithms' authors write them.
    let camel = match camel.as_str() {
        "Lof" | "Ecod" | "Copod" | "Hbos" | "Knn" | "Pca" | "Gmm" | "Dbscan" | "Inne" | "Mcd"
        | "Cblof" => camel.to_uppercase(),
        _ => camel,
    };
    format!("{camel}Parameters")
}

/// An algorithm's parameters as an object (the `parameters` field): each parameter with its
/// type, default and range; no other names.
pub(crate) fn parameters_object(algorithm: &AlgorithmSpec) -> Schema {
    let mut o = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "The parameters of {} ({}); absent ones take their defaults",
            algorithm.name, algorithm.description
        )))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for p in algorithm.params {
        o = o.property(p.name, parameter(p));
    }
    Schema::Object(o.build())
}

/// `contamination`: `"auto"` or a fraction.
pub(crate) fn contamination() -> RefOr<Schema> {
    parameter(&CONTAMINATION)
}

/// `algorithm` in the variant of `spec`: that name only.
fn algorithm_field(spec: &AlgorithmSpec) -> RefOr<Schema> {
    let mut o = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([spec.name]))
        .description(Some(spec.description));
    if spec.name == detect_core::params::ISOLATION_FOREST.name {
        o = o.default(Some(json!(spec.name)));
    }
    RefOr::T(Schema::Object(o.build()))
}

/// The fields of a body besides the algorithm's: name, schema, required.
pub(crate) type Fields = Vec<(&'static str, RefOr<Schema>, bool)>;

/// The `oneOf` of a body taking `fields` and an algorithm with its parameters (see the
/// module docs): per algorithm, the parameters flat, then nested. `label` starts each
/// variant's title (see [`algorithm_variants`]).
pub(crate) fn with_algorithm(label: &str, description: &str, fields: &Fields) -> Schema {
    let mut one = OneOfBuilder::new().description(Some(description));
    for variant in algorithm_variants(label, fields) {
        one = one.item(variant);
    }
    Schema::OneOf(one.build())
}

/// Every variant of [`with_algorithm`], as object schemas, titled `"{label}: {algorithm},
/// parameters flat|nested"`. Titles are unique across the document (each body, and each
/// shape of a body, has its own label): they tell the variants apart in Swagger UI, and
/// client generators (openapi-python-client) name a class after each.
pub(crate) fn algorithm_variants(label: &str, fields: &Fields) -> Vec<Schema> {
    let mut out = Vec::new();
    for spec in ALGORITHMS {
        for nested in [false, true] {
            let mut o = ObjectBuilder::new()
                .schema_type(Type::Object)
                .title(Some(format!(
                    "{label}: {}, parameters {}",
                    spec.name,
                    if nested { "nested" } else { "flat" }
                )))
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            for (name, schema, required) in fields {
                o = o.property(*name, schema.clone());
                if *required {
                    o = o.required(*name);
                }
            }
            o = o.property("algorithm", algorithm_field(spec));
            if spec.name != detect_core::params::ISOLATION_FOREST.name {
                o = o.required("algorithm");
            }
            o = o.property("contamination", contamination());
            if nested {
                o = o
                    .property(
                        "parameters",
                        RefOr::Ref(Ref::from_schema_name(parameters_name(spec))),
                    )
                    .required("parameters");
            } else {
                for p in spec.params {
                    o = o.property(p.name, parameter(p));
                }
            }
            out.push(Schema::Object(o.build()));
        }
    }
    out
}

/// Rows of finite numbers, all of one length, at least `min_rows` of them.
pub(crate) fn rows(description: &str, min_rows: usize) -> RefOr<Schema> {
    RefOr::T(Schema::Array(
        ArrayBuilder::new()
            .description(Some(description))
            .min_items(Some(min_rows))
            .items(
                ArrayBuilder::new()
                    .min_items(Some(1))
                    .items(ObjectBuilder::new().schema_type(Type::Number)),
            )
            .build(),
    ))
}

/// A string of at least one character (a name: a column, a cron expression), with a
/// description.
pub(crate) fn name(description: &str) -> RefOr<Schema> {
    named(description, None)
}

/// A string of at least one character, with a description and an example.
pub(crate) fn named(description: &str, example: Option<&str>) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .description(Some(description))
            .examples(example)
            .build(),
    ))
}

/// A string with a character that is not white space, as the server's checks (Rust's
/// `trim`: Unicode's White_Space) see it. Spelled out: `\s` differs between the regex
/// dialects that read the document (ECMA counts U+FEFF, Python U+001C–U+001F, neither or
/// not both U+0085). `#[schema(pattern)]` takes only a literal: the routes' copies are
/// checked against this by a test.
pub(crate) const NOT_BLANK: &str =
    "[^\\t\\n\\x0b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// An example data source name (a file in the sources directory).
pub(crate) const SOURCE_EXAMPLE: &str = "events.csv";

/// A data source's name, with a description.
pub(crate) fn source(description: &str) -> RefOr<Schema> {
    named(description, Some(SOURCE_EXAMPLE))
}

/// A string that is one of `names`.
pub(crate) fn choice(names: &[&str], default: Option<&str>, description: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names.iter().copied()))
            .default(default.map(Value::from))
            .description(Some(description))
            .build(),
    ))
}
