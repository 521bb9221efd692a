"""The 2D Soft-IntroVAE population engine: many IntroVaeRun members trained together as stacked networks.

Members differ in seed, β_rec, β_kl, β_neg (or β_neg_multiple) and dataset; everything else, the prior kind included
(standard, mog or vamp: one per population), is shared. The config is a lone 2D config (trainables/introvae.py)
whose `members` lists what each member sets, e.g. {"prior": "mog", "members": [{"seed": 0, "dataset": "rings"},
{"seed": 1, "dataset": "rings"}]}: the form a sweep's population trials take (sweeps/studies/introvae_2d.py), and
what sweeps/cells.py splits back into one row per member.

Each member is built by its own lone `IntroVaeRun` (kept in `members`): its initial weights, its prior (data
initialisation included) and its torch.Generator, seeded and advanced exactly as the lone run's. The population
stacks the weights and priors (models/soft_intro_population.py) and trains them with batched products; every random
draw is made from each member's generator in the lone run's order and shapes, so member p follows its lone run to
float tolerance (batched products round differently from single ones). The lone runs also serve evaluation: a
member's weights are copied into its lone run, whose own evaluation code (and generator) then runs, so a member's
report has exactly a lone run's keys.

One Adam per player (encoder, decoder, prior) over the stacked parameters is the members' own Adams: Adam is
elementwise and the learning rate (and its schedule) is shared. The VampPrior's conversion to a free MoG and the
freezing of the clipping bounds happen at the lone run's iterations, for every member at once.

Two settings serve GPUs, where a population's step is launch-bound (benchmarks/step_launches.py): `compile_step`
runs the three losses with their backward through torch.compile (CUDA graphs there; the stage's noise drawn ahead,
its shapes recorded in the stage's first, eager, iteration), and `noise_streams: population` draws every member's
data and noise in one call per draw instead of one per member (members then no longer equal their lone runs).

A member whose loss turns non-finite is marked diverged at its first bad iteration (checked once per interval, as the
lone run checks) and zeroed with its optimiser state: it stays finite and still, and nothing of it reaches the others
(every operation is per member; its NaN sampling weights are replaced before torch.multinomial could raise).
"""
import torch

from models.objectives import SoftIntroConfig
from models.population import PopulationMlpVae, StackedMlp
from models.soft_intro_population import MemberNoise, PopulationNoise, ShapeRecorder, stack_priors
from models.soft_intro_population_objectives import PopulationObjectives
from trainables.captured_step import begin_step, compiled_if
from trainables.config import ConfigError
from trainables.data.toy2d import sample_2d
from trainables.introvae import IntroVaeRun, train_introvae
from trainables.introvae import validate_config as validate_lone
from trainables.soft_intro import ThreePlayers
from trainables.trial_loop import (
    Checkpointed,
    Diverged,
    interval_means,
    report_until_done,
    timed_steps,
    trial_device,
)


def member_configs(config: dict) -> list[dict]:
    """The lone config of every member: the shared keys with each entry of `members` (the keys that member sets)."""
    members = config.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
        raise ConfigError("config key 'members' must be a non-empty list of per-member settings (dicts)")
    shared = {k: v for k, v in config.items() if k != "members"}
    return [{**shared, **member} for member in members]


def validate_config(config: dict) -> dict:
    """A 2D trial's config: one run's (trainables/introvae.py), or a population's (`members`), each member a valid
    run of the one prior kind the population shares."""
    if "members" not in config:
        return validate_lone(config)
    members = [validate_lone(member) for member in member_configs(config)]
    if len({member["prior"] for member in members}) > 1:
        raise ConfigError("a population trains one prior kind: 'prior' must be the same for every member")
    return {**config, "members": [dict(m) for m in config["members"]]}


def train_introvae_2d(config: dict, sink=None) -> None:
    """The 2D study's Ray Tune function trainable: a population when the config lists `members` or asks for the
    population engine's own settings (then a population of one, which reports as the lone run), else one run."""
    if "members" in config:
        return train_introvae_population(config, sink)
    if config.get("compile_step") or config.get("noise_streams") == "population":
        return train_introvae_population({**config, "members": [{}]}, sink)
    return train_introvae(config, sink)


class IntroVaePopulationRun(ThreePlayers, Checkpointed):
    checkpoint_file = "introvae_population.pt"

    def __init__(self, config: dict, device: torch.device | str = "cpu"):
        # the lone runs: each member's initial state and generator, later its evaluation (their configs validated)
        self.members = [IntroVaeRun(member, device) for member in member_configs(config)]
        first = self.members[0]
        self.config, self.device = first.config, first.device  # the shared keys are every member's
        self.num_vae_steps, self.vamp_to_mog_step = first.num_vae_steps, first.vamp_to_mog_step
        self.milestones = first.milestones
        self.generators = [member.generator for member in self.members]  # also what each member evaluates with
        if self.config["noise_streams"] == "population":
            self.noise = PopulationNoise(torch.Generator(self.device).manual_seed(self.config["seed"]),
                                         len(self.members), self.device)
        else:
            self.noise = MemberNoise(self.generators, self.device)
        # members read their own batches (P, B, 2): no shared first layer (input_groups None)
        self.model = PopulationMlpVae(
            StackedMlp.from_members([m.model.encoder.net for m in self.members], input_groups=None),
            StackedMlp.from_members([m.model.decoder for m in self.members], input_groups=None),
            first.model.config).to(self.device)
        self.model.prior = stack_priors([m.model.prior for m in self.members], self.config["latent_dim"],
                                        self.model.encode).to(self.device)
        betas = {key: torch.tensor([m.config[key] for m in self.members], device=self.device)
                 for key in ("beta_rec", "beta_kl", "beta_neg")}  # (P,) each
        lone = first.objective
        self.objective = SoftIntroConfig(**betas, scale=lone.scale, r_entropy=lone.r_entropy,
                                                   prior_trainable=lone.prior_trainable,
                                                   sample_with_gradient=lone.sample_with_gradient)
        self.optimisers = {name: self._adam(module) for name, module in self._players().items()}
        self.step = 0
        self.timing = {"warmup_seconds": 0.0, "warmup_iterations": 0, "intro_seconds": 0.0, "intro_iterations": 0}
        self.diverged_at = torch.full((self.size,), -1, dtype=torch.long)  # first non-finite iteration, or -1
        self.objectives = PopulationObjectives(compiled_if(self.config["compile_step"], self.device))
        self.eager_objectives = PopulationObjectives()
        # compiled losses take their noise drawn ahead: the shapes each stage draws, noted in its first iteration
        self.noise_shapes: dict[str, list[tuple[int, ...]]] = {}

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def converted(self) -> bool:
        return self.config["prior"] == "vamp" and not hasattr(self.model.prior, "pseudo_inputs")

    # ---- training ---------------------------------------------------------------------------------------------
    def _step(self, names, loss: torch.Tensor, dead: torch.Tensor) -> None:
        for name in names:
            self.optimisers[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            if len(dead):  # diverged members stay still (their zeroed Adam moments then give a zero update)
                for parameter in self.optimisers[name].param_groups[0]["params"]:
                    if parameter.grad is not None:
                        parameter.grad[dead] = 0.0
            self.optimisers[name].step()

    def train_iteration(self, dead: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration of every member (SoftIntroRun.train_iteration over the member dimension); metrics (P,)."""
        c, it = self.config, self.step
        if c["compile_step"]:
            begin_step(self.device)
        if c["prior"] == "vamp" and c["vamp_to_mog"] and not self.converted and it >= self.vamp_to_mog_step:
            self.convert_vamp_to_mog()
        x = self._batches(c["batch_size"])  # (P, B, 2)
        if it < self.num_vae_steps:
            noise, objectives = self._noise_and_objectives("warm-up")
            loss, metrics = objectives.warmup_loss(self.model, x, self.objective, noise)
            self._step(self.optimisers, loss, dead)
            losses = (metrics["loss"],)
        else:
            prior = self.model.prior
            if it == self.num_vae_steps and prior.is_mixture and c["variance_clipping"] and not prior.clip_low.numel():
                prior.freeze_variance_bounds()
            prior_noise = prior.sample_noise(c["batch_size"], self.noise)
            noise, objectives = self._noise_and_objectives("introspective")
            loss_e, metrics, state = objectives.encoder_loss(self.model, x, prior_noise, self.objective, noise)
            self._step(["encoder"], loss_e, dead)
            loss_d, decoder_metrics = objectives.decoder_loss(self.model, x, prior_noise, state, self.objective, noise)
            learns_prior = self.objective.prior_trainable and "prior" in self.optimisers
            self._step(["decoder", "prior"] if learns_prior else ["decoder"], loss_d, dead)
            metrics.update(decoder_metrics)
            losses = (metrics["encoder_loss"], metrics["decoder_loss"])
        for optimiser in self.optimisers.values():
            optimiser.scheduler.step()
        self.step += 1
        metrics["finite"] = torch.stack([torch.isfinite(loss) for loss in losses]).all(dim=0)  # (P,)
        return metrics

    def _batches(self, n: int) -> torch.Tensor:
        """(P, n, 2): each member's batch of its dataset. Member streams: each from its member's generator, as its
        lone run draws it. One population stream: one draw per dataset for all its members, shuffled (a sampler may
        order its points: 2spirals draws its two arms in halves) and split, so each member's batch is i.i.d."""
        if not isinstance(self.noise, PopulationNoise):
            return torch.stack([member.sample_batch(n) for member in self.members])
        generator = self.noise.generators[0]
        x = torch.empty((self.size, n, 2), device=self.device)
        for dataset in dict.fromkeys(member.config["dataset"] for member in self.members):
            members = [p for p, member in enumerate(self.members) if member.config["dataset"] == dataset]
            points = sample_2d(dataset, len(members) * n, generator, self.device)  # (P_dataset · n, 2)
            shuffled = points[torch.randperm(len(points), generator=generator, device=self.device)]
            x[members] = shuffled.view(len(members), n, 2)
        return x

    def _noise_and_objectives(self, stage: str):
        """Where this iteration's objectives draw their normals, and which objectives run: eager, the members'
        generators as they go; compiled, the stage's draws made ahead, once its first iteration (eager, recorded)
        has shown their shapes. The same numbers either way."""
        if not self.config["compile_step"]:
            return self.noise, self.objectives
        if stage not in self.noise_shapes:
            recorder = ShapeRecorder(self.noise)
            self.noise_shapes[stage] = recorder.shapes  # filled as this iteration draws
            return recorder, self.eager_objectives
        return self.noise.draw_ahead(self.noise_shapes[stage]), self.objectives

    def train_interval(self, num_iterations: int) -> list[dict[str, float]]:
        """Iterations of every member with one host sync at the end; per-member interval means as train/*.
        Members whose loss went non-finite are marked diverged and zeroed; Diverged once none is left."""
        self.model.train()
        first = self.step
        dead = (self.diverged_at >= 0).nonzero().flatten().to(self.device)
        parts, elapsed = timed_steps(lambda: self.train_iteration(dead), num_iterations)
        finite = torch.stack([p.pop("finite") for p in parts]).cpu()  # (iterations, P)
        bad = ~finite & (self.diverged_at < 0)[None, :]
        for member in bad.any(dim=0).nonzero().flatten().tolist():
            self.diverged_at[member] = first + int(bad[:, member].nonzero()[0]) + 1
            self._zero_members(torch.tensor([member], device=self.device))
        self._count_time(first, num_iterations, elapsed)
        if not bool((self.diverged_at < 0).any()):
            raise Diverged(int(self.diverged_at.max()))
        means = {k: v.tolist() for k, v in interval_means(parts).items()}
        rate, living = num_iterations / elapsed, int((self.diverged_at < 0).sum())
        stage = 1.0 if self.step <= self.num_vae_steps else 2.0
        return [{**{f"train/{k}": v[m] for k, v in means.items()}, "train/iterations_per_second": rate,
                 "train/model_iterations_per_second": rate * living, "train/stage": stage}
                for m in range(self.size)]

    def _count_time(self, first: int, num_iterations: int, elapsed: float) -> None:
        warmup = max(0, min(self.step, self.num_vae_steps) - first)
        self.timing["warmup_iterations"] += warmup
        self.timing["intro_iterations"] += num_iterations - warmup
        self.timing["warmup_seconds"] += elapsed * warmup / num_iterations
        self.timing["intro_seconds"] += elapsed * (num_iterations - warmup) / num_iterations

    @torch.no_grad()
    def _zero_members(self, members: torch.Tensor) -> None:
        """Zero the members' weights, prior, clipping bounds and Adam moments: finite and still from now on."""
        prior = self.model.prior
        tensors = [*self.model.parameters(), *((prior.clip_low, prior.clip_high) if prior.is_mixture else ())]
        for optimiser in self.optimisers.values():
            for state in optimiser.state.values():
                tensors += [v for v in state.values() if torch.is_tensor(v) and v.dim() > 0]
        for tensor in tensors:
            if tensor.numel():
                tensor[members] = 0.0

    # ---- evaluation: each member through its lone run's own code ---------------------------------------------
    def member_run(self, p: int) -> IntroVaeRun:
        """Member p's lone run holding the member's current weights, prior and timing (its generator already is the
        member's)."""
        run = self.members[p]
        weights = self.model.member(p)
        run.model.encoder.load_state_dict(weights.encoder.state_dict())
        run.model.decoder.load_state_dict(weights.decoder.state_dict())
        if self.model.prior.is_mixture:
            if self.converted and not run.converted:
                run.convert_vamp_to_mog()
            state = self.model.prior.member_state(p)
            run.model.prior.clip_low, run.model.prior.clip_high = state["clip_low"], state["clip_high"]
            run.model.prior.load_state_dict(state)
        run.step, run.timing = self.step, dict(self.timing)
        return run

    def evaluate_histograms(self) -> list[dict[str, float]]:
        return [self.member_run(p).evaluate_histograms() for p in range(self.size)]

    def evaluate_final(self) -> list[dict]:
        return [self.member_run(p).evaluate_final() for p in range(self.size)]

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        prior = self.model.prior
        return {"model": self.model.state_dict(), "converted": self.converted, "step": self.step,
                "optimisers": {k: o.state_dict() for k, o in self.optimisers.items()},
                "schedulers": {k: o.scheduler.state_dict() for k, o in self.optimisers.items()},
                "generators": [g.get_state() for g in self.generators], "timing": dict(self.timing),
                "population_generator": self.noise.generators[0].get_state()
                if isinstance(self.noise, PopulationNoise) else None,
                "diverged_at": self.diverged_at.clone(),
                "clip_bounds": (prior.clip_low, prior.clip_high) if prior.is_mixture else None}

    def load_state_dict(self, state: dict) -> None:
        if state["converted"] and not self.converted:
            self.convert_vamp_to_mog()
        if state["clip_bounds"] is not None:  # buffers sized at the first introspective iteration
            self.model.prior.clip_low, self.model.prior.clip_high = (b.to(self.device) for b in state["clip_bounds"])
        self.model.load_state_dict(state["model"])
        for name, optimiser in self.optimisers.items():
            optimiser.load_state_dict(state["optimisers"][name])
            optimiser.scheduler.load_state_dict(state["schedulers"][name])
        for generator, generator_state in zip(self.generators, state["generators"], strict=True):
            generator.set_state(generator_state)
        if state.get("population_generator") is not None:
            self.noise.generators[0].set_state(state["population_generator"])
        self.step, self.timing = state["step"], dict(state["timing"])
        self.diverged_at = state["diverged_at"].clone()


def train_introvae_population(config: dict, sink=None) -> None:
    """Ray Tune function trainable for one population: reports {"population": [one lone-style report per member]}
    (a population of one reports as the lone run)."""
    device = trial_device(config.get("device", "auto"))
    run = IntroVaePopulationRun(config, device)

    def build_report(members: list[dict], finished: bool) -> list[dict]:
        evaluations = run.evaluate_final() if finished else run.evaluate_histograms()
        reports = []
        for p, (train, evaluation) in enumerate(zip(members, evaluations, strict=True)):
            diverged = int(run.diverged_at[p])
            report = {**train, **evaluation}  # a lone run's keys (introvae_report), per member
            report.update(seed=run.members[p].config["seed"], dataset=run.members[p].config["dataset"],
                          diverged_at_step=diverged, status="diverged" if diverged >= 0 else
                          ("completed" if finished else "running"))
            reports.append(report)
        return reports[0] if run.size == 1 else {"population": reports}

    report_until_done(run, run.config["steps"], run.config["report_every"], device, build_report, sink=sink)
