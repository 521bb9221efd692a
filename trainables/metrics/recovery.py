"""How well a trained VAE's latents recover the ground truth, on the enumerated test set.

PMI (the write-up's "proxy for mutual information") is the MSE of a linear map from true latents to learned
posterior means, so it is measured in the *learned* space: an encoder that collapsed to a constant scores a perfect
0. The R² scores (scale-free) and the decoder MSE (measured in pixel space) do not have that hole, and the count of
active latent dimensions flags collapsed models outright. Report all of them.
"""
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from models.priors import StandardNormalPrior
from trainables.data.biased_grid import EnumeratedTestSet
from trainables.metrics.linear_fit import fit_linear_adam, fit_linear_lstsq, r2_score

ACTIVE_DIMENSION_THRESHOLD_NATS = 0.01


@dataclass(frozen=True)
class PmiProtocol:
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-2


@dataclass(frozen=True)
class RecoveryScores:
    pmi: float  # MSE of the Adam-fitted map z_true -> ẑ (lower = better, 0 also when collapsed)
    pmi_lstsq: float  # the same with the closed-form least-squares map (the optimum Adam approximates)
    decoder_mse: float  # pixel MSE between G(z_true) and D(P(z_true)), P the Adam map
    r2_true_to_learned: float  # R² of predicting ẑ from z_true (NaN when no learned latent varies)
    r2_learned_to_true: float  # R² of predicting z_true from ẑ (0 for a constant encoder)
    active_dims: int  # latents whose mean KL to N(0,1) over the test set exceeds 0.01 nats
    mean_kl: float  # mean total KL over the test set (nats)

    def as_metrics(self, prefix: str = "eval/") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def pmi(learned: torch.Tensor, true_latents: torch.Tensor, generator: torch.Generator, protocol: PmiProtocol) -> float:
    """PMI alone (used for the random-initialisation baseline)."""
    linear_map = fit_linear_adam(true_latents, learned, generator, protocol.epochs, protocol.batch_size,
                                 protocol.learning_rate)
    return float((linear_map(true_latents) - learned).pow(2).mean())


@torch.no_grad()
def recovery_scores(
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode: Callable[[torch.Tensor], torch.Tensor],
    test_set: EnumeratedTestSet,
    generator: torch.Generator,
    protocol: PmiProtocol = PmiProtocol(),
) -> RecoveryScores:
    """All recovery metrics for one model. `encode`: x (N, D) -> (mu, logvar) (N, d); `decode`: z (N, d) -> (N, D)."""
    mu, logvar = encode(test_set.images)  # (N, d) each
    true_latents = test_set.latents  # (N, n²)
    adam_map = fit_linear_adam(true_latents, mu, generator, protocol.epochs, protocol.batch_size,
                               protocol.learning_rate)
    lstsq_map = fit_linear_lstsq(true_latents, mu)
    inverse_map = fit_linear_lstsq(mu, true_latents)
    kl_per_dimension = StandardNormalPrior.kl_per_dimension(mu, logvar).mean(dim=0)  # (d,)
    return RecoveryScores(
        pmi=float((adam_map(true_latents) - mu).pow(2).mean()),
        pmi_lstsq=float((lstsq_map(true_latents) - mu).pow(2).mean()),
        decoder_mse=float((decode(adam_map(true_latents)) - test_set.images).pow(2).mean()),
        r2_true_to_learned=r2_score(lstsq_map(true_latents), mu),
        r2_learned_to_true=r2_score(inverse_map(mu), true_latents),
        active_dims=int((kl_per_dimension > ACTIVE_DIMENSION_THRESHOLD_NATS).sum()),
        mean_kl=float(kl_per_dimension.sum()),
    )
