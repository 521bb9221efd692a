"""What every trial's runtime sets up before it trains (trainables/trial_loop.trial_device)."""
import pytest
import torch

from trainables.trial_loop import trial_device

SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


@pytest.fixture
def denormal_mode():
    yield
    torch.set_flush_denormal(False)  # leave the process as other tests expect it


def test_trial_runtime_flushes_subnormal_floats_to_zero_on_cpu(denormal_mode):
    # subnormals slow x86 arithmetic several-fold (late-training Adam moments fall there); a trial treats them as 0
    torch.set_flush_denormal(False)
    assert (torch.tensor([SUBNORMAL]) * 1.0).item() != 0.0
    assert trial_device("cpu") == torch.device("cpu")
    assert (torch.tensor([SUBNORMAL]) * 1.0).item() == 0.0
    assert (torch.tensor([1e-37]) * 1.0).item() == pytest.approx(1e-37)  # normal floats untouched
