"""The pages' tests use the HTTP daemon fixtures of tests/http."""

from tests.http.conftest import http, http_install  # noqa: F401 - fixtures
