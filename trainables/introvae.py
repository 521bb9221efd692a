"""Soft-IntroVAE with learned priors on the 2D density benchmark (spec: introvae.md, "2D benchmark").

`train_introvae(config)` is the Ray Tune function trainable; `IntroVaeRun` is its Ray-free core: the shared
Soft-IntroVAE run (trainables/soft_intro.py) with MLP networks, 2D points and the histogram/gnELBO evaluation.

Per iteration: stage 1 (`iteration < num_vae`) trains encoder, decoder and prior on the β-ELBO; stage 2 runs the
encoder step, then the decoder step (the prior steps with the decoder unless `prior_mode` is 'fixed'). A VampPrior
can become a free MoG at `num_vae − 100`; adaptive variance clipping freezes its bounds at the first introspective
step. Every `report_every` iterations it reports `train/*` and the histogram metrics `eval/kl`, `eval/jsd*` (cheap:
5,000 points each, so ASHA can compare trials at any rung); the final report adds gnELBO, mode usage, throughput per
stage and the density image. A NaN/inf loss ends the trial with status 'diverged'.
"""
import time

import torch

from models.vae import MlpVae, MlpVaeConfig
from trainables.config import ConfigError, Field, non_negative, positive, validate
from trainables.data.toy2d import DATASETS, SQUARE_HALF_WIDTH, sample_2d
from trainables.metrics import density2d
from trainables.soft_intro import SOFT_INTRO_FIELDS, SoftIntroRun, complete_soft_intro
from trainables.trial_loop import report_until_done, trial_device

STUDY = "introvae"
VAMP_TO_MOG_BEFORE = 100  # 2D: the reference converts the VampPrior at iteration num_vae − 100
# Soft-IntroVAE's reference (β_kl, β_rec, β_neg) per 2D dataset, used where the config leaves a β at 0
REFERENCE_BETAS = {"8gaussians": (0.3, 0.2, 0.9), "2spirals": (0.5, 0.2, 1.0), "checkerboard": (0.1, 0.2, 0.2),
                   "rings": (0.2, 0.2, 1.0)}

# one word per idea across studies: a training iteration is a step (configs saved before keep working)
RENAMED = {"iterations": "steps"}
FIELDS = {
    "dataset": Field("8gaussians", str, "2D dataset", choices=DATASETS),
    **SOFT_INTRO_FIELDS,
    "steps": Field(30_000, int, "training iterations (one optimiser step of each player)", positive, "> 0"),
    "num_vae": Field(2_000, int, "warm-up iterations of plain β-ELBO before the introspective stage",
                     non_negative, ">= 0"),
    "batch_size": Field(512, int, "points per iteration", positive, "> 0"),
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
    "compile_step": Field(False, bool, "train through torch.compile (on a GPU: CUDA graphs, far fewer launches; "
                          "on a CPU: fused kernels, no faster) in the population engine, which then runs a lone "
                          "run as a population of one"),
    "noise_streams": Field("member", str, "population engine: member (each member draws its data and noise from "
                           "its own generator: exactly its lone run) or population (one generator draws for all "
                           "members at once: far fewer GPU launches; each member a run on a random stream of its "
                           "own, not its lone run's)", choices=("member", "population")),
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
    return complete_soft_intro(full, REFERENCE_BETAS[full["dataset"]])


class IntroVaeRun(SoftIntroRun):
    """A 2D Soft-IntroVAE run: MLP networks, points of one 2D dataset, histogram and gnELBO evaluation."""
    scale = 0.5  # s of the spec: 0.5 in 2D, not 1/(data dimension)

    def __init__(self, config: dict, device: torch.device | str = "cpu"):
        config = validate_config(config)
        self.num_vae_steps = config["num_vae"]
        self.vamp_to_mog_step = config["num_vae"] - VAMP_TO_MOG_BEFORE
        self.milestones = _milestones(config["lr_milestones"])
        super().__init__(config, device)

    def build_network(self) -> MlpVae:
        c = self.config
        return MlpVae(MlpVaeConfig(2, c["latent_dim"], c["hidden_width"], c["hidden_depth"]))

    def sample_batch(self, n: int) -> torch.Tensor:
        return sample_2d(self.config["dataset"], n, self.generator, self.device)

    def random_pseudo_inputs(self, k: int) -> torch.Tensor:
        return torch.randn(k, 2, generator=self.generator, device=self.device)  # (K, 2), unconstrained in 2D

    # ---- evaluation -------------------------------------------------------------------------------------------
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
        metrics.update(self.mode_usage(self.sample_batch(c["eval_points"])))
        image = density2d.density_image(lambda g: density2d.negative_elbo(self.model, g, self.generator), half,
                                        c["density_image"], self.device)
        metrics["eval/final_evaluation_seconds"] = time.perf_counter() - started
        metrics.update(self.throughput())
        metrics["plot/density"] = image.astype("float32").ravel().tolist()
        metrics["plot/samples"] = self.generate(1000).cpu().float().ravel().tolist()  # (1000, 2) flattened
        if c["latent_dim"] == 2:  # the latent-mode plot: posterior means of data and the prior's components
            metrics["plot/latent_means"] = self.model.encode(self.sample_batch(1000))[0].cpu().ravel().tolist()
            if prior.is_mixture:
                prior_mu, _, log_w = prior.components()
                metrics["plot/prior_means"] = prior_mu.cpu().ravel().tolist()
                metrics["plot/prior_weights"] = log_w.exp().cpu().tolist()
        return metrics


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
