"""The β-VAE used by the bias-grid study: MLP Gaussian encoder, MLP decoder, a prior object."""
from dataclasses import dataclass

import torch
from torch import nn

from models.mlp import mlp
from models.priors import StandardNormalPrior


@dataclass(frozen=True)
class MlpVaeConfig:
    data_dim: int = 441  # 21×21 pixels of the 3×3 grid of 7×7 squares
    latent_dim: int = 9  # n² ground-truth latents
    hidden_width: int = 256
    hidden_depth: int = 2


class GaussianMlpEncoder(nn.Module):
    """x (B, D) -> (mu (B, d), logvar (B, d)) of the diagonal Gaussian posterior q(z|x)."""

    def __init__(self, config: MlpVaeConfig):
        super().__init__()
        self.net = mlp(config.data_dim, config.hidden_width, config.hidden_depth, 2 * config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


class MlpVae(nn.Module):
    """Encoder, decoder (mean of a Gaussian likelihood, no output activation) and prior."""

    def __init__(self, config: MlpVaeConfig, prior: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.encoder = GaussianMlpEncoder(config)
        self.decoder = mlp(config.latent_dim, config.hidden_width, config.hidden_depth, config.data_dim)
        self.prior = prior if prior is not None else StandardNormalPrior(config.latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One sample z = mu + σ·ε with ε drawn from `generator` (explicit, so a restored run continues bit-identically)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps
