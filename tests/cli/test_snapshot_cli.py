"""`sender snapshot history`: the endpoint's own rows, oldest first, with sparklines."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from daemons.core import domain
from daemons.core.install import Install
from sender_cli.app import app
from sender_cli.commands.snapshot import BARS, sparkline


def test_sparkline_scales_to_the_largest_value():
    assert sparkline([0, 5, 10]) == BARS[0] + BARS[len(BARS) // 2] + BARS[-1]
    assert sparkline([0, 0]) == BARS[0] * 2 and sparkline([]) == ""


def test_history_lists_the_endpoints_own_rows_oldest_first(config_path):
    inst = Install.load(config_path)
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "edge1", type="tribes_edge")
        for viewers in (1, 4, 9):
            domain.snapshots.record(store, {"endpoint_id": "edge1", "status": "healthy", "viewers": viewers,
                                            "ingress_bps": 1000 * viewers}, history_limit=100)
        domain.snapshots.record(store, {"endpoint_id": "edge1", "generation_id": "gen_x", "status": "healthy", "viewers": 99},
                                history_limit=100)
    runner = CliRunner()
    env = {"SENDER_CONFIG": str(config_path)}
    rows = json.loads(runner.invoke(app, ["snapshot", "history", "edge1", "--json"], env=env).stdout)
    assert [r["viewers"] for r in rows] == [1, 4, 9]  # the generation's row is not the endpoint's own
    human = runner.invoke(app, ["snapshot", "history", "edge1"], env=env)
    assert human.exit_code == 0
    assert "3 snapshots" in human.stdout and sparkline([1, 4, 9]) in human.stdout and "now 9, max 9" in human.stdout
    missing = runner.invoke(app, ["snapshot", "history", "nope"], env=env)
    assert missing.exit_code == 1 and "no endpoint 'nope'" in missing.stderr
