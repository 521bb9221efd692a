"""The β × training-bias cell: one β-VAE on biased grid images, then how well its latents recover the true ones.

`FIELDS` is the study's config; `BiasGridData` what every run of a cell draws on. The sweeps train cells as
populations (trainables/bias_grid_population.py; one member is the lone case); `BiasGridRun`, one model with its
optimiser, data stream and RNGs, is their test oracle and the benchmarks' baseline.

Reports (one per `report_every` steps): `train/*` means over the interval, `val/*` on a fixed held-out sample of the
training distribution, and in the last report the `eval/*` recovery metrics on the enumerated test set. Each report
carries a checkpoint (model, optimiser, RNG states, step). A non-finite loss ends the trial with status 'diverged'.
"""
import math

import torch

from models.objectives import BetaElboConfig, beta_elbo
from models.vae import MlpVae, MlpVaeConfig
from trainables.config import ConfigError, Field, non_negative, positive, validate
from trainables.data.biased_grid import BiasedGridStream, GridSpec, enumerated_test_set
from trainables.metrics.recovery import PmiProtocol, example_images, pmi, recovery_scores
from trainables.optim import adam
from trainables.trial_loop import Checkpointed, interval_means, raise_if_diverged, timed_steps

STUDY = "bias_grid"
HELDOUT_SEED = 2**31 - 1  # one held-out sample per bias, shared by all trials, so their val/* compare

FIELDS = {
    # the study's axes
    "bias": Field(0.0, float, "mean μ of the training latents, z ~ N(μ·1, I)"),
    "beta": Field(1.0, float, "weight of the KL term (β of the β-VAE)", non_negative, ">= 0"),
    "seed": Field(0, int, "seeds model init, training stream and reparameterisation noise", non_negative, ">= 0"),
    # likelihood: SSE/(2σ²); σ² rescales the effective β (see models/objectives.py)
    "likelihood_variance": Field(0.25, float, "σ² of the Gaussian likelihood (0.25 = data noise: β=1 is the ELBO)",
                                 positive, "> 0"),
    # training
    "steps": Field(10_000, int, "optimiser steps", positive, "> 0"),
    "batch_size": Field(64, int, "images per step", positive, "> 0"),
    "learning_rate": Field(1e-3, float, "Adam learning rate", positive, "> 0"),
    "train_set_size": Field(0, int, "0: fresh images every step; N > 0: a fixed set of N images",
                            non_negative, ">= 0"),
    "report_every": Field(500, int, "steps per report (and checkpoint)", positive, "> 0"),
    "heldout_size": Field(2048, int, "held-out images for val/* each report", positive, "> 0"),
    # architecture
    "hidden_width": Field(256, int, "units per hidden layer (encoder and decoder)", positive, "> 0"),
    "hidden_depth": Field(2, int, "hidden layers (encoder and decoder)", non_negative, ">= 0"),
    "latent_dim": Field(9, int, "latent size (n² = 9 matches the ground truth)", positive, "> 0"),
    # data generator
    "grid_size": Field(3, int, "n: squares per image side", positive, "> 0"),
    "square_size": Field(7, int, "m: pixels per square side", positive, "> 0"),
    "noise_variance": Field(0.25, float, "variance of the i.i.d. pixel noise", non_negative, ">= 0"),
    # evaluation
    "pmi_epochs": Field(3, int, "epochs of Adam for the PMI linear map (the write-up: 3)", positive, "> 0"),
    "pmi_batch_size": Field(64, int, "minibatch of the PMI fit", positive, "> 0"),
    "pmi_learning_rate": Field(1e-2, float, "Adam learning rate of the PMI fit", positive, "> 0"),
    "device": Field("auto", str, "auto (GPU if the trial has one), cpu or cuda", choices=("auto", "cpu", "cuda")),
    # engine (trainables/bias_grid_population.py; the lone BiasGridRun, a test oracle, trains eagerly)
    "compile_step": Field(False, bool, "train with a torch.compile'd loss and its gradients (on a GPU: CUDA graphs, "
                          "mode reduce-overhead, for a launch-bound step); off: eager"),
}


def validate_config(config: dict) -> dict:
    full = validate(config, FIELDS, STUDY)
    if full["grid_size"] > 3:
        # the test set enumerates 3^(n²) images: n = 3 gives 19,683; n = 4 would give 43 million
        raise ConfigError(f"config key 'grid_size' must be <= 3 (the test set has 3^(n²) images), "
                          f"got {full['grid_size']}")
    return full


class BiasGridData:
    """What every bias-grid run (one model or a population) draws on: the training stream and reparameterisation
    noise of its seed, the held-out sample, the enumerated test set and the PMI protocol."""

    def __init__(self, config: dict, device: torch.device | str):
        self.config = config
        self.device = torch.device(device)
        self.spec = GridSpec(config["grid_size"], config["square_size"], config["noise_variance"])
        self.stream = BiasedGridStream(config["bias"], self.spec, config["seed"], self.device,
                                       config["train_set_size"])
        self.noise = torch.Generator(device=self.device).manual_seed(config["seed"] + 1)
        self._heldout: torch.Tensor | None = None
        self._test_set = None

    def new_model(self) -> MlpVae:
        """A model initialised from the seed alone (so every model of one seed starts from the same weights)."""
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c["seed"])  # model initialisation only; training RNGs are explicit
            return MlpVae(MlpVaeConfig(self.spec.num_pixels, c["latent_dim"], c["hidden_width"],
                                       c["hidden_depth"])).to(self.device)

    @property
    def test_set(self):
        if self._test_set is None:
            self._test_set = enumerated_test_set(self.spec, self.device)
        return self._test_set

    @property
    def heldout(self) -> torch.Tensor:
        """A fixed sample of the training distribution, shared by all trials of this bias."""
        if self._heldout is None:
            heldout_stream = BiasedGridStream(self.config["bias"], self.spec, HELDOUT_SEED, self.device)
            self._heldout = heldout_stream.sample(self.config["heldout_size"])[0]
        return self._heldout

    def heldout_noise(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(HELDOUT_SEED)

    def pmi_generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.config["seed"])

    def pmi_protocol(self) -> PmiProtocol:
        c = self.config
        return PmiProtocol(c["pmi_epochs"], c["pmi_batch_size"], c["pmi_learning_rate"])

    @torch.no_grad()
    def pmi_of(self, model) -> float:
        """PMI of one model (MlpVae) on the test set, with this seed's fit: the baseline at initialisation."""
        model.eval()
        mu, _ = model.encode(self.test_set.images)  # (N, d)
        return float(pmi(mu, self.test_set.latents, self.pmi_generator(), self.pmi_protocol()))

    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict(), "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self.noise.set_state(state["noise"])


class BiasGridRun(Checkpointed):
    """Model, optimiser, data stream and RNGs of one model; everything a checkpoint must hold. The sweeps train
    populations (trainables/bias_grid_population.py, one member being the lone case); this is their test oracle."""

    def __init__(self, config: dict, device: torch.device | str = "cpu"):
        self.config = config = validate_config(config)
        self.data = BiasGridData(config, device)
        self.device = self.data.device
        self.model = self.data.new_model()
        self.optimiser = adam(self.model.parameters(), config["learning_rate"])
        self.objective = BetaElboConfig(config["beta"], config["likelihood_variance"])
        self.step = 0
        self.pmi_baseline = math.nan

    # ---- training -------------------------------------------------------------------------------------------
    def _train_step(self) -> dict[str, torch.Tensor]:
        loss, metrics = beta_elbo(self.model, self.data.stream.next_batch(self.config["batch_size"]),
                                  self.objective, self.data.noise)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return metrics

    def train_interval(self, num_steps: int) -> dict[str, float]:
        """`num_steps` optimiser steps; returns the interval means as `train/*`. Raises Diverged on NaN/inf."""
        self.model.train()
        parts, elapsed = timed_steps(self._train_step, num_steps)
        # (num_steps,): one host sync per interval, not per step
        raise_if_diverged(torch.isfinite(torch.stack([p["loss"] for p in parts])), self.step)
        self.step += num_steps
        means = {key: float(value) for key, value in interval_means(parts).items()}
        rate = num_steps / elapsed
        return {**{f"train/{k}": v for k, v in means.items()}, "train/steps_per_second": rate,
                "train/model_steps_per_second": rate}  # one model: the population engine reports P× this

    # ---- evaluation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation(self) -> dict[str, float]:
        """Negative ELBO (β = 1) and the trial's β-loss on a fixed held-out sample of its training distribution."""
        self.model.eval()
        _, parts = beta_elbo(self.model, self.data.heldout, self.objective, self.data.heldout_noise())
        return {
            "val/neg_elbo": float(parts["reconstruction"] + parts["kl"]),
            "val/loss": float(parts["loss"]),
            "val/kl": float(parts["kl"]),
        }

    def measure_baseline(self) -> float:
        """PMI of this very model at its random initialisation (the write-up's reference point)."""
        self.pmi_baseline = self.data.pmi_of(self.model)
        return self.pmi_baseline

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        scores = recovery_scores(self.model.encode, self.model.decode, self.data.test_set, self.data.pmi_generator(),
                                 self.data.pmi_protocol())
        images = example_images(self.model.encode, self.model.decode, self.data.test_set.images,
                                self.config["latent_dim"])
        return {**scores.as_metrics(), "eval/pmi_baseline": self.pmi_baseline,
                "eval/collapsed": float(scores.active_dims == 0), "plot/images": images.cpu().tolist()}

    # ---- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "data": self.data.state_dict(),
            "step": self.step,
            "pmi_baseline": self.pmi_baseline,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.data.load_state_dict(state["data"])
        self.step = state["step"]
        self.pmi_baseline = state["pmi_baseline"]
