"""The Soft-IntroVAE run every data domain shares (spec: introvae.md): the standard, mixture-of-Gaussians or
VampPrior prior, the prior as a third player cooperating with the decoder, the two stages, the VampPrior's
conversion to a free MoG, adaptive variance clipping, responsibility regularisation, divergence, checkpoints.

The 2D benchmark (trainables/introvae.py) and the images (trainables/introvae_images.py) subclass `SoftIntroRun`
with their data, network, scale and evaluation; `SOFT_INTRO_FIELDS` is the part of their configs they share.
"""

import torch

from models.objectives import SoftIntroConfig, decoder_loss, encoder_loss, warmup_loss
from models.priors import MixtureOfGaussiansPrior, StandardNormalPrior, VampPrior
from trainables.config import ConfigError, Field, non_negative, positive
from trainables.metrics import density2d
from trainables.optim import adam
from trainables.trial_loop import Checkpointed, interval_means, raise_if_diverged, timed_steps

SOFT_INTRO_FIELDS = {
    "prior": Field("standard", str, "standard N(0, I), mog (mixture of Gaussians) or vamp (VampPrior)",
                   choices=("standard", "mog", "vamp")),
    "num_components": Field(64, int, "K of the mixture priors", positive, "> 0"),
    "learnable_weights": Field(True, bool, "mixture weights softmax(w) trained (else uniform 1/K)"),
    "prior_init": Field("data", str, "data: from K training points; random", choices=("data", "random")),
    "vamp_to_mog": Field(True, bool, "turn the VampPrior into a free MoG shortly before stage 2"),
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
    "learning_rate": Field(2e-4, float, "Adam learning rate of encoder, decoder and prior", positive, "> 0"),
    "seed": Field(0, int, "seeds initialisation, data and every sample", non_negative, ">= 0"),
    "device": Field("auto", str, "auto (GPU if the trial has one), cpu or cuda", choices=("auto", "cpu", "cuda")),
}


def complete_soft_intro(full: dict, reference_betas: tuple[float, float, float]) -> dict:
    """Checks across keys and the betas a config leaves at 0: (β_kl, β_rec, β_neg) of the dataset's reference."""
    if full["sample_with_gradient"] and (full["prior"] == "standard" or full["prior_mode"] == "fixed"):
        raise ConfigError("config key 'sample_with_gradient' needs a trainable mixture prior (prior mog or vamp, "
                          "prior_mode trainable)")
    for key, value in zip(("beta_kl", "beta_rec", "beta_neg"), reference_betas, strict=True):
        full[key] = full[key] or value
    if full["beta_neg_multiple"]:
        full["beta_neg"] = full["beta_neg_multiple"] * full["beta_kl"]
    return full


def objective_config(config: dict, scale: float) -> SoftIntroConfig:
    return SoftIntroConfig(beta_rec=config["beta_rec"], beta_kl=config["beta_kl"], beta_neg=config["beta_neg"],
                           scale=scale, r_entropy=config["r_entropy"],
                           prior_trainable=config["prior_mode"] == "trainable",
                           sample_with_gradient=config["sample_with_gradient"])


class ThreePlayers:
    """The players' optimisers (encoder, decoder, and the prior when it has trainable parameters: one Adam and
    learning-rate schedule each) and the VampPrior's conversion, shared by a lone run and a population (whose
    parameters are stacked over members: Adam is elementwise, so one Adam is each member's own). Needs `model`,
    `config`, `milestones` and `optimisers`."""

    def _players(self) -> dict:
        players = {"encoder": self.model.encoder, "decoder": self.model.decoder}
        if any(p.requires_grad for p in self.model.prior.parameters()):
            players["prior"] = self.model.prior
        return players

    def _adam(self, module) -> torch.optim.Adam:
        parameters = [p for p in module.parameters() if p.requires_grad]
        optimiser = adam(parameters, self.config["learning_rate"], betas=(0.9, 0.999))
        optimiser.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimiser, milestones=self.milestones, gamma=0.1)
        return optimiser

    def convert_vamp_to_mog(self) -> None:
        """The VampPrior becomes a free MoG (same components and logits), with a fresh optimiser at the same lr."""
        self.model.prior = self.model.prior.to_mixture_of_gaussians()
        old = self.optimisers["prior"]
        self.optimisers["prior"] = self._adam(self.model.prior)
        self.optimisers["prior"].scheduler.load_state_dict(old.scheduler.state_dict())
        for group in self.optimisers["prior"].param_groups:
            group["lr"] = old.param_groups[0]["lr"]


class SoftIntroRun(ThreePlayers, Checkpointed):
    """One Soft-IntroVAE run: model, prior, three players' optimisers and schedulers, the RNG, the two stages.

    A subclass gives the data and the network: `build_network()` (a VAE: encoder -> (mu, logvar), decoder, prior
    slot), `sample_batch(n)`, `random_pseudo_inputs(k)`, and sets `scale` (s of the spec), `num_vae_steps` (the
    warm-up), `vamp_to_mog_step`, `milestones` (learning-rate decay steps) and `squash_pseudo_inputs` before calling
    this constructor with its validated config.
    """
    scale: float
    num_vae_steps: int
    vamp_to_mog_step: int
    milestones: list[int]
    squash_pseudo_inputs: bool = False

    def __init__(self, config: dict, device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(config["seed"])
        self.objective = objective_config(config, self.scale)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])  # network initialisation only
            self.model = self.build_network()
            self.model.to(self.device)  # before the prior: a data-initialised prior encodes device-side batches
            self.model.prior = self._initial_prior()
        self.model.to(self.device)
        self.optimisers = {name: self._adam(module) for name, module in self._players().items()}
        self.step = 0
        self.timing = {"warmup_seconds": 0.0, "warmup_iterations": 0, "intro_seconds": 0.0, "intro_iterations": 0}

    # ---- construction -----------------------------------------------------------------------------------------
    def _initial_prior(self):
        c = self.config
        if c["prior"] == "standard":
            return StandardNormalPrior(c["latent_dim"])
        k = c["num_components"]
        if c["prior"] == "vamp":
            pseudo = self.sample_batch(k) if c["prior_init"] == "data" else self.random_pseudo_inputs(k)
            return VampPrior(pseudo.float(), c["latent_dim"], self.model.encoder, c["learnable_weights"],
                             self.squash_pseudo_inputs)
        prior = MixtureOfGaussiansPrior(k, c["latent_dim"], c["learnable_weights"], generator=self.generator)
        if c["prior_init"] == "data":
            with torch.no_grad():
                prior.init_from(*self.model.encoder(self.sample_batch(k)))
        return prior

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
        if c["prior"] == "vamp" and c["vamp_to_mog"] and not self.converted and it >= self.vamp_to_mog_step:
            self.convert_vamp_to_mog()
        x = self.sample_batch(c["batch_size"])
        if it < self.num_vae_steps:
            loss, metrics = warmup_loss(self.model, x, self.objective, self.generator)
            self._step(self.optimisers, loss)
            losses = (loss,)
        else:
            prior = self.model.prior
            if it == self.num_vae_steps and prior.is_mixture and c["variance_clipping"] and not prior.clip_low.numel():
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
        warmup = max(0, min(self.step, self.num_vae_steps) - first)
        self.timing["warmup_iterations"] += warmup
        self.timing["intro_iterations"] += num_iterations - warmup
        self.timing["warmup_seconds"] += elapsed * warmup / num_iterations
        self.timing["intro_seconds"] += elapsed * (num_iterations - warmup) / num_iterations
        means = {k: float(v) for k, v in interval_means(parts).items()}
        return {**{f"train/{k}": v for k, v in means.items()}, "train/iterations_per_second": num_iterations / elapsed,
                "train/stage": 1.0 if self.step <= self.num_vae_steps else 2.0}

    # ---- evaluation shared by every domain ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        return self.model.decode(self.model.prior.sample(n, self.generator, self.device))

    @torch.no_grad()
    def mode_usage(self, x: torch.Tensor) -> dict[str, float]:
        """Active modes and the normalised assignment entropy of the aggregate posterior of `x` (mixtures only)."""
        prior = self.model.prior
        if not prior.is_mixture:
            return {}
        mu, logvar = self.model.encode(x)
        _, responsibility = prior.kl_and_mean_responsibilities(mu, logvar, self.generator)
        active, entropy = density2d.mode_usage(prior.log_weights(), responsibility)
        return {"eval/active_modes": active, "eval/assignment_entropy": entropy}

    def throughput(self) -> dict[str, float]:
        t = self.timing
        return {"eval/warmup_iterations_per_second": t["warmup_iterations"] / max(t["warmup_seconds"], 1e-9),
                "eval/intro_iterations_per_second": t["intro_iterations"] / max(t["intro_seconds"], 1e-9)}

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
