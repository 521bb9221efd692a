"""A listed grid's trials all wait for resources at once (Tune's default under a custom search: one at a time, so
trials start one after another and short ones all land on the first node: tests/cluster/test_multi_node.py)."""
import os

from ray.tune.execution.tune_controller import _get_max_pending_trials

from sweeps.listed_search import listed_trials
from sweeps.runner import PENDING_TRIALS_VARIABLE, listed_grid_pending_at_once


def test_tune_lets_every_trial_of_a_listed_grid_wait_for_resources_at_once_and_only_while_it_runs(monkeypatch):
    monkeypatch.delenv(PENDING_TRIALS_VARIABLE, raising=False)
    grid = listed_trials([{"beta": b} for b in (0.5, 1, 2, 4, 8)])
    assert _get_max_pending_trials(grid) == 1  # Tune's own rule for a search that is not its grid generator
    with listed_grid_pending_at_once(grid):
        assert _get_max_pending_trials(grid) == 5
    assert PENDING_TRIALS_VARIABLE not in os.environ


def test_a_pending_trials_limit_the_user_set_wins(monkeypatch):
    monkeypatch.setenv(PENDING_TRIALS_VARIABLE, "2")
    grid = listed_trials([{"beta": b} for b in (0.5, 1, 2, 4, 8)])
    with listed_grid_pending_at_once(grid):
        assert _get_max_pending_trials(grid) == 2
    assert os.environ[PENDING_TRIALS_VARIABLE] == "2"
