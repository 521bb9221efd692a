"""Optuna (TPE) search composed with ASHA, with early-stopped trials told to Optuna as PRUNED.

Ray's OptunaSearch tells Optuna that a trial ASHA stopped is COMPLETE with its truncated, low-budget value, so TPE
learns from values that are not comparable with full runs. Here the scheduler records which trials it stopped
before their full budget, and the searcher tells Optuna those are PRUNED (their reported intermediate values stay,
which is what Optuna's samplers use for pruned trials).
"""
import logging

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)


class EarlyStopLedger:
    """Trial ids a scheduler stopped before their full budget (shared by scheduler, searcher and callbacks)."""

    def __init__(self):
        self.trial_ids: set[str] = set()

    def __contains__(self, trial_id: str) -> bool:
        return trial_id in self.trial_ids


class RecordingASHAScheduler(ASHAScheduler):
    """ASHA that writes every early stop (a STOP before `max_t`) into a ledger."""

    def __init__(self, ledger: EarlyStopLedger, **kwargs):
        super().__init__(**kwargs)
        self.ledger = ledger

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t:
            self.ledger.trial_ids.add(trial.trial_id)
        return decision


class PruningAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna PRUNED for trials in the ledger instead of COMPLETE, and that resumes a killed
    search without repeating or over-running it.

    `budget`: the search's number of trials, counted in the Optuna study, so trials that finished after the
    searcher's last save (Tune's restored state has forgotten them, the study has not) count against it."""

    def __init__(self, ledger: EarlyStopLedger, budget: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.ledger = ledger
        self.budget = budget

    def suggest(self, trial_id: str):
        if self.budget is not None and trial_id not in self._ot_trials and self._ot_study is not None:
            counted = self._ot_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                         TrialState.RUNNING))
            if len(counted) >= self.budget:
                return Searcher.FINISHED
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict):
        if trial_id in self._ot_trials:  # else a trial restored by Tune whose Optuna trial this searcher never saw
            super().on_trial_result(trial_id, result)  # (its saved state was unreadable): nothing to tell Optuna

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self._ot_trials:
            return
        if trial_id not in self.ledger or trial_id in self._completed_trials or error:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        if result and self.metric in result:
            # the result that triggered the stop reaches the searcher only here: keep it as the last
            # intermediate value, which is what Optuna's samplers rank pruned trials by
            ot_trial.report(result[self.metric], result["training_iteration"])
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str):
        """The searcher as last saved; then what happened after that save, and the Tune state does not know, is
        settled with the study."""
        live_ledger = self.ledger  # shared with this run's scheduler and callbacks; the saved one is a copy
        super().restore(checkpoint_path)
        live_ledger.trial_ids |= self.ledger.trial_ids  # early stops recorded before the kill
        self.ledger = live_ledger
        known = {ot_trial.number for ot_trial in self._ot_trials.values()}
        if any(trial.number not in known for trial in self._ot_study.get_trials(deepcopy=False)):
            # trials asked for after the save: the saved sampler would draw their parameters again
            self._ot_study.sampler.reseed_rng()
        self.fail_orphaned_trials()

    def fail_orphaned_trials(self) -> list[int]:
        """A driver killed between asking Optuna for a trial and saving the searcher leaves that Optuna trial RUNNING
        in the study with no Tune trial to finish it (the resumed Tune asks again). Told FAIL on resume, it stops
        counting as a running trial for the sampler and in the dashboard. Returns the trial numbers failed."""
        if self._ot_study is None:
            return []
        live = {ot_trial.number for ot_trial in self._ot_trials.values()}
        orphans = [trial.number for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if trial.number not in live]
        for number in orphans:
            self._ot_study.tell(number, state=TrialState.FAIL)
        if orphans:
            logger.warning("Optuna trials %s were running when the sweep was killed; marked FAIL", orphans)
        return orphans


def optuna_asha_in_sweep(settings, max_t: int, grace_period: int, seed: int, **kwargs):
    """optuna_asha with the study in OUT/<study>/<name>/optuna.db, checked and created before anything starts;
    two trials at a time unless --max-concurrent-trials says otherwise (TPE learns between them)."""
    from sweeps.runner import check_settings

    check_settings(settings)  # before the Optuna study file is created
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    settings.max_concurrent_trials = settings.max_concurrent_trials or 2
    settings.tags.update({"optuna.sampler": f"TPE(seed={seed})", "optuna.storage": "optuna.db",
                          "asha.max_t": str(max_t), "asha.grace_period": str(grace_period),
                          "asha.reduction_factor": "3", "asha.time_attr": "training_iteration (reports)"})
    return optuna_asha(settings.name, f"sqlite:///{settings.out_dir / 'optuna.db'}", max_t, grace_period, seed,
                       **kwargs)


def optuna_asha(
    study_name: str, storage_url: str, max_t: int, grace_period: int, seed: int, reduction_factor: int = 3,
    define_by_run=None, metric: str | None = None, mode: str | None = None, budget: int | None = None,
) -> tuple[PruningAwareOptunaSearch, RecordingASHAScheduler, EarlyStopLedger]:
    """TPE search stored in an RDB (so optuna-dashboard can open it) plus a recording ASHA.

    With a param_space, metric/mode come from the TuneConfig. With a define-by-run space (a function of an Optuna
    trial, for conditional parameters) they must be given here too, or the study silently maximises.
    """
    ledger = EarlyStopLedger()
    storage = optuna.storages.RDBStorage(storage_url)
    extra = {"space": define_by_run, "metric": metric, "mode": mode} if define_by_run else {}
    searcher = PruningAwareOptunaSearch(
        ledger, budget, sampler=optuna.samplers.TPESampler(seed=seed), study_name=study_name, storage=storage,
        **extra
    )
    scheduler = RecordingASHAScheduler(
        ledger, time_attr="training_iteration", max_t=max_t, grace_period=grace_period,
        reduction_factor=reduction_factor,
    )
    return searcher, scheduler, ledger
