"""/openapi.json says what this server does: its own models, every status code an operation can
answer with the error body, links from a create to the new object; never FastAPI's unused 422."""

from __future__ import annotations

from fastapi.testclient import TestClient

from webapp.api.responses import ALWAYS

V1 = ("/v1/videos", "/v1/batches", "/v1/queue")


def _model_enums(node) -> list[list[str]]:
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "model" in node["properties"]:
            model = node["properties"]["model"]
            found.append(next(v["enum"] for v in model.get("anyOf", [model]) if "enum" in v))
        for value in node.values():
            found += _model_enums(value)
    elif isinstance(node, list):
        for value in node:
            found += _model_enums(value)
    return found


def test_request_schemas_offer_the_models_this_server_runs(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    enums = _model_enums(doc["paths"])
    assert len(enums) >= 4 and all(e == ["tiny"] for e in enums)  # embedded, nothing synced: tiny only
    models = client.app.state.settings.models_path
    (models / "mochi-1-preview").mkdir(parents=True)
    (models / "mochi-1-preview" / "READY").write_text("{}")
    assert all(e == ["tiny", "mochi-1-preview"] for e in _model_enums(client.get("/openapi.json").json()["paths"]))


def test_every_v1_operation_documents_its_errors(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    ops = [(path, method, op) for path, item in doc["paths"].items() if path.startswith(V1)
           for method, op in item.items()]
    assert len(ops) == 15
    for path, method, op in ops:
        codes = set(op["responses"])
        assert "422" not in codes and {str(c) for c in ALWAYS} <= codes, (path, method, codes)
        for code in codes - {"200", "206", "302"}:
            assert op["responses"][code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"}, (path, method, code)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    content = doc["paths"]["/v1/videos/{video_id}/content"]["get"]["responses"]
    assert {"206", "302", "409", "416"} <= set(content)


def test_a_create_links_to_its_object(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    links = doc["paths"]["/v1/videos"]["post"]["responses"]["200"]["links"]
    assert links["Content"] == {"operationRef": "#/paths/~1v1~1videos~1{video_id}~1content/get",
                                "parameters": {"video_id": "$response.body#/id"}}
    assert set(doc["paths"]["/v1/batches"]["post"]["responses"]["200"]["links"]) == {"Retrieve", "Content", "Cancel"}
