"""Property-based: whatever a user types for any flag of any study, or gives `python -m analysis` as a results
file, the answer is a run plan or one `error:` line with exit status 2, never a traceback; and nothing starts
(the checks all run before Ray, MLflow or a results folder)."""
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.__main__ import main as analysis_main
from sweeps.cli import exit_on_bad_input
from sweeps.studies import all_studies
from sweeps.study_runner import prepare, trial_fields

STUDIES = all_studies()
# what people type: numbers of every kind (huge, negative, nan, inf), words, empty strings, paths, odd characters
TYPED = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-0", "1e400", "true", "no", "../x", "--", "0x10", "1,2", "null"]),
    st.text(string.printable, max_size=12),
)


def plan_or_refusal(study, argv, tmp_path) -> int:
    """prepare() under the scripts' own error handling: 0 when the input makes a plan, 2 when it is refused."""
    return exit_on_bad_input(lambda: prepare(study, argv) and 0)()


@pytest.mark.parametrize("name", sorted(STUDIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_of_any_flag_is_a_plan_or_one_error_line(name, data, tmp_path, capsys):
    study = STUDIES[name]
    flags = [f"--{key.replace('_', '-')}" for key in trial_fields(study)] + [a.flag for a in study.axes] + [
        "--population-size", "--cpus-per-trial", "--gpus-per-trial", "--num-samples", "--name", "--preset",
        "--search", "--max-failures", "--progress-every", "--parallel"]
    chosen = data.draw(st.lists(st.sampled_from(flags), min_size=1, max_size=3, unique=True))
    argv = ["--out", str(tmp_path / "out"), "--no-mlflow"]
    for flag in chosen:
        argv += [flag, data.draw(TYPED)]
    try:
        code = plan_or_refusal(study, argv, tmp_path)
    except SystemExit as exit:  # argparse: a wrong type or an unknown choice, usage and one error line
        code = exit.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, err)
    if code == 2:
        assert err.strip().splitlines()[-1].startswith(("error: ", f"{study.name}", "usage", "bias_grid.py")) or \
            ": error: " in err, (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written, whatever the answer


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300), command=st.sampled_from(["heatmaps", "tables", "images"]))
def test_any_file_given_as_results_is_one_error_line(content, command, tmp_path, capsys):
    path = tmp_path / "results.parquet"
    path.write_bytes(content)
    assert analysis_main([command, "--results", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.parametrize("command", ["heatmaps", "tables", "images"])
def test_a_foreign_parquet_file_is_one_error_line(command, tmp_path, capsys):
    import pandas as pd

    pd.DataFrame({"x": [1, 2]}).to_parquet(tmp_path / "foreign.parquet")
    assert analysis_main([command, "--results", str(tmp_path / "foreign.parquet"), "--out", str(tmp_path)]) == 2
    assert "not a sweep's results table" in capsys.readouterr().err
