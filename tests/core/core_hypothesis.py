"""Hypothesis settings for the core tests: modest runs (the core and CLI suites stay fast), no
deadline (a real SQLite store is slower on a loaded box), and examples may share the test's
store fixture (the tests clean up between examples themselves)."""

from hypothesis import HealthCheck, settings

core = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
