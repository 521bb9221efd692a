"""Soft-IntroVAE with a standard, mixture-of-Gaussians or VampPrior prior (spec: introvae.md).

`train_introvae(config)` is the Ray Tune function trainable; `IntroVaeRun` is its Ray-free core (model, three
optimisers, schedulers, RNGs, stage logic, checkpoints, evaluation). 2D datasets now; images slot in through
`build_model` / `sample_batch` (issue "images").

Per iteration: stage 1 (`iteration < num_vae`) trains encoder, decoder and prior on the β-ELBO; stage 2 runs the
encoder step, then the decoder step (the prior steps with the decoder unless `prior_mode` is 'fixed'). A VampPrior
can become a free MoG at `num_vae − 100`; adaptive variance clipping freezes its bounds at the first introspective
step. Every `report_every` iterations it reports `train/*` and the histogram metrics `eval/kl`, `eval/jsd*` (cheap:
5,000 points each, so ASHA can compare trials at any rung); the final report adds gnELBO, mode usage, throughput per
stage and the density image. A NaN/inf loss ends the trial with status 'diverged'.
"""
import time

import torch

from models.objectives import SoftIntroConfig, decoder_loss, encoder_loss, warmup_loss
from models.priors import MixtureOfGaussiansPrior, StandardNormalPrior, VampPrior
from models.vae import MlpVae, MlpVaeConfig
from trainables.config import ConfigError, Field, non_negative, positive, validate
from trainables.data.toy2d import DATASETS, SQUARE_HALF_WIDTH, sample_2d
from trainables.metrics import density2d
from trainables.optim import adam
from trainables.trial_loop import (
    Checkpointed,
    interval_means,
    raise_if_diverged,
    report_until_done,
    timed_steps,
    trial_device,
)

STUDY = "introvae"
VAMP_TO_MOG_BEFORE = 100  # 2D: the reference converts the VampPrior at iteration num_vae − 100
# Soft-IntroVAE's reference (β_kl, β_rec, β_neg) per 2D dataset, used where the config leaves a β at 0
REFERENCE_BETAS = {"8gaussians": (0.3, 0.2, 0.9), "2spirals": (0.5, 0.2, 1.0), "checkerboard": (0.1, 0.2, 0.2),
                   "rings": (0.2, 0.2, 1.0)}

# one word per idea across studies: a training iteration is a step (configs saved before keep working)
RENAMED = {"iterations": "steps"}
FIELDS = {
    "dataset": Field("8gaussians", str, "2D dataset", choices=DATASETS),
    "prior": Field("standard", str, "standard N(0, I), mog (mixture of Gaussians) or vamp (VampPrior)",
                   choices=("standard", "mog", "vamp")),
    "num_components": Field(64, int, "K of the mixture priors", positive, "> 0"),
    "learnable_weights": Field(True, bool, "mixture weights softmax(w) trained (else uniform 1/K)"),
    "prior_init": Field("data", str, "data: from K training points; random", choices=("data", "random")),
    "vamp_to_mog": Field(True, bool, "turn the VampPrior into a free MoG 100 iterations before stage 2"),
    "prior_mode": Field("trainable", str, "trainable: the prior steps with the decoder in stage 2; fixed: stage 1 "
                        "only", choices=("trainable", "fixed")),
    "sample_with_gradient": Field(False, bool, "prior samples carry gradient into the prior (trainable mode)"),
    "variance_clipping": Field(True, bool, "adaptive variance clipping of mixture log-variances in stage 2"),
    "r_entropy": Field(0.0, float, "weight of the responsibility regulariser (encoder loss)", non_negative, ">= 0"),
    "beta_rec": Field(0.0, float, "β_rec (0: the dataset's reference value)", non_negative, ">= 0"),
    "beta_kl": Field(0.0, float, "β_kl (0: the dataset's reference value)", non_negative, ">= 0"),
    "beta_neg": Field(0.0, float, "β_neg (0: the dataset's reference value)", non_negative, ">= 0"),
    "beta_neg_multiple": Field(0.0, float, "if > 0, β_neg = this × β_kl (the prior paper's search: 1…5)",
                               non_negative, ">= 0"),
    "steps": Field(30_000, int, "training iterations (one optimiser step of each player)", positive, "> 0"),
    "num_vae": Field(2_000, int, "warm-up iterations of plain β-ELBO before the introspective stage",
                     non_negative, ">= 0"),
    "batch_size": Field(512, int, "points per iteration", positive, "> 0"),
    "learning_rate": Field(2e-4, float, "Adam learning rate of encoder, decoder and prior", positive, "> 0"),
    "lr_milestones": Field("10000,15000", str, "iterations at which every learning rate is multiplied by 0.1 "
                           "(the reference's MultiStepLR; '' for none)", lambda v: _milestones(v) is not None,
                           "comma-separated positive integers"),
    "hidden_width": Field(256, int, "MLP width", positive, "> 0"),
    "hidden_depth": Field(3, int, "MLP hidden layers", positive, "> 0"),
    "latent_dim": Field(2, int, "latent size", positive, "> 0"),
    "report_every": Field(500, int, "iterations per report and checkpoint", positive, "> 0"),
    "eval_points": Field(5_000, int, "data and generated points for the histogram metrics", positive, "> 0"),
    "gnelbo_grid": Field(1024, int, "grid resolution for gnELBO (1024: the reference; 0: skip)",
                         non_negative, ">= 0"),
    "gnelbo_data_points": Field(12_800, int, "data points for gnELBO", positive, "> 0"),
    "density_image": Field(128, int, "resolution of the density image stored with the results", positive, "> 0"),
    "seed": Field(0, int, "seeds initialisation, data and every sample", non_negative, ">= 0"),
    "device": Field("auto", str, "auto (GPU if the trial has one), cpu or cuda", choices=("auto", "cpu", "cuda")),
}


def _milestones(text: str) -> list[int] | None:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        return None
    return values if all(v > 0 for v in values) else None


def validate_config(config: dict) -> dict:
    full = validate(config, FIELDS, STUDY, RENAMED)
    if full["num_vae"] > full["steps"]:
        raise ConfigError(f"config key 'num_vae' must be <= steps ({full['steps']}), got {full['num_vae']}")
    if full["sample_with_gradient"] and (full["prior"] == "standard" or full["prior_mode"] == "fixed"):
        raise ConfigError("config key 'sample_with_gradient' needs a trainable mixture prior (prior mog or vamp, "
                          "prior_mode trainable)")
    reference = dict(zip(("beta_kl", "beta_rec", "beta_neg"), REFERENCE_BETAS[full["dataset"]], strict=True))
    for key, value in reference.items():
        full[key] = full[key] or value
    if full["beta_neg_multiple"]:
        full["beta_neg"] = full["beta_neg_multiple"] * full["beta_kl"]
    return full


def objective_config(config: dict) -> SoftIntroConfig:
    return SoftIntroConfig(beta_rec=config["beta_rec"], beta_kl=config["beta_kl"], beta_neg=config["beta_neg"],
                           scale=0.5, r_entropy=config["r_entropy"],
                           prior_trainable=config["prior_mode"] == "trainable",
                           sample_with_gradient=config["sample_with_gradient"])


class IntroVaeRun(Checkpointed):
    def __init__(self, config: dict, device: torch.device | str = "cpu"):
        self.config = config = validate_config(config)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(config["seed"])
        self.objective = objective_config(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])  # network initialisation only
            self.model = MlpVae(MlpVaeConfig(2, config["latent_dim"], config["hidden_width"], config["hidden_depth"]))
            self.model.to(self.device)  # before the prior: a data-initialised prior encodes device-side batches
            self.model.prior = self._initial_prior()
        self.model.to(self.device)
        self.optimisers = {name: self._adam(module) for name, module in self._players().items()}
        self.step = 0
        self.timing = {"warmup_seconds": 0.0, "warmup_iterations": 0, "intro_seconds": 0.0, "intro_iterations": 0}

    # ---- construction -----------------------------------------------------------------------------------------
    def sample_batch(self, n: int) -> torch.Tensor:
        return sample_2d(self.config["dataset"], n, self.generator, self.device)

    def _initial_prior(self):
        c = self.config
        if c["prior"] == "standard":
            return StandardNormalPrior(c["latent_dim"])
        k = c["num_components"]
        if c["prior"] == "vamp":
            pseudo = (self.sample_batch(k) if c["prior_init"] == "data"
                      else torch.randn(k, 2, generator=self.generator, device=self.device))
            return VampPrior(pseudo, c["latent_dim"], self.model.encoder, c["learnable_weights"])
        prior = MixtureOfGaussiansPrior(k, c["latent_dim"], c["learnable_weights"], generator=self.generator)
        if c["prior_init"] == "data":
            with torch.no_grad():
                prior.init_from(*self.model.encoder(self.sample_batch(k)))
        return prior

    def _players(self) -> dict:
        players = {"encoder": self.model.encoder, "decoder": self.model.decoder}
        if any(p.requires_grad for p in self.model.prior.parameters()):
            players["prior"] = self.model.prior
        return players

    def _adam(self, module) -> torch.optim.Adam:
        parameters = [p for p in module.parameters() if p.requires_grad]
        optimiser = adam(parameters, self.config["learning_rate"], betas=(0.9, 0.999))
        optimiser.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimiser, milestones=_milestones(self.config["lr_milestones"]), gamma=0.1)
        return optimiser

    def convert_vamp_to_mog(self) -> None:
        """The VampPrior becomes a free MoG (same components and logits), with a fresh optimiser at the same lr."""
        self.model.prior = self.model.prior.to_mixture_of_gaussians()
        old = self.optimisers["prior"]
        self.optimisers["prior"] = self._adam(self.model.prior)
        self.optimisers["prior"].scheduler.load_state_dict(old.scheduler.state_dict())
        for group in self.optimisers["prior"].param_groups:
            group["lr"] = old.param_groups[0]["lr"]

    @property
    def converted(self) -> bool:
        return self.config["prior"] == "vamp" and isinstance(self.model.prior, MixtureOfGaussiansPrior)

    # ---- training ---------------------------------------------------------------------------------------------
    def _step(self, names, loss) -> None:
        for name in names:
            self.optimisers[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            self.optimisers[name].step()

    def train_iteration(self) -> dict[str, torch.Tensor]:
        c, it = self.config, self.step
        if c["prior"] == "vamp" and c["vamp_to_mog"] and not self.converted and it >= c["num_vae"] - VAMP_TO_MOG_BEFORE:
            self.convert_vamp_to_mog()
        x = self.sample_batch(c["batch_size"])
        if it < c["num_vae"]:
            loss, metrics = warmup_loss(self.model, x, self.objective, self.generator)
            self._step(self.optimisers, loss)
            losses = (loss,)
        else:
            prior = self.model.prior
            if it == c["num_vae"] and prior.is_mixture and c["variance_clipping"] and not prior.clip_low.numel():
                prior.freeze_variance_bounds()
            noise = prior.sample_noise(c["batch_size"], self.generator, self.device)
            loss_e, metrics, state = encoder_loss(self.model, x, noise, self.objective, self.generator)
            self._step(["encoder"], loss_e)
            loss_d, decoder_metrics = decoder_loss(self.model, x, noise, state, self.objective, self.generator)
            learns_prior = self.objective.prior_trainable and "prior" in self.optimisers
            self._step(["decoder", "prior"] if learns_prior else ["decoder"], loss_d)
            metrics.update(decoder_metrics)
            losses = (loss_e, loss_d)
        for optimiser in self.optimisers.values():
            optimiser.scheduler.step()
        self.step += 1
        metrics["finite"] = torch.stack([torch.isfinite(loss) for loss in losses]).all()
        return metrics

    def train_interval(self, num_iterations: int) -> dict[str, float]:
        """Iterations with one host sync at the end; means of the stage's metrics as train/*. Raises Diverged."""
        self.model.train()
        first = self.step
        parts, elapsed = timed_steps(self.train_iteration, num_iterations)
        raise_if_diverged(torch.stack([p.pop("finite") for p in parts]), first)
        warmup = sum(1 for i in range(first, self.step) if i < self.config["num_vae"])
        self.timing["warmup_iterations"] += warmup
        self.timing["intro_iterations"] += num_iterations - warmup
        self.timing["warmup_seconds"] += elapsed * warmup / num_iterations
        self.timing["intro_seconds"] += elapsed * (num_iterations - warmup) / num_iterations
        means = {k: float(v) for k, v in interval_means(parts).items()}
        return {**{f"train/{k}": v for k, v in means.items()}, "train/iterations_per_second": num_iterations / elapsed,
                "train/stage": 1.0 if self.step <= self.config["num_vae"] else 2.0}

    # ---- evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        return self.model.decode(self.model.prior.sample(n, self.generator, self.device))

    @torch.no_grad()
    def evaluate_histograms(self) -> dict[str, float]:
        self.model.eval()
        c = self.config
        half = SQUARE_HALF_WIDTH[c["dataset"]]
        p = density2d.histogram(self.sample_batch(c["eval_points"]), half)
        q = density2d.histogram(self.generate(c["eval_points"]), half)
        return {"eval/kl": density2d.histogram_kl(p, q), "eval/jsd_reference": density2d.histogram_jsd_reference(p, q),
                "eval/jsd": density2d.histogram_jsd(p, q)}

    @torch.no_grad()
    def evaluate_final(self) -> dict:
        self.model.eval()
        c = self.config
        half = SQUARE_HALF_WIDTH[c["dataset"]]
        metrics = self.evaluate_histograms()
        started = time.perf_counter()
        if c["gnelbo_grid"]:
            data = density2d.negative_elbo(self.model, self.sample_batch(c["gnelbo_data_points"]), self.generator)
            grid = density2d.negative_elbo(self.model, density2d.square_grid(half, c["gnelbo_grid"], self.device),
                                           self.generator)
            metrics["eval/gnelbo"] = density2d.gnelbo(data, grid)
        prior = self.model.prior
        if prior.is_mixture:
            mu, logvar = self.model.encode(self.sample_batch(c["eval_points"]))
            _, responsibility = prior.kl_and_mean_responsibilities(mu, logvar, self.generator)
            active, entropy = density2d.mode_usage(prior.log_weights(), responsibility)
            metrics.update({"eval/active_modes": active, "eval/assignment_entropy": entropy})
        image = density2d.density_image(lambda g: density2d.negative_elbo(self.model, g, self.generator), half,
                                        c["density_image"], self.device)
        metrics["eval/final_evaluation_seconds"] = time.perf_counter() - started
        t = self.timing
        metrics["eval/warmup_iterations_per_second"] = t["warmup_iterations"] / max(t["warmup_seconds"], 1e-9)
        metrics["eval/intro_iterations_per_second"] = t["intro_iterations"] / max(t["intro_seconds"], 1e-9)
        metrics["plot/density"] = image.astype("float32").ravel().tolist()
        metrics["plot/samples"] = self.generate(1000).cpu().float().ravel().tolist()  # (1000, 2) flattened
        if c["latent_dim"] == 2:  # the latent-mode plot: posterior means of data and the prior's components
            metrics["plot/latent_means"] = self.model.encode(self.sample_batch(1000))[0].cpu().ravel().tolist()
            if prior.is_mixture:
                prior_mu, _, log_w = prior.components()
                metrics["plot/prior_means"] = prior_mu.cpu().ravel().tolist()
                metrics["plot/prior_weights"] = log_w.exp().cpu().tolist()
        return metrics

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "converted": self.converted, "step": self.step,
                "optimisers": {k: o.state_dict() for k, o in self.optimisers.items()},
                "schedulers": {k: o.scheduler.state_dict() for k, o in self.optimisers.items()},
                "generator": self.generator.get_state(), "timing": dict(self.timing),
                "clip_bounds": (self.model.prior.clip_low, self.model.prior.clip_high)
                if self.model.prior.is_mixture else None}

    def load_state_dict(self, state: dict) -> None:
        if state["converted"] and not self.converted:
            self.convert_vamp_to_mog()
        if state["clip_bounds"] is not None:  # buffers sized at the first introspective step
            self.model.prior.clip_low, self.model.prior.clip_high = (b.to(self.device) for b in state["clip_bounds"])
        self.model.load_state_dict(state["model"])
        for name, optimiser in self.optimisers.items():
            optimiser.load_state_dict(state["optimisers"][name])
            optimiser.scheduler.load_state_dict(state["schedulers"][name])
        self.generator.set_state(state["generator"])
        self.step = state["step"] if "step" in state else state["iteration"]  # checkpoints before 2026-11-22 09:00
        self.timing = dict(state["timing"])


def introvae_report(run: IntroVaeRun, train: dict, finished: bool) -> dict:
    """A report's metrics: the interval's train/*, the histogram metrics, and at the end the final evaluation."""
    return {**train, **(run.evaluate_final() if finished else run.evaluate_histograms())}


def train_introvae(config: dict, sink=None) -> None:
    """Ray Tune function trainable for one Soft-IntroVAE run (`sink`: where reports go outside Tune)."""
    config = validate_config(config)
    device = trial_device(config["device"])
    run = IntroVaeRun(config, device)
    report_until_done(run, config["steps"], config["report_every"], device,
                      lambda train, finished: introvae_report(run, train, finished), sink=sink)
