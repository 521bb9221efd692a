"""A driver killed between asking Optuna for a trial and saving the searcher leaves that trial RUNNING in the study;
the restored searcher tells it FAIL (nothing will finish it) and leaves the trials it knows alone. Real Optuna on
SQLite, Ray's searcher class without a Ray instance."""
import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import Searcher

from sweeps.optuna_search import optuna_asha


def _searcher(tmp_path, budget=None):
    searcher, _, _ = optuna_asha("orphans", f"sqlite:///{tmp_path / 'optuna.db'}", max_t=4, grace_period=1, seed=0,
                                 budget=budget)
    searcher.set_search_properties("loss", "min", {"x": tune.uniform(0, 1)})
    return searcher


def test_a_trial_asked_after_the_last_save_is_failed_on_restore_and_known_ones_keep_running(tmp_path):
    before_kill = _searcher(tmp_path)
    before_kill.suggest("finished")
    before_kill.on_trial_complete("finished", {"loss": 0.5})
    before_kill.suggest("running")  # restored by Tune and run again under the same id
    before_kill.save(str(tmp_path / "searcher.pkl"))
    before_kill.suggest("asked-after-save")  # the kill lands here: Tune never records this trial

    resumed = _searcher(tmp_path)
    resumed.restore(str(tmp_path / "searcher.pkl"))

    states = [t.state for t in optuna.load_study(study_name="orphans", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
              .get_trials(deepcopy=False)]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL]
    resumed.on_trial_complete("running", {"loss": 0.25})  # the restored trial still finishes as itself
    assert resumed.fail_orphaned_trials() == []  # nothing else to repair; a second pass changes nothing


def test_a_trial_finished_after_the_last_save_counts_and_is_not_drawn_again(tmp_path):
    before_kill = _searcher(tmp_path, budget=3)
    first = before_kill.suggest("first")
    before_kill.on_trial_complete("first", {"loss": 0.5})
    before_kill.ledger.trial_ids.add("stopped-before-kill")  # an early stop ASHA recorded
    before_kill.save(str(tmp_path / "searcher.pkl"))
    lost = before_kill.suggest("lost")  # finished and recorded, but the Tune state saved before it is restored
    before_kill.on_trial_complete("lost", {"loss": 0.4})

    resumed = _searcher(tmp_path, budget=3)
    live_ledger = resumed.ledger
    live_ledger.trial_ids.add("stopped-in-this-run")
    resumed.restore(str(tmp_path / "searcher.pkl"))
    assert resumed.ledger is live_ledger  # still the one this run's scheduler and callbacks hold
    assert live_ledger.trial_ids == {"stopped-in-this-run", "stopped-before-kill"}
    third = resumed.suggest("third")
    assert third not in (first, lost)  # the restored sampler does not draw the lost trial's parameters again
    resumed.on_trial_complete("third", {"loss": 0.3})
    assert resumed.suggest("fourth") == Searcher.FINISHED  # the lost trial counted: 3 trials, the budget
