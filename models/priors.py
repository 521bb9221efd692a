"""Latent priors. One object owns both `sample` and `log_prob`, so the two can never drift apart.

Every prior also offers `kl_from_posterior(mu, logvar)`: the KL of a diagonal Gaussian posterior to the prior,
per example. The standard prior has it in closed form; learned priors (issue "Soft-IntroVAE") use Monte Carlo.
"""
import math

import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


def diagonal_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension. Shapes broadcast; returns (...,)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(dim=-1)


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) in `latent_dim` dimensions; fixed (no parameters)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)  # (n, d)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)  # (B,)

    def kl_from_posterior(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Closed-form KL(N(mu, diag σ²) ‖ N(0, I)) per example: (B, d) -> (B,)."""
        return self.kl_per_dimension(mu, logvar).sum(dim=-1)

    @staticmethod
    def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Per-dimension terms of the closed-form KL: (B, d) -> (B, d). Used to count active latents."""
        return 0.5 * (mu.pow(2) + torch.exp(logvar) - 1.0 - logvar)
