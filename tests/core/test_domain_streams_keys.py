"""Streams (slugs, soft delete) and stream keys (shown once, verifier only, verify/revoke)."""

from __future__ import annotations

import hashlib
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.core_hypothesis import core

from daemons.core import domain
from daemons.core.errors import Conflict, InvalidInput, NotFound
from daemons.core.store import Store

SLUG_CHARS = string.ascii_lowercase + string.digits + "-"


def is_valid_slug(text: object) -> bool:
    """The slug rule, written independently of the code under test."""
    return (
        isinstance(text, str)
        and 1 <= len(text) <= 64
        and all(c in SLUG_CHARS for c in text)
        and text[0] != "-"
        and text[-1] != "-"
    )


valid_slugs = st.text(alphabet=SLUG_CHARS, min_size=1, max_size=64).filter(is_valid_slug)


# --- slugs --------------------------------------------------------------------------------------


@core
@given(slug=valid_slugs)
def test_valid_slugs_are_accepted(store, slug):
    row = domain.streams.create(store, slug)
    try:
        assert row["slug"] == slug
        assert domain.streams.get(store, slug)["id"] == row["id"]
    finally:
        domain.streams.delete(store, row["id"])


@core
@given(text=st.one_of(st.text(max_size=80), st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2)))
def test_arbitrary_slugs_are_accepted_or_rejected_with_invalid_input_only(store, text):
    try:
        row = domain.streams.create(store, text)
    except InvalidInput as e:
        assert not is_valid_slug(text)
        assert "slug" in e.message
        assert store.one("SELECT count(*) AS n FROM streams WHERE deleted_at IS NULL")["n"] == 0
    else:
        assert is_valid_slug(text)
        domain.streams.delete(store, row["id"])


@pytest.mark.parametrize(
    "slug", ["", "-a", "a-", "A", "caps-Slug", "with space", "ünï", "a/b", "a.b", "a_b", "x" * 65, "a\n", "\x00"]
)
def test_bad_slugs(store, slug):
    with pytest.raises(InvalidInput, match="slug"):
        domain.streams.create(store, slug)
    assert domain.streams.list_(store, include_deleted=True) == []


def test_stream_fields_and_default_renditions(store):
    row = domain.streams.create(store, "demo", title="Demo night", visibility="unlisted", auto_start=False)
    assert row["slug"] == "demo" and row["title"] == "Demo night"
    assert row["visibility"] == "unlisted" and row["auto_start"] is False
    assert row["deleted_at"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["created_at"])
    assert row["created_at"] == row["updated_at"]
    assert [r["name"] for r in domain.renditions.list_(store, row["id"])] == ["source"]
    assert domain.streams.get(store, row["id"]) == row  # by id as well as by slug
    assert domain.streams.create(store, "untitled")["title"] == "untitled"


def test_create_with_a_ladder(store):
    ladder = [{"name": "source", "kind": "source"},
              {"name": "480p", "kind": "transcode", "height": 480, "video_bitrate": 1_200_000}]
    row = domain.streams.create(store, "ladder", ladder=ladder)
    names = {r["name"] for r in domain.renditions.list_(store, row["id"])}
    assert names == {"source", "480p"}


def test_create_with_a_bad_ladder_creates_nothing(store):
    ladder = [{"name": "source", "kind": "source"}, {"name": "480p", "kind": "transcode"}]
    with pytest.raises(InvalidInput, match="480p"):
        domain.streams.create(store, "ladder", ladder=ladder)
    assert store.query("SELECT * FROM streams") == [] and store.query("SELECT * FROM renditions") == []
    assert domain.streams.create(store, "ladder")["slug"] == "ladder"  # the slug was never taken


def test_bad_visibility_and_title(store):
    with pytest.raises(InvalidInput, match="visibility 'secret'"):
        domain.streams.create(store, "a", visibility="secret")
    with pytest.raises(InvalidInput, match="title"):
        domain.streams.create(store, "a", title="line\nbreak")
    with pytest.raises(InvalidInput, match="title"):
        domain.streams.create(store, "a", title="x" * 201)
    assert domain.streams.list_(store, include_deleted=True) == []


def test_slug_is_unique_among_streams_not_deleted(store):
    first = domain.streams.create(store, "demo")
    with pytest.raises(Conflict, match="'demo'"):
        domain.streams.create(store, "demo")
    assert len(domain.streams.list_(store)) == 1

    domain.streams.delete(store, "demo")
    again = domain.streams.create(store, "demo")  # the slug is free once deleted
    assert again["id"] != first["id"]
    assert domain.streams.get(store, "demo")["id"] == again["id"]
    assert [s["id"] for s in domain.streams.list_(store)] == [again["id"]]
    assert {s["id"] for s in domain.streams.list_(store, include_deleted=True)} == {first["id"], again["id"]}
    # The old one is still there by id, marked deleted.
    assert domain.streams.get(store, first["id"], include_deleted=True)["deleted_at"]
    with pytest.raises(NotFound):
        domain.streams.get(store, first["id"])


def test_update_stamps_updated_only_when_something_changed(store):
    row = domain.streams.create(store, "demo")
    same = domain.streams.update(store, "demo", title="demo", visibility="public", auto_start=True)
    assert same == row
    changed = domain.streams.update(store, "demo", title="New", auto_start=False)
    assert changed["title"] == "New" and changed["auto_start"] is False
    assert changed["updated_at"] >= row["updated_at"]
    assert changed["created_at"] == row["created_at"]


def test_rename_respects_uniqueness(store):
    domain.streams.create(store, "a")
    domain.streams.create(store, "b")
    with pytest.raises(Conflict, match="'b'"):
        domain.streams.update(store, "a", slug="b")
    with pytest.raises(InvalidInput):
        domain.streams.update(store, "a", slug="B!")
    renamed = domain.streams.update(store, "a", slug="c")
    assert renamed["slug"] == "c"
    with pytest.raises(NotFound):
        domain.streams.get(store, "a")


def test_missing_stream_errors(store):
    for call in (
        lambda: domain.streams.get(store, "nope"),
        lambda: domain.streams.update(store, "nope", title="x"),
        lambda: domain.streams.delete(store, "nope"),
    ):
        with pytest.raises(NotFound, match="'nope'"):
            call()
    with pytest.raises(InvalidInput):
        domain.streams.get(store, "")


# --- keys ---------------------------------------------------------------------------------------


def _all_text_in_store(store: Store) -> str:
    """Every value of every row of every table (and every index/schema text), as one string."""
    parts = []
    for table in store.db.table_names():
        for row in store.db[table].rows:
            parts.extend(repr(v) for v in row.values())
            parts.extend(v.decode("latin-1") for v in row.values() if isinstance(v, bytes))
    parts.extend(r["sql"] or "" for r in store.query("SELECT sql FROM sqlite_master"))
    return "\n".join(parts)


def test_key_form_and_randomness(store, secret):
    domain.streams.create(store, "demo")
    row, key = domain.keys.create(store, secret, "demo", label="studio")
    prefix, _, secret_part = key.partition("_")
    assert prefix == row["prefix"]
    assert re.fullmatch(r"[A-Za-z0-9]+", prefix)
    # ≥ 128 bits of randomness in the secret part alone (URL-safe base64: 6 bits per character).
    assert re.fullmatch(r"[A-Za-z0-9_-]+", secret_part)
    assert len(secret_part) * 6 >= 128
    assert row["stream"] == "demo" and row["label"] == "studio"
    assert "verifier" not in row and secret_part not in repr(row)
    # Keys differ every time, in both parts.
    keys = [domain.keys.create(store, secret, "demo")[1] for _ in range(20)]
    assert len({k.split("_", 1)[0] for k in keys}) == 20
    assert len({k.split("_", 1)[1] for k in keys}) == 20
    # The secret parts use the alphabet evenly enough to be random (not, say, hex of a counter).
    chars = "".join(k.split("_", 1)[1] for k in keys)
    assert len(set(chars)) > 40


def test_key_is_not_stored_anywhere(store, secret, install_dir):
    domain.streams.create(store, "demo")
    row, key = domain.keys.create(store, secret, "demo")
    secret_part = key.split("_", 1)[1]
    assert domain.keys.verify(store, secret, key).ok
    text = _all_text_in_store(store)
    assert row["prefix"] in text  # the search does see the key table
    assert key not in text and secret_part not in text
    stored = store.one("SELECT verifier FROM stream_keys WHERE id = ?", (row["id"],))["verifier"]
    assert stored != hashlib.sha256(key.encode()).hexdigest()  # keyed, not a plain hash
    store.close()
    for path in install_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key.encode() not in data and secret_part.encode() not in data, path


def test_verify_outcomes(store, secret):
    domain.streams.create(store, "demo")
    row, key = domain.keys.create(store, secret, "demo")
    ok = domain.keys.verify(store, secret, key)
    assert (ok.ok, ok.reason, ok.key_id, ok.stream["slug"]) == (True, "ok", row["id"], "demo")
    assert store.one("SELECT last_used_at FROM stream_keys WHERE id = ?", (row["id"],))["last_used_at"]

    prefix, secret_part = key.split("_", 1)
    wrong_secret = f"{prefix}_{'A' * len(secret_part)}"
    unknown_prefix = f"sk{'0' * (len(prefix) - 2)}_{secret_part}"
    for presented in (wrong_secret, unknown_prefix):
        check = domain.keys.verify(store, secret, presented)
        assert (check.ok, check.reason, check.stream) == (False, "unknown", None)
    # The right key under another install's secret is unknown too.
    assert domain.keys.verify(store, b"another-install-secret-0123456789abcdef", key).reason == "unknown"

    for malformed in ("", "demo", key + "x", key[:-1], f"{prefix}-{secret_part}", key.upper(), " " + key, "_" * 45):
        assert domain.keys.verify(store, secret, malformed).reason == "malformed", malformed


def test_verify_without_touch_leaves_last_used(store, secret):
    domain.streams.create(store, "demo")
    row, key = domain.keys.create(store, secret, "demo")
    assert domain.keys.verify(store, secret, key, touch=False).ok
    assert store.one("SELECT last_used_at FROM stream_keys WHERE id = ?", (row["id"],))["last_used_at"] is None


@core
@given(text=st.text(max_size=60))
def test_verify_of_arbitrary_text_never_raises(store, secret, text):
    check = domain.keys.verify(store, secret, text, touch=False)
    assert not check.ok and check.reason in ("malformed", "unknown")


def test_revoke_is_idempotent_and_stops_the_key(store, secret):
    domain.streams.create(store, "demo")
    row, key = domain.keys.create(store, secret, "demo")
    _, other = domain.keys.create(store, secret, "demo")
    first = domain.keys.revoke(store, row["id"])
    assert first["revoked_at"] and "verifier" not in first and first["stream"] == "demo"
    second = domain.keys.revoke(store, row["prefix"])  # by prefix as well as id; keeps the first time
    assert second == first
    assert domain.keys.verify(store, secret, key).reason == "revoked"
    assert domain.keys.verify(store, secret, other).ok  # the stream's other key still works
    with pytest.raises(NotFound, match="'key_nope'"):
        domain.keys.revoke(store, "key_nope")


def test_key_for_missing_or_deleted_stream(store, secret):
    with pytest.raises(NotFound):
        domain.keys.create(store, secret, "nope")
    domain.streams.create(store, "gone")
    domain.streams.delete(store, "gone")
    with pytest.raises(NotFound):
        domain.keys.create(store, secret, "gone")
    assert store.query("SELECT * FROM stream_keys") == []


def test_list_keys_never_shows_verifiers(store, secret):
    domain.streams.create(store, "a")
    domain.streams.create(store, "b")
    domain.keys.create(store, secret, "a")
    domain.keys.create(store, secret, "b")
    all_keys = domain.keys.list_(store)
    assert [k["stream"] for k in all_keys] == ["a", "b"]
    assert all("verifier" not in k for k in all_keys)
    assert [k["stream"] for k in domain.keys.list_(store, "b")] == ["b"]


def test_soft_delete_stops_keys_and_ends_generations(store, secret):
    stream = domain.streams.create(store, "demo")
    _, key = domain.keys.create(store, secret, "demo")
    gen, created = domain.streams.start(store, "demo")
    assert created
    domain.generations.mark_live(store, gen["id"])

    deleted = domain.streams.delete(store, "demo")
    assert deleted["deleted_at"] and deleted["id"] == stream["id"]
    check = domain.keys.verify(store, secret, key)
    assert (check.ok, check.reason, check.stream["id"]) == (False, "stream_deleted", stream["id"])
    ended = domain.generations.get(store, gen["id"])
    assert ended["status"] == "ended" and ended["ended_at"] == deleted["deleted_at"]
    assert domain.generations.active(store, stream["id"]) is None
    assert domain.keys.list_(store) == []  # keys of deleted streams are not listed
    # The row stays for history; a new stream with the slug gets none of the old keys.
    domain.streams.create(store, "demo")
    assert domain.keys.verify(store, secret, key).reason == "stream_deleted"
    assert domain.keys.list_(store, "demo") == []

