"""The pydantic models against the live server's OpenAPI document, so they cannot drift:
the same field names, the same required fields, and every value an enum allows.

The document is generated from the server's types: bodies that carry an algorithm are a
`oneOf` with one closed variant per algorithm and parameter shape (flat or nested), so a
model is compared with the union of the variants' fields less the algorithms' own
parameters (which the models take as `parameters` or extra keyword arguments), and the
fields every variant requires."""

from __future__ import annotations

import typing
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from conftest import Server
from pynomaly import models

REQUESTS: dict[type[BaseModel], str] = {
    models.DetectionRequest: "DetectRequest",
    models.BatchDetectionRequest: "BatchRequest",
    models.TrainingRequest: "TrainRequest",
    models.PredictionRequest: "PredictRequest",
    models.StageChangeRequest: "StageChangeRequest",
    models.PromoteRequest: "PromoteRequest",
}
RESPONSES: dict[type[BaseModel], str] = {
    models.DetectionResult: "Detection",
    models.JobAccepted: "JobAccepted",
    models.JobStatus: "Job",
    models.JobList: "JobList",
    models.ModelInfo: "ModelVersion",
    models.TrainingResult: "TrainedVersion",
    models.StageChangeResult: "StageChange",
    models.ModelList: "ModelList",
    models.ModelVersions: "ModelVersions",
    models.HealthStatus: "Health",
    models.Token: "Token",
    models.Lineage: "Lineage",
    models.Promotion: "Promotion",
    models.StageEvent: "StageEvent",
}


@pytest.fixture(scope="module")
def schemas(server: Server) -> dict[str, Any]:
    document = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    found: dict[str, Any] = document["components"]["schemas"]
    # Nested objects, by their place in the document.
    found["#ModelSummary"] = found["ModelList"]["properties"]["models"]["items"]
    found["#JobProgress"] = found["Job"]["properties"]["progress"]
    return found


def resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def algorithm_parameters(schemas: dict[str, Any]) -> set[str]:
    """Every algorithm's own parameter names (the `*Parameters` objects)."""
    names: set[str] = set()
    for name, schema in schemas.items():
        if name.endswith("Parameters"):
            names |= set(schema.get("properties", {}))
    return names


def flatten(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Properties and required names, following `allOf`, `oneOf` and `$ref`."""
    schema = resolve(schema, schemas)
    properties: dict[str, Any] = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        sub = flatten(part, schemas)
        properties.update(sub["properties"])
        required |= sub["required"]
    if "oneOf" in schema:
        variants = [flatten(v, schemas) for v in schema["oneOf"]]
        own = algorithm_parameters(schemas)
        for v in variants:
            for name, prop in v["properties"].items():
                if name in own:
                    continue
                # The union of the variants' enums (e.g. one algorithm name each).
                prop = resolve(prop, schemas)
                if name in properties and "enum" in prop and "enum" in properties[name]:
                    merged = list(properties[name]["enum"]) + [e for e in prop["enum"] if e not in properties[name]["enum"]]
                    prop = {**prop, "enum": merged}
                properties[name] = prop
        required |= set.intersection(*(v["required"] for v in variants))
    return {"properties": properties, "required": required}


def enum_of(prop: dict[str, Any], schemas: dict[str, Any]) -> list[Any] | None:
    """The values an enum allows, through `$ref`, `anyOf`/`oneOf` and nullable types."""
    prop = resolve(prop, schemas)
    if "enum" in prop:
        return [v for v in prop["enum"] if v is not None]
    for key in ("anyOf", "oneOf"):
        for alt in prop.get(key, []):
            found = enum_of(alt, schemas)
            if found:
                return found
    return None


def fields(model: type[BaseModel]) -> dict[str, Any]:
    return {(f.alias or name): f for name, f in model.model_fields.items()}


def literal_values(annotation: Any) -> set[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    values: set[Any] = set()
    for arg in typing.get_args(annotation):
        values |= literal_values(arg)
    return values


def compare(model: type[BaseModel], schema_name: str, schemas: dict[str, Any], request: bool) -> None:
    schema = flatten(schemas[schema_name], schemas)
    ours = fields(model)
    assert set(ours) == set(schema["properties"]), (model.__name__, schema_name)
    required = {name for name, f in ours.items() if f.is_required()}
    if request:
        assert required == schema["required"], (model.__name__, required, schema["required"])
    elif schema["required"]:
        assert required <= schema["required"], (model.__name__, required - schema["required"])
    for name, prop in schema["properties"].items():
        enum = enum_of(prop, schemas)
        allowed = literal_values(ours[name].annotation)
        if enum and allowed:
            assert set(enum) <= allowed, (model.__name__, name, enum, allowed)


@pytest.mark.parametrize("model", list(REQUESTS), ids=lambda m: m.__name__)
def test_request_models_match_the_servers_schemas(model: type[BaseModel], schemas: dict[str, Any]) -> None:
    compare(model, REQUESTS[model], schemas, request=True)


@pytest.mark.parametrize("model", list(RESPONSES), ids=lambda m: m.__name__)
def test_response_models_match_the_servers_schemas(model: type[BaseModel], schemas: dict[str, Any]) -> None:
    compare(model, RESPONSES[model], schemas, request=False)


def test_nested_objects_match(schemas: dict[str, Any]) -> None:
    compare(models.ModelSummary, "#ModelSummary", schemas, request=False)
    compare(models.JobProgress, "#JobProgress", schemas, request=False)


def test_every_schema_of_a_modelled_route_is_covered(schemas: dict[str, Any]) -> None:
    """A schema the client sends or reads that no model covers is a new one to model."""
    covered = set(REQUESTS.values()) | set(RESPONSES.values())
    client_side = {
        "DetectRequest", "BatchRequest", "TrainRequest", "PredictRequest", "StageChangeRequest",
        "Detection", "JobAccepted", "Job", "JobList", "ModelVersion", "StageChange",
        "ModelList", "ModelVersions", "Health", "Token", "Lineage", "Promotion", "StageEvent",
        "TrainedVersion",
    }
    assert client_side <= covered
    assert client_side <= set(schemas)
