"""The β × bias study's population engine: every β of one (bias, seed) trained together in one process.

The members share the seed's data batches and reparameterisation noise (common random numbers) and their initial
weights, exactly as lone models of that seed would (trainables/bias_grid.py), and differ in β. One Ray trial then
trains a whole row of the grid: 11 trials instead of 77 per seed. Results stay per cell: the trial reports a
`population` list with one metrics dict per member, which the driver turns into one row and one MLflow run per
(bias, β, seed), identical in form to the single-model path.

A member whose loss turns non-finite is marked diverged at that step and drops out (its loss no longer counts;
its weights are zeroed so the batched evaluation stays finite); the others go on.
"""
import math
import time
from pathlib import Path

import torch

from models.objectives import population_beta_elbo
from models.population import PopulationMlpVae
from trainables.bias_grid import FIELDS as SINGLE_FIELDS
from trainables.bias_grid import STUDY, BiasGridData
from trainables.bias_grid import validate_config as validate_single
from trainables.config import Field, validate
from trainables.metrics.recovery import example_images, recovery_scores
from trainables.optim import adam
from trainables.trial_loop import report_until_done, trial_device

CHECKPOINT_FILE = "population.pt"
FIELDS = {
    "betas": Field([1.0], list, "the members' KL weights β (one member each)", lambda v: min(v) >= 0,
                   "a list of numbers >= 0"),
    **{k: v for k, v in SINGLE_FIELDS.items() if k != "beta"},
}


def validate_config(config: dict) -> dict:
    full = validate(config, FIELDS, STUDY + " population")
    validate_single({**{k: v for k, v in full.items() if k != "betas"}, "beta": full["betas"][0]})
    return full


def member_config(config: dict, beta: float) -> dict:
    """The config of one member, as the single-model path would have it."""
    return {**{k: v for k, v in config.items() if k != "betas"}, "beta": beta}


class BiasGridPopulationRun:
    def __init__(self, config: dict, device: torch.device | str = "cpu"):
        self.config = config = validate_config(config)
        self.data = BiasGridData(config, device)
        self.device = self.data.device
        size = len(config["betas"])
        self.model = PopulationMlpVae.from_members([self.data.new_model() for _ in range(size)]).to(self.device)
        self.optimiser = adam(self.model.parameters(), config["learning_rate"])
        self.beta = torch.tensor(config["betas"], device=self.device)  # (P,)
        self.likelihood_variance = torch.full((size,), config["likelihood_variance"], device=self.device)
        self.diverged_at = torch.full((size,), -1, dtype=torch.long)  # step of the first non-finite loss, or -1
        self.step = 0
        self.pmi_baseline = math.nan

    @property
    def size(self) -> int:
        return len(self.beta)

    @property
    def alive(self) -> torch.Tensor:
        return (self.diverged_at < 0).to(self.device)

    # ---- training ---------------------------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor, noise: torch.Generator, alive=None):
        eps = torch.randn((1, x.shape[0], self.model.config.latent_dim), generator=noise, device=self.device)
        return population_beta_elbo(self.model, x, self.beta, self.likelihood_variance, eps, alive)

    def train_interval(self, num_steps: int) -> list[dict[str, float]]:
        """num_steps steps of every living member; per-member interval means as train/*. Members whose loss went
        non-finite are marked diverged (at their first bad step) and excluded from then on."""
        self.model.train()
        alive = self.alive
        dead = (~alive).nonzero().flatten()
        parts = []
        start = time.perf_counter()
        for _ in range(num_steps):
            loss, metrics = self._loss(self.data.stream.next_batch(self.config["batch_size"]), self.data.noise, alive)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if len(dead):  # 0 × inf in a dead member's backward is NaN: keep it out of the update
                self._zero_members(dead, gradients_only=True)
            self.optimiser.step()
            parts.append(metrics)
        elapsed = time.perf_counter() - start
        losses = torch.stack([p["loss"] for p in parts]).cpu()  # (steps, P): one host sync per interval
        bad = ~torch.isfinite(losses) & alive.cpu()[None, :]
        for member in bad.any(dim=0).nonzero().flatten().tolist():
            self.diverged_at[member] = self.step + int(bad[:, member].nonzero()[0]) + 1
            self._zero_members(torch.tensor([member], device=self.device))
        self.step += num_steps
        means = {k: torch.stack([p[k] for p in parts]).mean(dim=0).tolist() for k in parts[0]}
        rate, living = num_steps / elapsed, int(alive.sum())
        return [{**{f"train/{k}": v[m] for k, v in means.items()}, "train/steps_per_second": rate,
                 "train/model_steps_per_second": rate * living} for m in range(self.size)]

    @torch.no_grad()
    def _zero_members(self, members: torch.Tensor, gradients_only: bool = False) -> None:
        """Zero the given members' weights and optimiser state (or only their gradients): a diverged member
        stays finite and still, so batched products and the living members are unaffected."""
        wide = self.model.encoder.weights[0]  # (in, P, out): the member is its second dimension
        for parameter in self.model.parameters():
            targets = [parameter.grad] if gradients_only else [parameter, *(
                v for v in self.optimiser.state.get(parameter, {}).values() if torch.is_tensor(v) and v.dim() > 0)]
            for tensor in targets:
                if tensor is not None:
                    tensor[(slice(None), members) if parameter is wide else members] = 0.0

    # ---- evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation(self) -> list[dict[str, float]]:
        self.model.eval()
        _, parts = self._loss(self.data.heldout, self.data.heldout_noise())
        neg_elbo = (parts["reconstruction"] + parts["kl"]).tolist()
        return [{"val/neg_elbo": neg_elbo[m], "val/loss": float(parts["loss"][m]), "val/kl": float(parts["kl"][m])}
                for m in range(self.size)]

    def measure_baseline(self) -> float:
        """PMI at initialisation: every member starts from the seed's weights, so one value serves all (measured on
        member 0 alone, not on a population pass of which only one member would be used)."""
        self.pmi_baseline = self.data.pmi_of(self.model.member(0))
        return self.pmi_baseline

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """The recovery metrics of every member from one batched pass (PMI fits included)."""
        self.model.eval()
        scores = recovery_scores(self.model.encode, self.model.decode, self.data.test_set,
                                 self.data.pmi_generator(), self.data.pmi_protocol())
        members = scores.member_metrics()
        images = example_images(self.model.encode, self.model.decode, self.data.test_set.images,
                                self.config["latent_dim"]).cpu()  # (P, 3, count, D)
        for metrics, member_images in zip(members, images, strict=True):
            metrics.update({"eval/pmi_baseline": self.pmi_baseline,
                            "eval/collapsed": float(metrics["eval/active_dims"] == 0),
                            "plot/images": member_images.tolist()})
        return members

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "data": self.data.state_dict(), "step": self.step, "pmi_baseline": self.pmi_baseline,
                "diverged_at": self.diverged_at.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.data.load_state_dict(state["data"])
        self.step, self.pmi_baseline = state["step"], state["pmi_baseline"]
        self.diverged_at = state["diverged_at"].clone()

    def save(self, directory) -> None:
        torch.save(self.state_dict(), Path(directory) / CHECKPOINT_FILE)

    def restore(self, directory) -> None:
        self.load_state_dict(torch.load(Path(directory) / CHECKPOINT_FILE, map_location=self.device,
                                        weights_only=False))


def train_bias_grid_population(config: dict) -> None:
    """Ray Tune function trainable for one population (every β of one bias and seed)."""
    config = validate_config(config)
    device = trial_device(config["device"])
    run = BiasGridPopulationRun(config, device)

    def build_report(members: list[dict], finished: bool) -> dict:
        evaluations = run.evaluate() if finished else [{}] * run.size
        for m, (metrics, validation, scores) in enumerate(zip(members, run.validation(), evaluations, strict=True)):
            diverged = int(run.diverged_at[m])
            status = "diverged" if diverged >= 0 else ("completed" if finished else "running")
            metrics.update(validation, **scores, beta=config["betas"][m], diverged_at_step=diverged, status=status)
        return {"population": members}

    report_until_done(run, config["steps"], config["report_every"], device, build_report,
                      on_fresh_start=run.measure_baseline)
