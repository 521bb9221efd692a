"""What a killed driver leaves in Tune's saved state is repaired before a resume: a state file cut short is set aside
(Tune then restores from the one before), a checkpoint the state names but Tune already deleted is replaced by the
oldest later one on disk (the one Tune registered; a newer one may hold a report the driver never received)."""
import json
import pickle

import pytest

from sweeps.tune_state import repair_for_restore


def state_naming(checkpoint) -> dict:
    """Tune's layout: trials as JSON strings whose checkpoint manager is a cloudpickle blob (hex)."""
    blob = pickle.dumps({"checkpoints": [str(checkpoint.with_name("checkpoint_000000")), str(checkpoint)]}).hex()
    trial = json.dumps({"checkpoint_manager": {"_type": "CLOUDPICKLE_FALLBACK", "value": blob}})
    return {"trial_data": [["{}", trial]], "runner_data": {}, "stats": {}}


def test_a_state_file_cut_short_is_set_aside_and_a_deleted_checkpoint_replaced_by_the_next_one(tmp_path):
    trial = tmp_path / "train_x_00000_0_bias=0"
    for number, step in ((2, 30), (3, 40)):  # 000002 registered by Tune, 000003 written as the driver died
        (trial / f"checkpoint_00000{number}").mkdir(parents=True)
        (trial / f"checkpoint_00000{number}" / "state.pt").write_bytes(f"step {step}".encode())
    good = tmp_path / "experiment_state-2026-12-06_07-00-00.json"
    good.write_text(json.dumps(state_naming(trial / "checkpoint_000001")))  # 000001: deleted since
    cut = tmp_path / "experiment_state-2026-12-06_07-05-00.json"
    cut.write_text('{"trial_data": [')  # the newest, written when the driver died

    warnings = repair_for_restore(str(tmp_path))
    assert len(warnings) == 2 and "cut short" in warnings[0] and "deleted checkpoint" in warnings[1]
    assert not cut.exists() and cut.with_name(cut.name + ".unreadable").exists()  # kept, not deleted
    assert (trial / "checkpoint_000001" / "state.pt").read_bytes() == b"step 30"  # the next one, under the old name
    assert repair_for_restore(str(tmp_path)) == []  # nothing left to repair


def test_nothing_is_touched_when_the_state_is_whole(tmp_path):
    trial = tmp_path / "train_x_00000_0_bias=0"
    (trial / "checkpoint_000001").mkdir(parents=True)
    state = tmp_path / "experiment_state-2026-12-06_07-00-00.json"
    state.write_text(json.dumps(state_naming(trial / "checkpoint_000001")))
    assert repair_for_restore(str(tmp_path)) == [] and state.exists()
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000001"]
    assert repair_for_restore("s3://bucket/sweeps/x") == []  # remote storage: left to Tune


def test_a_search_state_cut_short_is_set_aside_and_the_grid_goes_on_from_the_saved_trials(tmp_path):
    from sweeps.listed_search import listed_trials

    search = listed_trials([{"beta": beta} for beta in (0.5, 1.0, 2.0, 4.0)])
    prefix = search.searcher.prefix
    trials = [[json.dumps({"trial_id": f"{prefix}{position:05d}"}), "{}"] for position in (0, 1)]
    (tmp_path / "experiment_state-2026-12-06_07-00-00.json").write_text(
        json.dumps({"trial_data": trials, "runner_data": {}, "stats": {}}))
    cut = tmp_path / "search_gen_state-2026-12-06_07-00-00.json"
    cut.write_bytes(b"")  # the copy into storage ended when the disk filled

    warnings = repair_for_restore(str(tmp_path))
    assert len(warnings) == 1 and "search_gen_state" in warnings[0] and not cut.exists()
    assert search.has_checkpoint(str(tmp_path))  # so Tune restores the position instead of starting over
    search.restore_from_dir(str(tmp_path))
    assert search.searcher.suggest("next") == {"beta": 2.0}  # the third config: the two saved trials are not redone


def test_a_trial_handed_out_after_tunes_last_state_write_runs_on_resume_under_its_own_id(tmp_path):
    """Found by CI (test_full_disk, state only): the search state said two configs were handed out, Tune's
    experiment state held only the first trial (the disk filled before it saved the second); the resume must
    suggest the second config again, not end the sweep short."""
    from sweeps.listed_search import listed_trials

    configs = [{"beta": beta} for beta in (0.5, 1.0, 2.0)]
    before = listed_trials(configs)
    prefix = before.searcher.prefix
    before.searcher.suggest("a"), before.searcher.suggest("b")  # two handed out, position 2 next
    before._counter = 2
    before.save_to_dir(str(tmp_path), session_str="2026-12-06_07-00-00")
    (tmp_path / "experiment_state-2026-12-06_07-00-00.json").write_text(json.dumps(
        {"trial_data": [[json.dumps({"trial_id": f"{prefix}00000"}), "{}"]], "runner_data": {}, "stats": {}}))

    resumed = listed_trials(configs)
    resumed.restore_from_dir(str(tmp_path))
    assert resumed.searcher.prefix == prefix
    assert resumed.searcher.suggest("again") == {"beta": 1.0}  # position 1, so its trial id is the one it had
    assert resumed.searcher.next - 1 == 1


@pytest.mark.parametrize("cut", ["searcher-state-*.pkl", "search_gen_state-*.json"])
def test_a_resumed_grid_whose_search_state_was_cut_takes_its_ids_and_position_from_the_saved_trials(cut, tmp_path):
    """Found by CI (test_full_disk, results and state): the disk filled while Tune copied the search state, one of its
    two files was cut short and set aside. The resumed driver's fresh search (a new random id prefix) must neither
    make Tune give up the restore (it then started the experiment over and ran half the grid) nor redo the saved
    trials under new ids: it takes the prefix from the saved trials and goes on after them."""
    from sweeps.listed_search import listed_trials

    configs = [{"beta": beta} for beta in (0.5, 1.0, 2.0, 4.0)]
    before = listed_trials(configs)
    prefix = before.searcher.prefix
    before.searcher.suggest("a"), before.searcher.suggest("b")
    before._counter = 2
    before.save_to_dir(str(tmp_path), session_str="2026-12-06_07-00-00")
    trials = [[json.dumps({"trial_id": f"{prefix}{position:05d}"}), "{}"] for position in (0, 1)]
    (tmp_path / "experiment_state-2026-12-06_07-00-00.json").write_text(
        json.dumps({"trial_data": trials, "runner_data": {}, "stats": {}}))
    [state] = tmp_path.glob(cut)
    state.write_bytes(state.read_bytes()[:10])  # the copy into storage ended when the disk filled
    assert len(repair_for_restore(str(tmp_path))) == 1

    resumed = listed_trials(configs)
    assert resumed.searcher.prefix != prefix and resumed.has_checkpoint(str(tmp_path))
    resumed.restore_from_dir(str(tmp_path))  # Tune's restore: must not raise
    assert resumed.searcher.prefix == prefix
    assert resumed.searcher.suggest("next") == {"beta": 2.0} and resumed.searcher.next - 1 == 2


def test_a_grid_whose_saved_state_is_lost_goes_on_under_its_ids_skipping_what_finished():
    from sweeps.listed_search import listed_trials

    search = listed_trials([{"beta": beta} for beta in (0.5, 1.0, 2.0, 4.0)])
    search.searcher.continue_without_saved_state("abcde_", {0, 2})
    assert search.searcher.suggest("a") == {"beta": 1.0} and search.searcher.next - 1 == 1  # id abcde_00001
    assert search.searcher.suggest("b") == {"beta": 4.0} and search.searcher.next - 1 == 3
    assert search.searcher.suggest("c") == "FINISHED"
