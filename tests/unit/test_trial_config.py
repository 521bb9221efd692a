"""Trial configs: unknown keys and bad values fail with a message naming the key."""
import pytest

from trainables.bias_grid import FIELDS, validate_config
from trainables.config import ConfigError


def test_defaults_fill_in_and_types_are_coerced():
    full = validate_config({"beta": 2, "steps": 100.0})
    assert full["beta"] == 2.0 and isinstance(full["beta"], float)
    assert full["steps"] == 100 and isinstance(full["steps"], int)
    assert set(full) == set(FIELDS)
    assert full["likelihood_variance"] == 0.25 and full["noise_variance"] == 0.25


@pytest.mark.parametrize("config, named", [
    ({"betta": 1.0}, "'betta'"),
    ({"beta": -1.0}, "'beta'"),
    ({"steps": 0}, "'steps'"),
    ({"steps": 1.5}, "'steps'"),
    ({"learning_rate": float("nan")}, "'learning_rate'"),
    ({"device": "tpu"}, "'device'"),
    ({"grid_size": 4}, "'grid_size'"),
    ({"seed": True}, "'seed'"),
])
def test_bad_configs_name_the_offending_key(config, named):
    with pytest.raises(ConfigError, match=named):
        validate_config(config)
