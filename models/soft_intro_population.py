"""P Soft-IntroVAE members' randomness and priors, stacked over a leading member dimension P.

The networks are the β-VAE population's (models/population.py: `PopulationMlpVae`, every layer a batched product
(P, B, in) × (P, in, out)); this module adds what Soft-IntroVAE needs on top: one prior per member, stacked, and
`MemberNoise`, each member's own torch.Generator.

Randomness is per member and in the lone run's order (`MemberNoise`): every draw is made once per member, from that
member's generator, with exactly the shape the lone run draws (so the CPU's normal sampler, whose output depends on
the size asked for, produces the same numbers), then stacked along P. A member therefore sees the data and noise its
lone run would, whatever the other members are. On a GPU that costs P kernel launches per draw; `PopulationNoise`
draws for all members in one call instead (each member its own independent numbers, not its lone run's). Either can
be drawn ahead of an iteration (`ShapeRecorder`, `PredrawnNoise`), which compiled losses need.

The priors are the lone ones (models/priors.py) over a leading member dimension: a member's components are
(K, d) slices of (P, K, d), its weights a row of (P, K), its clipping bounds a row of (P, d); the mixture maths is
the lone functions' (`mixture_feature_weights`, the fused log-sum-exp, `soft_clip_logvar`,
`diagonal_gaussian_log_prob`), called on stacked tensors.
"""

import torch
from torch import nn

from models.priors import (
    LOG_2PI,
    NUM_KL_SAMPLES,
    MixtureOfGaussiansPrior,
    MixtureWeights,
    StandardNormalPrior,
    VampPrior,
    diagonal_gaussian_log_prob,
    mixture_joint_log_prob,
    mixture_log_prob_and_usage,
    soft_clip_logvar,
)


def usable_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """(P, K) sampling weights with the rows of members whose weights are not finite (they diverged this interval)
    made uniform, so such a member cannot stop the others' step (torch.multinomial raises on NaN)."""
    usable = torch.isfinite(probabilities).all(dim=-1, keepdim=True) & (probabilities >= 0).all(-1, keepdim=True)
    return torch.where(usable, probabilities, torch.ones_like(probabilities))


class MemberNoise:
    """The members' generators, one each (the lone runs' own, seeded as each lone run seeds it): every draw is one
    call per member, and each member gets its lone run's numbers."""

    def __init__(self, generators: list[torch.Generator], device: torch.device):
        self.generators, self.device = generators, device

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normals of `shape` per member, as each lone run draws them: (P, *shape)."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in self.generators])

    def multinomial(self, probabilities: torch.Tensor, n: int) -> torch.Tensor:
        """n indices per member, with replacement: (P, K) -> (P, n)."""
        return torch.stack([torch.multinomial(row, n, replacement=True, generator=g)
                            for row, g in zip(usable_probabilities(probabilities), self.generators, strict=True)])

    def draw_ahead(self, shapes: list[tuple[int, ...]]) -> "PredrawnNoise":
        """The normals of `shapes`, in that order, drawn now (what an iteration's objectives will ask for)."""
        return PredrawnNoise([self.randn(shape) for shape in shapes])


class PopulationNoise(MemberNoise):
    """One generator for the whole population: every draw is one call for all P members (on a GPU, P − 1 kernel
    launches fewer per draw, which otherwise dominate a large population's step). Each member's numbers are
    independent standard normals (and component draws) as its own generator's would be, but not its lone run's:
    a member is then a run of its config on another random stream, not a copy of the lone run."""

    def __init__(self, generator: torch.Generator, size: int, device: torch.device):
        super().__init__([generator], device)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn((self.size, *shape), generator=self.generators[0], device=self.device)  # (P, *shape)

    def multinomial(self, probabilities: torch.Tensor, n: int) -> torch.Tensor:
        return torch.multinomial(usable_probabilities(probabilities), n, replacement=True,
                                 generator=self.generators[0])  # (P, n)


class ShapeRecorder:
    """MemberNoise that notes the shape of every normal drawn through it: an eager iteration tells the next ones
    what to draw ahead."""

    def __init__(self, noise: MemberNoise):
        self.noise, self.shapes = noise, []

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        self.shapes.append(tuple(shape))
        return self.noise.randn(shape)


class PredrawnNoise:
    """An iteration's normals drawn before its losses run, handed out in the order they were drawn. Each member's
    generator makes the same draws, in the same order and shapes, as when the objectives draw as they go, so the
    numbers are the same; the losses are then pure tensor functions, which torch.compile traces whole and a CUDA
    graph can replay (a draw from a torch.Generator would break the graph)."""

    def __init__(self, draws: list[torch.Tensor]):
        self.draws = draws

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        draw = self.draws.pop(0)  # (P, *shape)
        if tuple(draw.shape[1:]) != tuple(shape):
            raise RuntimeError(f"pre-drawn noise of shape {tuple(draw.shape[1:])} where {tuple(shape)} was asked "
                               "for: the iteration draws differently from the one recorded")
        return draw


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, noise: MemberNoise) -> torch.Tensor:
    """models/vae.reparameterise per member: (P, B, d) -> (P, B, d)."""
    return mu + torch.exp(0.5 * logvar) * noise.randn(mu.shape[1:])


def posterior_samples(mu: torch.Tensor, logvar: torch.Tensor, noise: MemberNoise) -> torch.Tensor:
    """models/priors.posterior_samples per member: (P, B, d) -> (P, S, B, d), member-major (each member's draw is
    the lone (S, B, d))."""
    eps = noise.randn((NUM_KL_SAMPLES, *mu.shape[1:]))  # (P, S, B, d)
    return mu[:, None] + torch.exp(0.5 * logvar[:, None]) * eps


class StackedStandardPrior(nn.Module):
    """N(0, I) for every member (no parameters): the lone StandardNormalPrior's maths on (P, ...) tensors."""

    is_mixture = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def sample_noise(self, n: int, noise: MemberNoise) -> tuple:
        return (noise.randn((n, self.latent_dim)),)  # (P, n, d)

    def sample_from_noise(self, prior_noise: tuple) -> torch.Tensor:
        return prior_noise[0]

    def kl_from_posterior(self, mu, logvar, noise=None, detached: bool = False) -> torch.Tensor:
        """Closed form, (P, B, d) -> (P, B); no randomness (as the lone prior draws none)."""
        return StandardNormalPrior.kl_per_dimension(mu, logvar).sum(dim=-1)

    def log_prob(self, z: torch.Tensor, detached: bool = False) -> torch.Tensor:
        return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)


class StackedMixturePrior(MixtureWeights):
    """The shared maths of stacked MoGs and VampPriors (logits (P, K), clipping bounds (P, d)); subclasses give
    raw_components() -> (P, K, d) twice."""

    def components(self, detached: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.raw_components()  # (P, K, d) each
        if self.clip_low.numel():
            logvar = soft_clip_logvar(logvar, self.clip_low[:, None], self.clip_high[:, None])  # bounds (P, 1, d)
        log_w = self.log_weights()
        if detached:
            return mu.detach(), logvar.detach(), log_w.detach()
        return mu, logvar, log_w

    def freeze_variance_bounds(self) -> None:
        with torch.no_grad():
            _, logvar = self.raw_components()
            self.clip_low = logvar.amin(dim=1).detach().clone()  # (P, d): min over each member's K
            self.clip_high = logvar.amax(dim=1).detach().clone()

    def log_prob(self, z: torch.Tensor, detached: bool = False) -> torch.Tensor:
        """(P, ..., d) -> (P, ...), each member against its own mixture."""
        return mixture_log_prob_and_usage(z, *self.components(detached), members=True)[0]

    def sample_noise(self, n: int, noise: MemberNoise) -> tuple:
        """Per member, as MixturePrior.sample_noise: n component indices by weight, then n standard normals."""
        which = noise.multinomial(self.log_weights().detach().exp(), n)  # (P, n)
        return which, noise.randn((n, self.latent_dim))  # (P, n), (P, n, d)

    def sample_from_noise(self, prior_noise: tuple) -> torch.Tensor:
        which, eps = prior_noise
        mu, logvar, _ = self.components()
        index = which[..., None].expand(-1, -1, self.latent_dim)  # (P, n, d)
        return mu.gather(1, index) + torch.exp(0.5 * logvar.gather(1, index)) * eps  # (P, n, d)

    def kl_from_posterior(self, mu, logvar, noise: MemberNoise, detached: bool = False) -> torch.Tensor:
        """The 100-sample MC KL of monte_carlo_kl per member: (P, B, d) -> (P, B)."""
        z = posterior_samples(mu, logvar, noise)  # (P, S, B, d)
        log_q = diagonal_gaussian_log_prob(z, mu[:, None], logvar[:, None])  # (P, S, B)
        return (log_q - self.log_prob(z, detached)).mean(dim=1)

    def kl_and_mean_responsibilities(self, mu, logvar, noise: MemberNoise, responsibility_gradient: bool = True):
        """MixturePrior.kl_and_mean_responsibilities per member: KL (P, B) and r̄ (P, K)."""
        z = posterior_samples(mu, logvar, noise)  # (P, S, B, d)
        log_q = diagonal_gaussian_log_prob(z, mu[:, None], logvar[:, None])  # (P, S, B)
        if not responsibility_gradient:
            log_p, mean_responsibility = mixture_log_prob_and_usage(z, *self.components(), members=True)
            return (log_q - log_p).mean(dim=1), mean_responsibility
        joint = mixture_joint_log_prob(z, *self.components(), members=True)  # (P, S, B, K)
        log_p = torch.logsumexp(joint, dim=-1)  # (P, S, B)
        mean_responsibility = torch.exp(joint - log_p.unsqueeze(-1)).mean(dim=(1, 2))  # (P, K)
        return (log_q - log_p).mean(dim=1), mean_responsibility

    def member_state(self, p: int) -> dict[str, torch.Tensor]:
        """Member p's parameters and clipping bounds, named as the lone prior names them."""
        state = {name: value[p].detach().clone() for name, value in self.named_parameters()}
        state.update(clip_low=self.clip_low[p].clone() if self.clip_low.numel() else torch.empty(0),
                     clip_high=self.clip_high[p].clone() if self.clip_high.numel() else torch.empty(0))
        return state


class StackedMixtureOfGaussians(StackedMixturePrior):
    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor, logits: torch.Tensor, learnable_weights: bool):
        super().__init__(logits, mu.shape[-1], learnable_weights)
        self.mu = nn.Parameter(mu.detach().clone())  # (P, K, d)
        self.logvar = nn.Parameter(logvar.detach().clone())  # (P, K, d)

    def raw_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu, self.logvar


class StackedVampPrior(StackedMixturePrior):
    """Components are the (stacked) encoder's posteriors of each member's pseudo-inputs (P, K, D); the encoder is
    passed in as a callable, not registered (it belongs to the VAE, as in VampPrior)."""

    def __init__(self, pseudo_inputs: torch.Tensor, logits: torch.Tensor, latent_dim: int, encode,
                 learnable_weights: bool):
        super().__init__(logits, latent_dim, learnable_weights)
        self.pseudo_inputs = nn.Parameter(pseudo_inputs.detach().clone())  # (P, K, D)
        self._encode = [encode]

    def raw_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encode[0](self.pseudo_inputs)  # (P, K, d) each

    @torch.no_grad()
    def to_mixture_of_gaussians(self) -> StackedMixtureOfGaussians:
        """VampPrior.to_mixture_of_gaussians per member: μ, log σ² of the pseudo-inputs, the logits carried over."""
        mu, logvar = self.raw_components()
        mog = StackedMixtureOfGaussians(mu, logvar, self.logits, self.learnable_weights)
        if self.clip_low.numel():
            mog.clip_low, mog.clip_high = self.clip_low.clone(), self.clip_high.clone()
        return mog


def stack_priors(priors: list[nn.Module], latent_dim: int, encode) -> nn.Module:
    """The lone runs' initial priors (all of one kind) as one stacked prior; `encode`: the stacked encoder."""
    first = priors[0]
    if isinstance(first, StandardNormalPrior):
        return StackedStandardPrior(latent_dim)
    if any(p.squash_to_unit_interval for p in priors if isinstance(p, VampPrior)):
        raise ValueError("squashed pseudo-inputs (images) are not supported by the 2D population")
    logits = torch.stack([p.logits.detach() for p in priors])
    if isinstance(first, VampPrior):
        return StackedVampPrior(torch.stack([p.pseudo_inputs.detach() for p in priors]), logits, latent_dim, encode,
                                first.learnable_weights)
    if isinstance(first, MixtureOfGaussiansPrior):
        return StackedMixtureOfGaussians(torch.stack([p.mu.detach() for p in priors]),
                                         torch.stack([p.logvar.detach() for p in priors]), logits,
                                         first.learnable_weights)
    raise TypeError(f"no stacked form of {type(first).__name__}")
