"""The population engine: members match lone models (one seed, or several seeds with independent data), the op
count per step does not grow with P, a diverged member drops out alone, checkpoints continue bit-identically."""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.devices import DEVICES
from trainables.bias_grid import BiasGridRun
from trainables.bias_grid_population import BiasGridPopulationRun, member_config

CONFIG = {"bias": 1.0, "seed": 3, "hidden_width": 32, "batch_size": 16, "steps": 30, "heldout_size": 128}
BETAS = [0.1, 1.0, 4.0]
SEEDS = [3, 5]


def population(betas=BETAS, device="cpu", **overrides):
    return BiasGridPopulationRun({**CONFIG, "betas": betas, **overrides}, device)


def lone(beta, seed=CONFIG["seed"], **overrides):
    return BiasGridRun(member_config({**CONFIG, **overrides}, seed, beta))


def assert_same_model(a, b, atol=2e-5):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=atol, rtol=1e-4), name


def test_members_train_like_lone_models_with_the_same_seed_and_data():
    pop = population()
    pop_train = pop.train_interval(30)
    for p, beta in enumerate(BETAS):
        alone = lone(beta)
        alone_train = alone.train_interval(30)
        assert_same_model(pop.model.member(p), alone.model)
        assert pop_train[p]["train/loss"] == pytest.approx(alone_train["train/loss"], rel=1e-5)


def test_members_of_several_seeds_train_like_lone_models_of_their_seed():
    pop = population(seeds=SEEDS)
    assert pop.model.size == len(SEEDS) * len(BETAS)
    pop_train = pop.train_interval(30)
    for p, (seed, beta) in enumerate(pop.member_seeds_and_betas()):
        alone = lone(beta, seed)
        alone_train = alone.train_interval(30)
        assert_same_model(pop.model.member(p), alone.model)
        assert pop_train[p]["train/loss"] == pytest.approx(alone_train["train/loss"], rel=1e-5)
    # the seeds' data are independent: their members at the same β do not learn the same model
    assert not torch.allclose(pop.model.member(0).decoder[0].weight, pop.model.member(len(BETAS)).decoder[0].weight)


@pytest.mark.parametrize("seeds", [[], SEEDS], ids=["one seed", "two seeds"])
def test_batched_evaluation_matches_lone_evaluation(seeds):
    pop = population(seeds=seeds)
    pop.measure_baseline()
    pop.train_interval(30)
    evaluations = pop.evaluate()
    validations = pop.validation()
    for p, (seed, beta) in enumerate(pop.member_seeds_and_betas()):
        alone = lone(beta, seed)
        alone.measure_baseline()
        alone.train_interval(30)
        expected = alone.evaluate()
        for key, value in expected.items():
            if key == "plot/images":  # uint8 pixels: float rounding may move one by a level
                difference = torch.tensor(evaluations[p][key]) - torch.tensor(value)
                assert difference.abs().max() <= 1
                continue
            assert evaluations[p][key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
        assert validations[p]["val/neg_elbo"] == pytest.approx(alone.validation()["val/neg_elbo"], rel=1e-5)


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("size", "seeds"), [(7, []), (21, []), (7, SEEDS)])
def test_operations_per_step_do_not_grow_with_the_population(size, seeds):
    """At a given number of seeds (each draws its own batch and noise), the ops per step are the same for 1, 7, 21
    members per seed (from 2 with several seeds: one member per group makes a regrouping reshape a free view)."""
    def ops_per_step(betas):
        run = population(betas, seeds=seeds)
        run.train_interval(2)  # Adam's state exists from here on
        with OpCounter() as counter:
            run.train_interval(1)
        return counter.count

    smallest = ops_per_step([1.0] if not seeds else [1.0, 2.0])
    assert ops_per_step([0.1 * (i + 1) for i in range(size)]) == smallest


def test_a_diverged_member_drops_out_and_the_others_are_untouched():
    pop = population([0.5, 1.0])
    pop.beta[1] = float("inf")  # the second member's loss is infinite from its first step
    members = pop.train_interval(30)
    assert int(pop.diverged_at[1]) == 1 and int(pop.diverged_at[0]) == -1
    alone = lone(0.5)
    alone_train = alone.train_interval(30)
    assert_same_model(pop.model.member(0), alone.model)
    assert members[0]["train/loss"] == pytest.approx(alone_train["train/loss"], rel=1e-5)
    pop.train_interval(5)  # goes on without it
    assert int(pop.diverged_at[1]) == 1
    assert all(torch.isfinite(v).all() for v in pop.model.state_dict().values())
    assert len(pop.evaluate()) == 2  # the batched evaluation stays finite for the living member


@pytest.mark.parametrize("seeds", [[], SEEDS], ids=["one seed", "two seeds"])
def test_population_checkpoint_continues_bit_identically(seeds, tmp_path):
    straight = population(seeds=seeds)
    straight.train_interval(15)
    expected = straight.train_interval(15)
    interrupted = population(seeds=seeds)
    interrupted.train_interval(15)
    interrupted.save(tmp_path)
    resumed = population(seeds=seeds)
    resumed.restore(tmp_path)
    again = resumed.train_interval(15)
    strip = lambda ms: [{k: v for k, v in m.items() if "per_second" not in k} for m in ms]  # noqa: E731
    assert strip(again) == strip(expected)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_with_the_earlier_first_layer_layout_resumes_identically():
    """Checkpoints written before the first layer was stored per group ((in, P, out), weight and Adam moments)
    still resume, to the same continuation as the current layout."""
    straight = population(seeds=SEEDS)
    straight.train_interval(15)
    state = copy.deepcopy(straight.state_dict())  # the model's tensors themselves go on training
    expected = straight.train_interval(15)
    groups, fan_in, _ = straight.model.encoder.weights[0].shape

    def old_layout(tensor):  # (G, in, (P/G)·out) -> (in, P, out)
        return tensor.view(groups, fan_in, len(BETAS), -1).transpose(0, 1).reshape(fan_in, groups * len(BETAS), -1)

    state["model"]["encoder.weights.0"] = old_layout(state["model"]["encoder.weights.0"])
    moments = state["optimiser"]["state"][0]
    moments.update({k: old_layout(v) for k, v in moments.items() if k.startswith("exp_avg")})
    resumed = population(seeds=SEEDS)
    resumed.load_state_dict(state)
    again = resumed.train_interval(15)
    strip = lambda ms: [{k: v for k, v in m.items() if "per_second" not in k} for m in ms]  # noqa: E731
    assert strip(again) == strip(expected)


@pytest.mark.parametrize("device", DEVICES)
def test_a_compiled_step_trains_like_the_eager_one(one_thread, device):
    """compile_step: the same losses and weights as eager training, to float tolerance (inductor fuses and reorders
    float operations): inductor's kernels on the CPU, CUDA graphs replayed over static buffers on a GPU."""
    eager, compiled = population(seeds=SEEDS, device=device), population(seeds=SEEDS, device=device, compile_step=True)
    for _ in range(2):  # the first interval compiles, the second replays
        eager_train, compiled_train = eager.train_interval(5), compiled.train_interval(5)
        for e, c in zip(eager_train, compiled_train, strict=True):
            assert c["train/loss"] == pytest.approx(e["train/loss"], rel=1e-4)
    assert_same_model(compiled.model, eager.model, atol=1e-4)
