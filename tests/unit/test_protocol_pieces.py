"""devtools/protocol_pieces: which of the 2D protocol's runs a CPU session starts, and which count as done."""
import pandas as pd

from devtools.protocol_pieces import MINUTES, Claims, finished_cells, first_fitting, main, run_order


def _rows(path, cells, status="completed"):
    pd.DataFrame({"dataset": [c[0] for c in cells], "prior": [c[1] for c in cells], "seed": [c[2] for c in cells],
                  "status": status, "eval/kl": 1.0}).to_parquet(path)
    return str(path)


def test_the_dataset_closest_to_its_verdict_runs_first_standard_prior_before_learned(tmp_path):
    done = {("checkerboard", "standard", 0), ("checkerboard", "standard", 1), ("rings", "standard", 0)}
    order = run_order(done)
    assert len(order) == 60 - 3
    assert order[:3] == [("checkerboard", "standard", 2), ("checkerboard", "standard", 3),
                         ("checkerboard", "standard", 4)]
    assert order[3:5] == [("checkerboard", "mog", 0), ("checkerboard", "vamp", 0)]
    assert {c[0] for c in order[:13]} == {"checkerboard"} and order[13][0] == "rings"


def test_no_run_starts_whose_estimate_ends_after_the_deadline_a_shorter_one_fills_the_gap():
    order = [("rings", "mog", 0), ("rings", "standard", 1)]
    minutes_left = (MINUTES["standard"] + MINUTES["mog"]) / 2
    assert first_fitting(order, 0.0, minutes_left * 60, 1.0, lambda cell: "claim") == (("rings", "standard", 1),
                                                                                        "claim")
    assert first_fitting(order, 0.0, minutes_left * 60, 2.0, lambda cell: "claim") == (None, None)


def test_a_run_held_by_another_process_is_not_started_twice(tmp_path):
    claims, other = Claims(tmp_path), Claims(tmp_path)
    cell = ("rings", "mog", 0)
    held = claims.take(cell)
    assert held is not None and other.take(cell) is None
    held.close()  # its holder ended
    assert other.take(cell) is not None


def test_finished_runs_count_as_done_a_run_in_error_does_not_and_a_later_file_replaces_an_earlier_run(tmp_path):
    first = _rows(tmp_path / "a.parquet", [("rings", "mog", 0), ("rings", "vamp", 0)])
    failed = _rows(tmp_path / "b.parquet", [("rings", "mog", 0)], status="error")
    diverged = _rows(tmp_path / "c.parquet", [("rings", "mog", 1)], status="diverged")
    assert set(finished_cells([first])) == {("rings", "mog", 0), ("rings", "vamp", 0)}
    assert set(finished_cells([first, failed])) == {("rings", "vamp", 0)}
    # a diverged run would diverge again: it is not started again (the sweep would skip it, and the worker loop)
    assert finished_cells([diverged]) == {("rings", "mog", 1): "diverged"}
    assert ("rings", "mog", 1) not in run_order(set(finished_cells([diverged])))


def test_collecting_a_tag_again_keeps_the_rows_it_collected_before(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    data.mkdir()
    run_dir = out / "introvae" / "paper2d-cpu-x-rings-mog-s0"
    run_dir.mkdir(parents=True)
    _rows(run_dir / "results.parquet", [("rings", "mog", 0)])
    assert main(["collect", "--tag", "cpu-x", "--out", str(out), "--data", str(data)]) == 0
    # the next session's machine: the first run's directory is gone, another run is there
    run_dir.rename(out / "introvae" / "paper2d-cpu-x-rings-vamp-s0")
    _rows(out / "introvae" / "paper2d-cpu-x-rings-vamp-s0" / "results.parquet", [("rings", "vamp", 0)])
    assert main(["collect", "--tag", "cpu-x", "--out", str(out), "--data", str(data)]) == 0
    assert set(finished_cells([str(data / "introvae_paper2d_cpu_x.parquet")])) == {("rings", "mog", 0),
                                                                                  ("rings", "vamp", 0)}
