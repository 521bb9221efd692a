"""The β × bias study's population engine: every β × seed of one bias trained together in one process.

Members are (seed, β) pairs, seed-major: one group of members per seed. A group shares its seed's data batches and
reparameterisation noise (common random numbers) and initial weights, exactly as lone models of that seed would
(trainables/bias_grid.py), and its members differ in β; groups of different seeds see independent data. One Ray
trial then trains a whole row of the grid: 11 trials for the paper preset's 231 models. Results stay per cell: the
trial reports a `population` list with one metrics dict per member, which the driver turns into one row and one
MLflow run per (bias, β, seed), identical in form to the single-model path.

A member whose loss turns non-finite is marked diverged at that step and drops out (its loss no longer counts;
its weights are zeroed so the batched evaluation stays finite); the others go on.
"""
import math

import torch

from models.objectives import population_beta_elbo
from models.population import PopulationMlpVae
from trainables.bias_grid import FIELDS as SINGLE_FIELDS
from trainables.bias_grid import STUDY, BiasGridData
from trainables.bias_grid import validate_config as validate_single
from trainables.captured_step import begin_step, compiled_if
from trainables.config import Field, validate
from trainables.metrics.recovery import example_images, pmi, recovery_scores
from trainables.optim import adam
from trainables.trial_loop import (
    Checkpointed,
    Diverged,
    interval_means,
    report_until_done,
    timed_steps,
    trial_device,
)

FIELDS = {
    "betas": Field([1.0], list, "the KL weights β of each seed's members (one member each)",
                   lambda v: len(v) > 0 and min(v) >= 0, "a non-empty list of numbers >= 0"),
    "seeds": Field([0], list, "seeds trained together, one group of members (every β) each (default: [seed])",
                   lambda v: all(s >= 0 and s.is_integer() for s in v) and len(set(v)) == len(v),
                   "a list of distinct integers >= 0"),
    **{k: v for k, v in SINGLE_FIELDS.items() if k != "beta"},
}


def validate_config(config: dict) -> dict:
    full = validate({**config, "seeds": config.get("seeds") or [config.get("seed", 0)]}, FIELDS,
                    STUDY + " population")
    full["seeds"] = [int(seed) for seed in full["seeds"]]  # list fields arrive as floats
    validate_single(member_config(full, full["seeds"][0], full["betas"][0]))
    return full


def member_config(config: dict, seed: int, beta: float) -> dict:
    """The config of one member, as the single-model path would have it."""
    return {**{k: v for k, v in config.items() if k not in ("betas", "seeds")}, "seed": seed, "beta": beta}


class BiasGridPopulationRun(Checkpointed):
    checkpoint_file = "population.pt"

    def __init__(self, config: dict, device: torch.device | str = "cpu"):
        self.config = config = validate_config(config)
        # one group per seed: its data stream, noise and PMI generator; the test set and held-out sample are the
        # same for every seed of a bias, so the first group's serve all
        self.groups = [BiasGridData({**config, "seed": seed}, device) for seed in config["seeds"]]
        self.data = self.groups[0]
        self.device = self.data.device
        self.group_size = len(config["betas"])  # M: members per group; member p is in group p // M
        self.model = PopulationMlpVae.from_members(
            [group.new_model() for group in self.groups for _ in config["betas"]], len(self.groups)).to(self.device)
        size = self.model.size
        self.optimiser = adam(self.model.parameters(), config["learning_rate"])
        self.beta = torch.tensor(config["betas"] * len(self.groups), device=self.device)  # (P,)
        self.likelihood_variance = torch.full((size,), config["likelihood_variance"], device=self.device)
        self.diverged_at = torch.full((size,), -1, dtype=torch.long)  # step of the first non-finite loss, or -1
        self.step = 0
        self.pmi_baselines = [math.nan] * len(self.groups)  # per seed: its members start from the same weights
        # the training loss, compiled on request (evaluation stays eager: it runs once per report)
        self.training_loss = compiled_if(config["compile_step"], self.device)(population_beta_elbo)

    @property
    def size(self) -> int:
        return len(self.beta)

    @property
    def alive(self) -> torch.Tensor:
        return (self.diverged_at < 0).to(self.device)

    # ---- training ---------------------------------------------------------------------------------------------
    def member_seeds_and_betas(self) -> list[tuple[int, float]]:
        return [(seed, beta) for seed in self.config["seeds"] for beta in self.config["betas"]]

    def _loss(self, x: torch.Tensor, noises: list[torch.Generator], alive=None, loss=population_beta_elbo):
        """x: (B, D) for every member, or (G, B, D), one batch per seed group; one noise generator per group."""
        shape = (1, x.shape[-2], self.model.config.latent_dim)
        eps = torch.cat([torch.randn(shape, generator=noise, device=self.device) for noise in noises])  # (G, B, d)
        if len(noises) > 1:
            eps = eps.repeat_interleave(self.group_size, dim=0)  # (P, B, d): each member its group's noise
        return loss(self.model, x, self.beta, self.likelihood_variance, eps, alive)

    def _next_batch(self) -> torch.Tensor:
        """(B, D) for one seed, (G, B, D) for several: each group's own stream."""
        batches = [group.stream.next_batch(self.config["batch_size"]) for group in self.groups]
        return batches[0] if len(batches) == 1 else torch.stack(batches)

    def train_interval(self, num_steps: int) -> list[dict[str, float]]:
        """num_steps steps of every living member; per-member interval means as train/*. Members whose loss went
        non-finite are marked diverged (at their first bad step) and excluded from then on."""
        self.model.train()
        alive = self.alive
        dead = (~alive).nonzero().flatten()

        def one_step() -> dict[str, torch.Tensor]:  # every metric (P,)
            if self.config["compile_step"]:
                begin_step(self.device)
            loss, metrics = self._loss(self._next_batch(), [group.noise for group in self.groups], alive,
                                       self.training_loss)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if len(dead):  # 0 × inf in a dead member's backward is NaN: keep it out of the update
                self._zero_members(dead, gradients_only=True)
            self.optimiser.step()
            return metrics

        parts, elapsed = timed_steps(one_step, num_steps)
        losses = torch.stack([p["loss"] for p in parts]).cpu()  # (steps, P): one host sync per interval
        bad = ~torch.isfinite(losses) & alive.cpu()[None, :]
        for member in bad.any(dim=0).nonzero().flatten().tolist():
            self.diverged_at[member] = self.step + int(bad[:, member].nonzero()[0]) + 1
            self._zero_members(torch.tensor([member], device=self.device))
        self.step += num_steps
        if not self.alive.any():  # nothing left to train: the trial ends here (a lone model at its first bad step)
            raise Diverged(int(self.diverged_at.max()))
        means = {k: v.tolist() for k, v in interval_means(parts).items()}
        rate, living = num_steps / elapsed, int(alive.sum())
        return [{**{f"train/{k}": v[m] for k, v in means.items()}, "train/steps_per_second": rate,
                 "train/model_steps_per_second": rate * living} for m in range(self.size)]

    @torch.no_grad()
    def _zero_members(self, members: torch.Tensor, gradients_only: bool = False) -> None:
        """Zero the given members' weights and optimiser state (or only their gradients): a diverged member
        stays finite and still, so batched products and the living members are unaffected."""
        encoder = self.model.encoder
        group, index = members // self.group_size, members % self.group_size  # where the wide first layer keeps them
        for parameter in self.model.parameters():
            targets = [parameter.grad] if gradients_only else [parameter, *(
                v for v in self.optimiser.state.get(parameter, {}).values() if torch.is_tensor(v) and v.dim() > 0)]
            for tensor in targets:
                if tensor is None:
                    continue
                if parameter is encoder.weights[0]:
                    encoder.first_layer_members(tensor)[group, :, index] = 0.0
                else:
                    tensor[members] = 0.0

    # ---- evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation(self) -> list[dict[str, float]]:
        self.model.eval()
        _, parts = self._loss(self.data.heldout, [self.data.heldout_noise()])  # one sample and noise for all
        neg_elbo = (parts["reconstruction"] + parts["kl"]).tolist()
        return [{"val/neg_elbo": neg_elbo[m], "val/loss": float(parts["loss"][m]), "val/kl": float(parts["kl"][m])}
                for m in range(self.size)]

    def measure_baseline(self) -> list[float]:
        """PMI at initialisation: a seed's members all start from its weights, so one value serves the group
        (measured on its first member alone, not on a population pass of which only one member would be used);
        the groups' fits run as one batched fit, each from its seed's generator."""
        test_set = self.data.test_set
        with torch.no_grad():
            codes = torch.stack([self.model.member(g * self.group_size).eval().encode(test_set.images)[0]
                                 for g in range(len(self.groups))])  # (G, N, d)
        baselines = pmi(codes, test_set.latents, [group.pmi_generator() for group in self.groups],
                        self.data.pmi_protocol())  # (G,)
        self.pmi_baselines = baselines.tolist()
        return self.pmi_baselines

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """The recovery metrics of every member in one batched pass: one encoder and one decoder pass over the test
        set for the population, the PMI fits of all seed groups as one batched fit (each group from its own seed's
        generator, as lone models' would)."""
        self.model.eval()
        test_set = self.data.test_set
        groups, size = len(self.groups), self.group_size
        codes = tuple(t.unflatten(0, (groups, size)) for t in self.model.encode(test_set.images))  # (G, M, N, d)

        def decode(z: torch.Tensor) -> torch.Tensor:  # (G, M, N, d) -> (G, M, N, D)
            return self.model.decode(z.flatten(0, 1)).unflatten(0, (groups, size))

        scores = recovery_scores(lambda _: codes, decode, test_set,
                                 [group.pmi_generator() for group in self.groups], self.data.pmi_protocol())
        members = [{**metrics, "eval/pmi_baseline": self.pmi_baselines[m // size]}
                   for m, metrics in enumerate(scores.member_metrics())]
        images = example_images(self.model.encode, self.model.decode, self.data.test_set.images,
                                self.config["latent_dim"]).cpu()  # (P, 3, count, D)
        for metrics, member_images in zip(members, images, strict=True):
            metrics.update({"eval/collapsed": float(metrics["eval/active_dims"] == 0),
                            "plot/images": member_images.tolist()})
        return members

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "groups": [group.state_dict() for group in self.groups], "step": self.step,
                "pmi_baselines": list(self.pmi_baselines), "diverged_at": self.diverged_at.clone()}

    def load_state_dict(self, state: dict) -> None:
        state = self._with_grouped_first_layer(state)
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        if "groups" not in state:  # checkpoints of one-seed populations before 2026-12-04
            state = {**state, "groups": [state["data"]], "pmi_baselines": [state["pmi_baseline"]]}
        for group, group_state in zip(self.groups, state["groups"], strict=True):
            group.load_state_dict(group_state)
        self.step, self.pmi_baselines = state["step"], list(state["pmi_baselines"])
        self.diverged_at = state["diverged_at"].clone()

    def _with_grouped_first_layer(self, state: dict) -> dict:
        """Checkpoints written before 2026-12-04 18:50 UTC stored the encoder's first weight (and its Adam moments)
        as (in, P, out); it is (G, in, (P/G)·out) now (StackedMlp)."""
        key, wide = "encoder.weights.0", self.model.encoder.weights[0]
        old = state["model"][key]
        if old.shape == wide.shape:
            return state
        groups, fan_in, _ = wide.shape

        def regroup(tensor: torch.Tensor) -> torch.Tensor:  # (in, P, out) -> (G, in, (P/G)·out)
            return tensor.view(fan_in, groups, self.group_size, -1).transpose(0, 1).reshape(wide.shape).contiguous()

        model = {**state["model"], key: regroup(old)}
        index = next(i for i, p in enumerate(self.model.parameters()) if p is wide)  # its key in the optimiser state
        moments = state["optimiser"]["state"].get(index, {})
        optimiser_state = {**state["optimiser"]["state"], index: {
            k: regroup(v) if torch.is_tensor(v) and v.shape == old.shape else v for k, v in moments.items()}}
        return {**state, "model": model, "optimiser": {**state["optimiser"], "state": optimiser_state}}


def train_bias_grid_population(config: dict, sink=None) -> None:
    """Ray Tune function trainable for one population (every β × seed of one bias, or a part of them; one member is
    the lone model). `sink`: where reports go outside Tune (sweeps/local_backend.py)."""
    config = validate_config(config)
    device = trial_device(config["device"])
    run = BiasGridPopulationRun(config, device)

    def members_report(members: list[dict], finished: bool) -> list[dict]:
        evaluations = run.evaluate() if finished else [{}] * run.size
        for m, (metrics, validation, scores, (seed, beta)) in enumerate(zip(
                members, run.validation(), evaluations, run.member_seeds_and_betas(), strict=True)):
            diverged = int(run.diverged_at[m])
            status = "diverged" if diverged >= 0 else ("completed" if finished else "running")
            metrics.update(validation, **scores, beta=beta, seed=seed, diverged_at_step=diverged, status=status)
        return members

    def population_report(members: list[dict]) -> dict:
        # a population of one reports as a lone model: its metrics at the top, where a searcher and ASHA read them
        return members[0] if run.size == 1 else {"population": members}

    def on_divergence() -> dict:  # every member diverged
        return population_report([{"beta": beta, "seed": seed, "status": "diverged",
                                   "diverged_at_step": int(run.diverged_at[m]), "eval/pmi_baseline":
                                   run.pmi_baselines[m // run.group_size]}
                                  for m, (seed, beta) in enumerate(run.member_seeds_and_betas())])

    report_until_done(run, config["steps"], config["report_every"], device,
                      lambda members, finished: population_report(members_report(members, finished)),
                      on_fresh_start=run.measure_baseline, on_divergence=on_divergence, sink=sink)
