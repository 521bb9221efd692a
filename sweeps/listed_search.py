"""Tune's search algorithm for a listed grid: exactly the given trial configs, in their order, each under a trial
id fixed by its position.

Tune's own way to list points (BasicVariantGenerator's points_to_evaluate) walks into list values as if they were
nested parameters, and a population trial's config holds lists (its β and seeds); this hands each config to Tune as
it is. Its position and id prefix are part of the sweep's saved state, so a resumed sweep suggests only what it had
not, and a trial the driver started but Tune had not yet saved when the driver died comes back under its own id: its
MLflow child run and journal lines are found again instead of left behind.
"""
import glob
import os
import pickle
import uuid

from ray.tune.search import Searcher, SearchGenerator

from sweeps.tune_state import saved_trial_ids

POSITION_DIGITS = 5  # a trial id is the sweep's prefix and the config's position: abcde_00003


def listed_trials(configs: list[dict]) -> "ListedTrials":
    return ListedTrials(ListedConfigs(configs))


class ListedTrials(SearchGenerator):
    def create_trial_if_possible(self, experiment_spec: dict):
        trial = super().create_trial_if_possible(experiment_spec)
        if trial is not None:  # Tune drew a random id: the position's instead
            trial.trial_id = f"{self.searcher.prefix}{self.searcher.next - 1:0{POSITION_DIGITS}d}"
        return trial

    def has_checkpoint(self, dirpath: str) -> bool:
        return True  # without a readable saved position, restore_from_dir takes it from the saved trials

    def restore_from_dir(self, dirpath: str) -> None:
        saved = saved_trial_ids(dirpath)
        if super().has_checkpoint(dirpath) and self.searcher.has_checkpoint(dirpath):
            super().restore_from_dir(dirpath)  # the list, its id prefix and what was skipped
        elif saved:  # a search state cut short and set aside (sweeps/tune_state.py): the prefix is the saved trials'
            self.searcher.prefix = saved[0][:-POSITION_DIGITS]
        # the list's next position follows the trials Tune saved, whose ids carry their positions, whatever the saved
        # position says (or where it was cut short, set aside by sweeps/tune_state.py, or never written): a trial
        # handed out after Tune's last experiment-state write (the driver died, the disk filled) would otherwise
        # never run, and the resumed sweep would end short, saying done
        positions = [int(trial_id[len(self.searcher.prefix):]) for trial_id in saved
                     if trial_id.startswith(self.searcher.prefix)]
        self.searcher.next = self._counter = max(positions, default=-1) + 1
        self._finished = self.searcher.next >= len(self.searcher.configs)


class ListedConfigs(Searcher):
    def __init__(self, configs: list[dict]):
        super().__init__()
        self.configs = list(configs)
        self.next = 0  # index of the next config to suggest
        self.prefix = uuid.uuid4().hex[:5] + "_"  # this sweep's, like Tune's own grid ids
        self.skipped: set[int] = set()  # positions finished before Tune's saved state was lost

    def continue_without_saved_state(self, prefix: str, finished_positions: set[int]) -> None:
        """Tune's saved state is gone (cut short on a full disk, with no earlier copy): the list starts again under
        the sweep's own ids, skipping what finished (sweeps/runner.py)."""
        self.prefix, self.skipped, self.next = prefix, set(finished_positions), 0

    def has_checkpoint(self, dirpath: str) -> bool:
        """Whether Tune's copy of this searcher's state is there (not set aside as cut short)."""
        return bool(glob.glob(os.path.join(dirpath, self.CKPT_FILE_TMPL.format("*"))))

    def suggest(self, trial_id: str) -> dict | str:
        while self.next in self.skipped:
            self.next += 1
        if self.next >= len(self.configs):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.configs[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing to learn: the list is the plan

    def get_state(self) -> dict:
        return {"configs": self.configs, "next": self.next, "prefix": self.prefix, "skipped": self.skipped}

    def set_state(self, state: dict) -> None:
        self.configs, self.next, self.prefix = state["configs"], state["next"], state["prefix"]
        self.skipped = state.get("skipped", set())

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.get_state(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.set_state(pickle.load(file))
