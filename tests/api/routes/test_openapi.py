"""The OpenAPI document as a client developer reads it: every JSON answer has an example, and
every example is valid against its own model."""

from __future__ import annotations

from pydantic import BaseModel

from api.main import create_app
from api.routes import models as model_routes
from api.routes import uploads
from budgetprune import schemas


def _ref(schema: dict) -> str | None:
    ref = schema.get("$ref") or next(
        (s.get("$ref") for s in schema.get("anyOf", []) if "$ref" in s), None
    )
    return ref.rsplit("/", 1)[1] if ref else None


def test_every_json_answer_and_request_body_has_an_example(settings):
    doc = create_app(settings).openapi()
    components = doc["components"]["schemas"]
    missing = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            bodies = [op.get("requestBody", {})] + [
                r for code, r in op.get("responses", {}).items() if code.startswith("2")
            ]
            for body in bodies:
                schema = body.get("content", {}).get("application/json", {}).get("schema", {})
                name = _ref(schema)
                if name and "examples" not in components[name]:
                    missing.append(f"{method.upper()} {path}: {name}")
    assert missing == []


def test_examples_validate_against_their_models():
    found = 0
    for module in (schemas, model_routes, uploads):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
                for example in obj.model_json_schema().get("examples", []):
                    obj.model_validate(example)
                    found += 1
    assert found >= 10
