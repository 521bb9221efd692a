"""Progress lines of running trials: budget share, rate and the time left it implies."""
from sweeps.progress_text import duration, trial_progress


def test_time_left_follows_the_rate_of_the_last_interval():
    metrics = {"eval/kl": 12.34, "train/loss": 3.0, "status": "running"}
    line = trial_progress(1500, 30_000, 25.0, metrics, ("eval/jsd", "eval/kl", "train/loss"))
    # (30,000 − 1,500) / 25 per second = 1,140 s = 19 min; the study's progress metrics, where reported
    assert line == "step 1500/30000 (5%), 25 steps/s, ~19 min left, eval/kl 12.34, train/loss 3"


def test_finished_budget_and_unknown_rate_leave_out_the_estimate():
    assert trial_progress(60, 60, 10.0, {}) == "step 60/60 (100%), 10 steps/s"
    assert trial_progress(30, 60, 0.0, {}) == "step 30/60 (50%)"
    assert trial_progress(30, 0, 0.0, {}) == "step 30"


def test_durations_read_in_the_unit_a_person_would_use():
    assert [duration(s) for s in (45, 1_140, 8_280)] == ["45 s", "19 min", "2.3 h"]
