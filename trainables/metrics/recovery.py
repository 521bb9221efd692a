"""How well a trained VAE's latents recover the ground truth, on the enumerated test set.

PMI (the write-up's "proxy for mutual information") is the MSE of a linear map from true latents to learned
posterior means, so it is measured in the *learned* space: an encoder that collapsed to a constant scores a perfect
0. The R² scores (scale-free) and the decoder MSE (measured in pixel space) do not have that hole, and the count of
active latent dimensions flags collapsed models outright. Report all of them.
"""
from collections.abc import Callable, Sequence
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
    """Each field is a tensor with the models' batch shape: () for one model, (P,) for a population."""

    pmi: torch.Tensor  # MSE of the Adam-fitted map z_true -> ẑ (lower = better, 0 also when collapsed)
    pmi_lstsq: torch.Tensor  # the same with the closed-form least-squares map (the optimum Adam approximates)
    decoder_mse: torch.Tensor  # pixel MSE between G(z_true) and D(P(z_true)), P the Adam map
    r2_true_to_learned: torch.Tensor  # R² of predicting ẑ from z_true (NaN when no learned latent varies)
    r2_learned_to_true: torch.Tensor  # R² of predicting z_true from ẑ (0 for a constant encoder)
    active_dims: torch.Tensor  # latents whose mean KL to N(0,1) over the test set exceeds 0.01 nats
    mean_kl: torch.Tensor  # mean total KL over the test set (nats)

    def as_metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """One model's scores as floats."""
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}

    def member_metrics(self, prefix: str = "eval/") -> list[dict[str, float]]:
        """A population's scores, one dict of floats per member."""
        columns = {f"{prefix}{k}": v.flatten().tolist() for k, v in asdict(self).items()}  # (P,) or (G, M)
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square_().mean(dim=(-2, -1))  # (..., N, d) -> (...,); in place: a population's decoded test set
    # is ~0.7 GB, one temporary fewer


def pmi(learned: torch.Tensor, true_latents: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator],
        protocol: PmiProtocol) -> torch.Tensor:
    """PMI alone (used for the random-initialisation baseline). learned (..., N, d) -> (...,); with a sequence of
    G generators, learned is (G, ..., N, d), one group per generator (see fit_linear_adam)."""
    linear_map = fit_linear_adam(true_latents, learned, generator, protocol.epochs, protocol.batch_size,
                                 protocol.learning_rate)
    return _mse(linear_map(true_latents), learned)


@torch.no_grad()
def recovery_scores(
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode: Callable[[torch.Tensor], torch.Tensor],
    test_set: EnumeratedTestSet,
    generator: torch.Generator | Sequence[torch.Generator],
    protocol: PmiProtocol = PmiProtocol(),
) -> RecoveryScores:
    """All recovery metrics. `encode`: x (N, D) -> (mu, logvar), each (..., N, d); `decode`: z (..., N, d) ->
    (..., N, D). The leading dimensions are a population's members (none for a single model); with a sequence of
    G generators they are (G, M): G seed groups, each group's PMI fit drawing from its own generator."""
    mu, logvar = encode(test_set.images)  # (..., N, d) each
    true_latents = test_set.latents  # (N, n²)
    adam_map = fit_linear_adam(true_latents, mu, generator, protocol.epochs, protocol.batch_size,
                               protocol.learning_rate)
    lstsq_map = fit_linear_lstsq(true_latents, mu)
    inverse_map = fit_linear_lstsq(mu, true_latents)
    kl_per_dimension = StandardNormalPrior.kl_per_dimension(mu, logvar).mean(dim=-2)  # (..., d)
    return RecoveryScores(
        pmi=_mse(adam_map(true_latents), mu),
        pmi_lstsq=_mse(lstsq_map(true_latents), mu),
        decoder_mse=_mse(decode(adam_map(true_latents)), test_set.images),
        r2_true_to_learned=r2_score(lstsq_map(true_latents), mu),
        r2_learned_to_true=r2_score(inverse_map(mu), true_latents),
        active_dims=(kl_per_dimension > ACTIVE_DIMENSION_THRESHOLD_NATS).sum(dim=-1),
        mean_kl=kl_per_dimension.sum(dim=-1),
    )


@torch.no_grad()
def example_images(encode: Callable, decode: Callable, images: torch.Tensor, latent_dim: int,
                   count: int = 8) -> torch.Tensor:
    """A picture of the model for its trial's figure: `count` test images spread over the set, their
    reconstructions (decoded posterior means) and `count` decoded prior samples, as uint8 pixels.

    images (N, D) -> (…, 3, count, D), with the models' batch shape in front ((P,) for a population). The prior
    samples use a fixed noise, the same for every model, so figures of different β compare like with like.
    """
    picks = torch.linspace(0, len(images) - 1, count, device=images.device).long()
    originals = images[picks]  # (count, D)
    means, _ = encode(originals)  # (…, count, d)
    generator = torch.Generator(images.device).manual_seed(0)
    noise = torch.randn(count, latent_dim, generator=generator, device=images.device)  # (count, d)
    samples = decode(noise.expand(*means.shape[:-2], count, latent_dim).contiguous())  # (…, count, D)
    reconstructions = decode(means)  # (…, count, D)
    rows = torch.stack([originals.expand_as(reconstructions), reconstructions, samples], dim=-3)
    return (rows.clamp(0, 1) * 255).round().to(torch.uint8)
