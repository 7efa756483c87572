"""The payload models (daemons/http/schemas.py): a body that breaks one member of its model, in any
way hypothesis finds (a wrong type, a value outside an enum or a pattern, an unknown member, a
missing one), is refused naming that member — by the model alone, and over real HTTP by the
management API and the telemetry route on 127.0.0.1."""

from __future__ import annotations

import json

import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemons.http import management, schemas
from tests.http.test_management import PATH, add_token, bearer

# --- values from a model's JSON Schema: a valid one, and one broken at a known member ------------

_SAMPLES = {
    "string": st.text(max_size=5),
    "integer": st.integers(-10, 10),
    "number": st.floats(-1e6, 1e6).filter(lambda x: x != int(x)),
    "boolean": st.booleans(),
    "null": st.none(),
    "array": st.lists(st.integers(0, 3), max_size=2),
    "object": st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=2),
}
_MEMBER = st.from_regex(r"[a-z]{1,8}", fullmatch=True)


def _types(node: dict) -> set[str] | None:
    """The JSON types a schema admits (None: it does not say)."""
    if "anyOf" in node:
        branches = [_types(b) for b in node["anyOf"]]
        return None if None in branches else set().union(*branches)
    if "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        return {"string" if isinstance(v, str) else "integer" for v in values}
    kind = node.get("type")
    if kind is None:
        return None
    kinds = {kind} if isinstance(kind, str) else set(kind)
    return kinds | {"integer"} if "number" in kinds else kinds


def valid(node: dict) -> st.SearchStrategy:
    """The smallest values the schema admits: objects with their required members only."""
    plain = next((b for b in node.get("anyOf", ()) if b != {"type": "null"}), node)
    if "enum" in plain or "const" in plain:
        return st.sampled_from(plain.get("enum", [plain.get("const")]))
    kind = plain.get("type")
    if kind == "object":
        required = {k: valid(plain["properties"][k]) for k in plain.get("required", ())}
        return st.fixed_dictionaries(required)
    if kind == "array":
        return st.lists(valid(plain["items"]), min_size=plain.get("minItems", 0), max_size=max(plain.get("minItems", 0), 1))
    if kind == "string":
        if "pattern" in plain:
            return st.from_regex(plain["pattern"].removeprefix("^").removesuffix("$"), fullmatch=True)
        return st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=plain.get("minLength", 0),
                       max_size=min(plain.get("maxLength", 8), 8))
    if kind == "integer":
        return st.integers(plain.get("minimum", 0), plain.get("maximum", 1000))
    if kind == "number":
        return st.floats(0, 1)
    if kind == "boolean":
        return st.booleans()
    return st.none()


def wrong(node: dict) -> st.SearchStrategy:
    """A value the schema refuses."""
    allowed = _types(node)
    options = [s for t, s in _SAMPLES.items() if allowed is not None and t not in allowed]
    plain = next((b for b in node.get("anyOf", ()) if b != {"type": "null"}), node)
    if "enum" in plain or "const" in plain:
        options.append(st.just("not-a-choice"))
    if "pattern" in plain:
        options.append(st.just("Not Valid!"))
    if "maxLength" in plain:
        options.append(st.just("x" * (plain["maxLength"] + 1)))
    return st.one_of(options)


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


@st.composite
def broken(draw, schema: dict, path: str = "") -> tuple[object, str]:
    """(a value valid but for one member, that member's path)."""
    value = draw(valid(schema))
    properties = schema.get("properties", {})
    ways = ["unknown"] + (["missing"] if schema.get("required") else []) + (["member"] if properties else [])
    way = draw(st.sampled_from(ways))
    if way == "unknown":
        member = draw(_MEMBER.filter(lambda m: m not in properties))
        return {**value, member: 1}, _join(path, member)
    if way == "missing":
        member = draw(st.sampled_from(schema["required"]))
        return {k: v for k, v in value.items() if k != member}, _join(path, member)
    member = draw(st.sampled_from(sorted(properties)))
    node = properties[member]
    where = _join(path, member)
    items = node.get("items", {})
    if node.get("type") == "object" and node.get("properties") and draw(st.booleans()):
        inner, field = draw(broken(node, where))
    elif items.get("type") == "object" and draw(st.booleans()):  # one item of an array of objects
        item, field = draw(broken(items, f"{where}[0]"))
        inner = [item]
    else:
        inner, field = draw(wrong(node)), where
    return {**value, member: inner}, field


MODELS = [m.params for m in management.METHODS.values()] + [
    schemas.PlayerEventBatch, schemas.ExternalSnapshot, schemas.ExternalSnapshots, schemas.Call]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_broken_member_is_named_by_the_model(data):
    model = data.draw(st.sampled_from(MODELS))
    schema = schemas.schema_of(model)
    value = data.draw(valid(schema))
    assert schemas.check(model, value) == value  # the valid ones pass as they are
    body, field = data.draw(broken(schema))
    try:
        schemas.check(model, body)
    except schemas.Invalid as e:
        assert (e.field, model) == (field, model), (body, e.message)
        assert e.message
    else:
        raise AssertionError(f"{model.__name__} took {body!r}")


def test_not_an_object_names_no_field():
    for model in MODELS:
        for body in ([], "x", 1, None):
            try:
                schemas.check(model, body)
            except schemas.Invalid as e:
                assert e.field is None and e.message.startswith("the body must be an object")
            else:
                raise AssertionError(body)


# --- the same over real HTTP ---------------------------------------------------------------------


async def test_a_broken_management_call_names_the_param_over_http(http):
    token = add_token(http.install)
    calls = st.sampled_from(list(management.METHODS.values())).flatmap(
        lambda m: broken(m.describe()["params"]).map(lambda b: (m.name, *b)))

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(call=calls)
    def post(client, call):
        name, params, field = call
        r = client.post(PATH, json={"jsonrpc": "2.0", "method": name, "params": params, "id": 1}, headers=bearer(token))
        assert r.status_code == 400, (name, params, r.text)
        error = r.json()["error"]
        assert (error["code"], error["data"]) == (management.INVALID_PARAMS, {"field": field, "type": "invalid_input"}), \
            (name, params, error)

    def run():
        with httpx.Client(base_url=http.base_url, timeout=30) as client:
            post(client)

    await trio.to_thread.run_sync(run)


async def test_a_broken_telemetry_batch_names_the_member_over_http(http):
    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(batch=broken(schemas.schema_of(schemas.PlayerEventBatch)))
    def post(client, batch):
        body, field = batch
        r = client.post("/api/player/events", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
        schemas.check(schemas.Error, r.json())

    def run():
        with httpx.Client(base_url=http.base_url, timeout=30) as client:
            post(client)

    await trio.to_thread.run_sync(run)
