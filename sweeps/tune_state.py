"""Repairing what a killed driver leaves in Tune's saved state, before `Tuner.restore`.

Tune writes its experiment state in place (not write-then-rename); a driver killed while writing leaves the newest
experiment_state-*.json empty or cut short, and Tune restores from the newest file only. Such a file is set aside
(renamed *.unreadable), so Tune takes the one before: trials it shows unfinished continue from their checkpoints.

Tune deletes a trial's previous checkpoint as soon as a new one is registered (`num_to_keep`) and snapshots the
experiment state a moment later; a driver killed in between leaves a state that names a checkpoint no longer on
disk, and Tune then fails that trial on every resume ("Could not recover from checkpoint as it does not exist on
storage anymore"; tests/integration/test_repeated_kills.py hit it). The trial's later checkpoints are on disk: the
oldest of them is put under the missing name, so the trial resumes from it. Not the newest: a trainable writes its
checkpoint before the driver receives the report that carries it, so the newest may belong to a report the driver
never recorded (resuming past it would lose that point of the metric curves), while the oldest is the one Tune
registered, after its report was journaled. Points the resumed trial reports again are recorded once
(sweeps/tracking_callback.py). Our checkpoints record their own step, so the run continues exactly where that
checkpoint was taken; only Tune's iteration counter is behind.

Tune (pinned: ray 2.60) keeps each trial's checkpoint manager as a cloudpickle blob in experiment_state-*.json; the
checkpoint paths inside it are plain absolute paths, which is all this reads.
"""
import json
import pickle
import re
import shutil
from pathlib import Path

# an absolute path of printable characters ending in a checkpoint directory (pickle's framing bytes are not printable)
CHECKPOINT = re.compile(rb"(/[\x20\x21\x23-\x7e]*?/checkpoint_(\d{6}))")


def pickled_blobs(node) -> list[bytes]:
    """Every cloudpickle blob (hex) in a JSON tree of Tune's experiment state."""
    if isinstance(node, dict):
        if node.get("_type") == "CLOUDPICKLE_FALLBACK" and isinstance(node.get("value"), str):
            try:
                return [bytes.fromhex(node["value"])]
            except ValueError:
                return []
        return [blob for value in node.values() for blob in pickled_blobs(value)]
    if isinstance(node, list):
        return [blob for item in node for blob in pickled_blobs(item)]
    if isinstance(node, str) and node.lstrip().startswith(("{", "[")):  # trials are JSON inside JSON
        try:
            return pickled_blobs(json.loads(node))
        except json.JSONDecodeError:
            return []
    return []


def latest_named_checkpoints(state_file: Path) -> list[Path]:
    """Per trial directory, the newest checkpoint the saved state names."""
    newest: dict[Path, tuple[int, Path]] = {}
    for blob in pickled_blobs(json.loads(state_file.read_text())):
        for path_bytes, number in CHECKPOINT.findall(blob):
            path = Path(path_bytes.decode("utf-8", "replace"))
            if int(number) >= newest.get(path.parent, (-1, path))[0]:
                newest[path.parent] = (int(number), path)
    return [path for _, path in newest.values()]


def readable_states(experiment_path: str) -> tuple[list[Path], list[Path]]:
    """(the experiment state files Tune can load, oldest first; the unreadable ones, now renamed *.unreadable)."""
    readable, set_aside = [], []
    for path in sorted(Path(experiment_path).glob("experiment_state-*.json")):
        try:
            json.loads(path.read_text())
            readable.append(path)
        except (ValueError, UnicodeDecodeError):
            kept = path.with_name(path.name + ".unreadable")
            path.rename(kept)
            set_aside.append(kept)
    return readable, set_aside


SEARCH_STATES = ("search_gen_state-*.json", "searcher-state-*.pkl")  # Tune's pickles of the search's position


def readable_pickle(path: Path) -> bool:
    """Whether a pickle Tune wrote (tuner.pkl: written when a sweep starts or resumes) is whole; a driver killed
    while writing it leaves it empty or cut. A whole pickle ends with its STOP opcode; nothing is unpickled here."""
    data = path.read_bytes() if path.exists() else b""
    return data.endswith(pickle.STOP)


def set_aside_unreadable_search_states(experiment_path: str) -> list[Path]:
    """A search state cut short (Tune copies it into the storage folder; on a full disk the copy ends early) makes
    Tune give up the whole restore and start the experiment again; set aside, the search resumes from what the
    trials say (sweeps/listed_search.py)."""
    set_aside = []
    for pattern in SEARCH_STATES:
        for path in sorted(Path(experiment_path).glob(pattern)):
            try:
                pickle.loads(path.read_bytes())
            except Exception:  # empty, cut short or not a pickle: Tune's own load would fail the same way
                kept = path.with_name(path.name + ".unreadable")
                path.rename(kept)
                set_aside.append(kept)
    return set_aside


def saved_trial_ids(experiment_path: str) -> list[str]:
    """The trial ids in the newest readable experiment state, in the order Tune created them."""
    states, _ = readable_states(experiment_path)
    if not states:
        return []
    trials = json.loads(states[-1].read_text()).get("trial_data", [])
    return [json.loads(trial[0]).get("trial_id", "") for trial in trials]


def repair_for_restore(experiment_path: str) -> list[str]:
    """Everything this module repairs, before `Tuner.restore`; one warning line per repair."""
    if "://" in experiment_path:  # remote storage: nothing to do from here (Tune syncs state and checkpoints)
        return []
    states, set_aside = readable_states(experiment_path)
    set_aside += set_aside_unreadable_search_states(experiment_path)
    warnings = [f"{path.name[:-len('.unreadable')]} was cut short when the driver died or the disk filled; kept as "
                f"{path.name}, the sweep resumes from the state saved before it" for path in set_aside]
    if states:
        warnings += [f"the saved sweep state named a deleted checkpoint; {path.parent.name} resumes from the next "
                     "one" for path in repair_missing_checkpoints(states[-1])]
    return warnings


def repair_missing_checkpoints(state_file: Path) -> list[Path]:
    """Put each trial's oldest checkpoint after the one the saved state expects, now gone, under its name; the
    repaired paths."""
    repaired = []
    for missing in latest_named_checkpoints(state_file):
        trial_dir = missing.parent
        if missing.exists() or not trial_dir.is_dir():
            continue
        later = sorted(path for path in trial_dir.glob("checkpoint_*") if path.name > missing.name)
        if later:
            shutil.copytree(later[0], missing)
            repaired.append(missing)
    return repaired
