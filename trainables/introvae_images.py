"""Soft-IntroVAE with learned priors on images (spec: introvae.md, "Images"): MNIST, FashionMNIST, CIFAR-10 (and
scikit-learn's digits for smoke runs), residual conv networks, FID and a linear probe.

`train_introvae_images(config)` is the Ray Tune function trainable; `ImageIntroVaeRun` its Ray-free core: the shared
Soft-IntroVAE run (trainables/soft_intro.py) with image data and conv networks. Budgets are in epochs, as in the
spec (num_vae = 20 of 220; the VampPrior becomes a free MoG 5 epochs before stage 2); the trial loop counts steps
(epochs × batches per epoch). Each report (every `report_every` epochs) carries `val/rec_mse` on test images and,
where `report_fid_images` > 0, a FID of generated images for ASHA; the last adds FID of generated and reconstructed
images on `fid_images` images, the probe, mode usage, throughput and an image grid.
"""
import math
import os
from pathlib import Path

import numpy as np
import torch

from models.conv import ConvVae, ConvVaeConfig
from trainables.config import ConfigError, Field, non_negative, positive, validate
from trainables.data.images import DATASETS, check_available, load_split
from trainables.metrics.fid import InceptionFeatures, feature_statistics, frechet_distance
from trainables.metrics.probe import probe_accuracies
from trainables.soft_intro import SOFT_INTRO_FIELDS, SoftIntroRun, complete_soft_intro
from trainables.trial_loop import report_until_done, trial_device

STUDY = "introvae_images"
VAMP_TO_MOG_EPOCHS_BEFORE = 5  # images: the reference converts the VampPrior at epoch num_vae − 5
FIXED_TEST_IMAGES = 1_000  # the test images of val/rec_mse and of mode usage
GRID_COLUMNS = 10  # images per row of the trial's figure
GENERATION_BATCH = 500
# per dataset, what a config leaves at 0 / '': channels, latent size, batch, (β_kl, β_rec, β_neg) of the spec
DATASET_DEFAULTS = {
    "mnist": {"channels": "64,128", "latent_dim": 32, "batch_size": 128, "betas": (1.0, 1.0, 128.0)},
    "fmnist": {"channels": "64,128", "latent_dim": 32, "batch_size": 128, "betas": (1.0, 1.0, 256.0)},
    "cifar10": {"channels": "64,128,256", "latent_dim": 128, "batch_size": 32, "betas": (1.0, 1.0, 256.0)},
    "digits": {"channels": "64,128", "latent_dim": 32, "batch_size": 128, "betas": (1.0, 1.0, 128.0)},
}

FIELDS = {
    "dataset": Field("mnist", str, "mnist, fmnist, cifar10, or digits (scikit-learn's 1,797, for smoke runs)",
                     choices=tuple(DATASETS)),
    "data_root": Field("data", str, "folder holding the datasets (torchvision's layout)"),
    "download": Field(False, bool, "let torchvision download missing datasets (needs internet)"),
    **SOFT_INTRO_FIELDS,
    "epochs": Field(220, int, "training epochs", positive, "> 0"),
    "num_vae": Field(20, int, "warm-up epochs of plain β-ELBO before the introspective stage", non_negative, ">= 0"),
    "batch_size": Field(0, int, "images per step (0: the dataset's, 128 or 32 for CIFAR-10)", non_negative, ">= 0"),
    "latent_dim": Field(0, int, "latent size (0: the dataset's, 32 or 128 for CIFAR-10)", non_negative, ">= 0"),
    "channels": Field("", str, "conv channels per scale, e.g. 64,128 ('': the dataset's)",
                      lambda v: v == "" or _channels(v) is not None, "comma-separated positive integers"),
    "train_images": Field(0, int, "0: the whole training split; N: its first N images", non_negative, ">= 0"),
    "report_every": Field(1, int, "epochs per report and checkpoint", positive, "> 0"),
    "fid_images": Field(50_000, int, "images of the final FIDs (generated and reconstructed vs training)",
                        positive, "> 0"),
    "report_fid_images": Field(1_000, int, "images of the FID of generated images at each report (0: none)",
                               non_negative, ">= 0"),
    "probe_images": Field(10_000, int, "training images the probe is fitted on (and at most as many test images)",
                          positive, "> 0"),
}


def _channels(text: str) -> tuple[int, ...] | None:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        return None
    return values if values and all(v > 0 for v in values) else None


def validate_config(config: dict) -> dict:
    full = validate(config, FIELDS, STUDY)
    if full["num_vae"] > full["epochs"]:
        raise ConfigError(f"config key 'num_vae' must be <= epochs ({full['epochs']}), got {full['num_vae']}")
    defaults = DATASET_DEFAULTS[full["dataset"]]
    for key in ("channels", "latent_dim", "batch_size"):
        full[key] = full[key] or defaults[key]
    side = DATASETS[full["dataset"]].shape[1]
    if side % 2 ** len(_channels(full["channels"])):
        raise ConfigError(f"config key 'channels' halves the image {len(_channels(full['channels']))} times; "
                          f"{side} pixels do not allow that")
    return complete_soft_intro(full, defaults["betas"])


def check_data(cells: list[dict]) -> None:
    """Every dataset the cells read is under its data root (or is to be downloaded): checked before trials start."""
    for dataset, root, download in sorted({(c["dataset"], c["data_root"], c["download"]) for c in cells}):
        check_available(dataset, root, download)


class ImageIntroVaeRun(SoftIntroRun):
    squash_pseudo_inputs = True  # VampPrior pseudo-inputs live in the pixel range [0, 1] (hardtanh)

    def __init__(self, config: dict, device: torch.device | str = "cpu",
                 data: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`data`: (images (N, C, H, W) uint8, labels (N,)) to train on instead of the dataset's files (benchmarks:
        any pixels of the dataset's shape cost the same); they serve as the test split too."""
        config = validate_config(config)
        device = torch.device(device)
        if data is None:
            check_available(config["dataset"], config["data_root"], config["download"])
            images, self.labels = load_split(config["dataset"], config["data_root"], True, config["download"])
        else:
            images, self.labels = data
        if config["train_images"]:
            images, self.labels = images[:config["train_images"]], self.labels[:config["train_images"]]
        self.images = images.to(device)  # (N, C, H, W) uint8, on the device: batches are index gathers
        self.steps_per_epoch = max(1, len(images) // config["batch_size"])  # whole batches only (batch norm)
        self.num_vae_steps = config["num_vae"] * self.steps_per_epoch
        self.vamp_to_mog_step = (config["num_vae"] - VAMP_TO_MOG_EPOCHS_BEFORE) * self.steps_per_epoch
        self.milestones = []
        self.scale = 1.0 / math.prod(images.shape[1:])  # s = 1 / (C·H·W)
        self.order_generator = torch.Generator().manual_seed(config["seed"] + 1)  # the epochs' shuffles
        self.order, self.position = torch.randperm(len(images), generator=self.order_generator), 0
        self._test = data
        self._inception: InceptionFeatures | None = None
        super().__init__(config, device)

    @property
    def total_steps(self) -> int:
        return self.config["epochs"] * self.steps_per_epoch

    def build_network(self) -> ConvVae:
        c, (channels_in, side, _) = self.config, self.images.shape[1:]
        return ConvVae(ConvVaeConfig(channels_in, side, _channels(c["channels"]), c["latent_dim"]))

    def sample_batch(self, n: int) -> torch.Tensor:
        """The next n images of this epoch's shuffle, (n, C, H, W) float in [0, 1]; a new shuffle when it runs out."""
        if self.position + n > len(self.order):
            self.order, self.position = torch.randperm(len(self.images), generator=self.order_generator), 0
        index = self.order[self.position:self.position + n].to(self.images.device)
        self.position += n
        return self.images[index].float() / 255.0

    def random_pseudo_inputs(self, k: int) -> torch.Tensor:
        return torch.rand((k, *self.images.shape[1:]), generator=self.generator, device=self.device)

    # ---- evaluation -------------------------------------------------------------------------------------------
    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (M, C, H, W) uint8, labels (M,)) of the test split, loaded once."""
        if self._test is None:
            self._test = load_split(self.config["dataset"], self.config["data_root"], False)
        return self._test

    def _as_float(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device).float() / 255.0

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) in [0, 1] -> decoder of the posterior means, in batches."""
        return torch.cat([self.model.decode(self.model.encode(part)[0])
                          for part in x.split(GENERATION_BATCH)])

    @torch.no_grad()
    def generate_many(self, n: int) -> torch.Tensor:
        return torch.cat([self.generate(min(GENERATION_BATCH, n - start)) for start in range(0, n, GENERATION_BATCH)])

    @torch.no_grad()
    def evaluate_report(self) -> dict[str, float]:
        """Cheap, every report: reconstruction MSE per pixel on fixed test images; FID of generated images."""
        self.model.eval()
        x = self._as_float(self.test[0][:FIXED_TEST_IMAGES])
        metrics = {"val/rec_mse": float(((self.reconstruct(x) - x) ** 2).mean())}
        count = min(self.config["report_fid_images"], len(self.images))
        if count:
            metrics.update(self.fids(count, reconstructed=False))
        return metrics

    @property
    def inception(self) -> InceptionFeatures:
        """Loaded once per run (a report's FID and the final ones share it)."""
        if self._inception is None:
            self._inception = InceptionFeatures(self.device)
        return self._inception

    def fids(self, count: int, reconstructed: bool) -> dict[str, float]:
        """FID of `count` generated (and reconstructed) images against the first `count` training images."""
        inception = self.inception
        reference = self.reference_statistics(inception, count)
        metrics = {"eval/fid_gen": frechet_distance(feature_statistics(inception(self.generate_many(count))),
                                                    reference), "eval/fid_images": count}
        if reconstructed:
            real = self.images[:count].float() / 255.0
            metrics["eval/fid_rec"] = frechet_distance(feature_statistics(inception(self.reconstruct(real))),
                                                       reference)
        return metrics

    def reference_statistics(self, inception: InceptionFeatures, count: int):
        """(μ, Σ) of the first `count` training images, cached under the data root (computed once per dataset and
        count, shared by every trial that reads that root)."""
        c = self.config
        path = Path(c["data_root"]) / "fid_reference" / f"{c['dataset']}-{count}.npz"
        if path.exists():
            with np.load(path) as saved:
                return saved["mu"], saved["sigma"]
        mu, sigma = feature_statistics(inception(self.images[:count].float() / 255.0))
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(temporary, mu=mu, sigma=sigma)
        os.replace(temporary, path)  # whole or absent, whichever trial writes it
        return mu, sigma

    @torch.no_grad()
    def evaluate_final(self) -> dict:
        self.model.eval()
        c = self.config
        metrics = self.evaluate_report()
        metrics.update(self.fids(min(c["fid_images"], len(self.images)), reconstructed=True))
        metrics.update(self.probe())
        test_images = self._as_float(self.test[0][:FIXED_TEST_IMAGES])
        metrics.update(self.mode_usage(test_images))
        metrics.update(self.throughput())
        metrics["plot/images"] = self.image_grid(test_images[:GRID_COLUMNS]).tolist()
        return metrics

    @torch.no_grad()
    def probe(self) -> dict[str, float]:
        """Linear SVM and kNN on one sampled z per image: fitted on training images, scored on test images."""
        count = self.config["probe_images"]
        test_images, test_labels = self.test

        def codes(images: torch.Tensor) -> np.ndarray:  # (N, C, H, W) uint8 -> one z per image (N, d)
            parts = []
            for part in images.split(GENERATION_BATCH):
                mu, logvar = self.model.encode(self._as_float(part))
                noise = torch.randn(mu.shape, generator=self.generator, device=self.device)
                parts.append((mu + torch.exp(0.5 * logvar) * noise).cpu())
            return torch.cat(parts).numpy()

        return probe_accuracies(codes(self.images[:count]), self.labels[:count].numpy(),
                                codes(test_images[:count]), test_labels[:count].numpy())

    @torch.no_grad()
    def image_grid(self, x: torch.Tensor) -> np.ndarray:
        """(rows, GRID_COLUMNS, H·W) uint8 grey: test images, reconstructions, prior samples and, for a mixture,
        the decoded means of its heaviest components."""
        rows = [x, self.reconstruct(x), self.generate(len(x))]
        prior = self.model.prior
        if prior.is_mixture:
            mu, _, log_w = prior.components()
            rows.append(self.model.decode(mu[log_w.argsort(descending=True)[:len(x)]]))
        grey = [row.clamp(0, 1).mean(dim=1).flatten(1) for row in rows]  # (count, H·W): RGB as its mean
        count = min(len(row) for row in grey)
        return (torch.stack([row[:count] for row in grey]) * 255).round().to(torch.uint8).cpu().numpy()

    # ---- checkpoints: the data order besides the shared state ------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "order": self.order.clone(), "position": self.position,
                "order_generator": self.order_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.order, self.position = state["order"].clone(), state["position"]
        self.order_generator.set_state(state["order_generator"])


def train_introvae_images(config: dict, sink=None) -> None:
    """Ray Tune function trainable for one Soft-IntroVAE run on images (`sink`: where reports go outside Tune)."""
    config = validate_config(config)
    device = trial_device(config["device"])
    run = ImageIntroVaeRun(config, device)

    def build_report(train: dict, finished: bool) -> dict:
        return {**train, "epoch": run.step / run.steps_per_epoch,
                **(run.evaluate_final() if finished else run.evaluate_report())}

    report_until_done(run, run.total_steps, config["report_every"] * run.steps_per_epoch, device, build_report,
                      sink=sink)
