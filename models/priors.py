"""Latent priors. One object owns both `sample` and `log_prob`, so the two can never drift apart.

Every prior offers `kl_from_posterior(mu, logvar, generator)`: the KL of a diagonal Gaussian posterior to the
prior, per example. The standard prior has it in closed form; mixtures estimate it by Monte Carlo with
`num_kl_samples` (100) samples per example, as one batched tensor expression (no loop over samples or components).

Mixtures (MoG and VampPrior) share `MixturePrior`: log p(z) = logsumexp_k [log w_k + Σ_d log N(z_d; μ_kd, σ²_kd)],
reducing over d *before* the logsumexp (a product of 1-D mixtures is a common bug). They also own adaptive variance
clipping (bounds frozen at the first introspective step) and responsibilities.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)
NUM_KL_SAMPLES = 100
MC_KL_RANGE = "monte_carlo_kl"  # profiler label of every MC KL forward (benchmarks/introvae_throughput.py)


def diagonal_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension. Shapes broadcast; returns (...,)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(dim=-1)


def posterior_samples(mu: torch.Tensor, logvar: torch.Tensor, num_samples: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """num_samples reparameterised draws per example: (B, d) -> (S, B, d)."""
    eps = torch.randn((num_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def quadratic_features(z: torch.Tensor) -> torch.Tensor:
    """[z², z, 1] per point: (N, d) -> (N, 2d + 1), or per member (P, N, d) -> (P, N, 2d + 1). A Gaussian
    log-density is linear in these."""
    return torch.cat([z * z, z, torch.ones_like(z[..., :1])], dim=-1)


def mixture_feature_weights(mu: torch.Tensor, logvar: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """The (2d + 1, K) matrix W with quadratic_features(z) @ W = log w_k + Σ_d log N(z_d; μ_kd, σ²_kd).

    Expanding the quadratic form turns the (N, K, d) broadcast into one (N, 2d+1) × (2d+1, K) product: the
    100-sample MC KL of 512 points against 64 components is then a few passes over (51200, 64), not over
    (51200, 64, d) several times. A population's members (models/soft_intro_population.py) pass components
    (P, K, d) and log w (P, K) and get (P, 2d + 1, K): the same expression over a leading member dimension.
    """
    precision = torch.exp(-logvar)  # (K, d)
    constant = log_w - 0.5 * (LOG_2PI * mu.shape[-1] + logvar.sum(-1) + (mu.pow(2) * precision).sum(-1))  # (K,)
    return torch.cat([-0.5 * precision.mT, (mu * precision).mT, constant.unsqueeze(-2)], dim=-2)


def _flat_points(z: torch.Tensor, members: bool) -> torch.Tensor:
    """(..., d) -> (N, d); with `members`, (P, ..., d) -> (P, N, d): each member's points stay its own."""
    return z.reshape(z.shape[0], -1, z.shape[-1]) if members else z.reshape(-1, z.shape[-1])


def mixture_joint_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                           log_w: torch.Tensor, members: bool = False) -> torch.Tensor:
    """log w_k + Σ_d log N(z_d; μ_kd, σ²_kd) for all k: z (..., d), components (K, d) -> (..., K).
    members: z (P, ..., d) against each member's own components (P, K, d), log w (P, K) -> (P, ..., K)."""
    flat = _flat_points(z, members)
    return (quadratic_features(flat) @ mixture_feature_weights(mu, logvar, log_w)).reshape(*z.shape[:-1], -1)


def mixture_log_weights(logits: torch.Tensor, learned: bool) -> torch.Tensor:
    """log w over the last axis (K components): log softmax of learned logits, else uniform 1/K. `learned` is the
    prior's setting, never `logits.requires_grad`: freezing the prior for a step (models/freeze.py) turns that off,
    and the frozen prior must still be the learned mixture."""
    if learned:
        return torch.log_softmax(logits, dim=-1)
    return torch.full_like(logits, -math.log(logits.shape[-1]))


class _FeatureLogSumExp(torch.autograd.Function):
    """logsumexp_k (features(z) @ W)_k with a hand-written backward: the forward keeps exp(joint − max) and the
    backward reuses it as the softmax, so the (N, K) tensor is touched ~6 times instead of ~20 (autograd's
    logsumexp recomputes and broadcasts). This is the inner loop of every Monte Carlo KL against a mixture.

    Also returns the responsibilities averaged over the N points (K,), as a constant (no gradient): one
    (1, N) × (N, K) product over what the forward already holds.

    Every product also takes a leading member dimension (z (P, N, d), weights (P, 2d+1, K)) as a batched product;
    on 2-D inputs the operations are the lone ones.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, weights: torch.Tensor):  # z ([P,] N, d), weights ([P,] 2d+1, K)
        features = quadratic_features(z)
        joint = features @ weights  # ([P,] N, K)
        peak = joint.amax(dim=-1, keepdim=True)
        shifted = joint.sub_(peak).exp_()  # in place: exp(joint − peak)
        total = shifted.sum(dim=-1, keepdim=True)  # ([P,] N, 1)
        mean_responsibility = (total.reciprocal().mT @ shifted).squeeze(-2) / z.shape[-2]  # ([P,] K)
        ctx.save_for_backward(z, features, weights, shifted, total)
        ctx.mark_non_differentiable(mean_responsibility)
        return (peak + total.log()).squeeze(-1), mean_responsibility  # ([P,] N), ([P,] K)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_mean_responsibility=None):
        z, features, weights, shifted, total = ctx.saved_tensors
        # d log_p / d joint = softmax × incoming gradient = shifted × scale; that (N, K) product is never formed:
        # the per-row scale moves onto the narrow (N, 2d+1) side of each product, so `shifted` is only read
        scale = grad.unsqueeze(-1) / total  # ([P,] N, 1)
        grad_z = grad_weights = None
        if ctx.needs_input_grad[0]:
            d = z.shape[-1]
            grad_features = (shifted @ weights.mT) * scale  # ([P,] N, 2d+1)
            grad_z = 2 * z * grad_features[..., :d] + grad_features[..., d:2 * d]
        if ctx.needs_input_grad[1]:
            grad_weights = (features * scale).mT @ shifted  # ([P,] 2d+1, K)
        return grad_z, grad_weights


def mixture_log_prob_and_usage(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_w: torch.Tensor,
                               members: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """log Σ_k w_k N(z; μ_k, σ²_k) (..., d) -> (...,), and the mean responsibility of each component over all the
    points (K,), the latter without gradient. members: as mixture_joint_log_prob; usage (P, K)."""
    flat = _flat_points(z, members)
    log_p, usage = _FeatureLogSumExp.apply(flat, mixture_feature_weights(mu, logvar, log_w))
    return log_p.reshape(z.shape[:-1]), usage


def mixture_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """log Σ_k w_k N(z; μ_k, σ²_k): (..., d) -> (...,)."""
    return mixture_log_prob_and_usage(z, mu, logvar, log_w)[0]


def monte_carlo_kl(prior, mu: torch.Tensor, logvar: torch.Tensor, num_samples: int = NUM_KL_SAMPLES,
                   generator: torch.Generator | None = None, detached: bool = False) -> torch.Tensor:
    """KL(q(z|x) ‖ p(z)) ≈ mean_s [log q(z_s|x) − log p(z_s)] per example: (B, d) -> (B,). One batched op."""
    with torch.profiler.record_function(MC_KL_RANGE):
        z = posterior_samples(mu, logvar, num_samples, generator)  # (S, B, d)
        log_q = diagonal_gaussian_log_prob(z, mu, logvar)  # (S, B)
        return (log_q - prior.log_prob(z, detached)).mean(dim=0)


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) in `latent_dim` dimensions; fixed (no parameters)."""

    is_mixture = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def sample_noise(self, n: int, generator: torch.Generator | None = None, device=None) -> tuple:
        return (torch.randn(n, self.latent_dim, generator=generator, device=device),)

    def sample_from_noise(self, noise: tuple) -> torch.Tensor:
        return noise[0]  # (n, d)

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return self.sample_from_noise(self.sample_noise(n, generator, device))

    def log_prob(self, z: torch.Tensor, detached: bool = False) -> torch.Tensor:
        return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)  # (...,)

    def kl_from_posterior(self, mu: torch.Tensor, logvar: torch.Tensor, generator=None,
                          detached: bool = False) -> torch.Tensor:
        """Closed-form KL(N(mu, diag σ²) ‖ N(0, I)) per example: (B, d) -> (B,)."""
        return self.kl_per_dimension(mu, logvar).sum(dim=-1)

    @staticmethod
    def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Per-dimension terms of the closed-form KL: (B, d) -> (B, d). Used to count active latents."""
        return 0.5 * (mu.pow(2) + torch.exp(logvar) - 1.0 - logvar)


def soft_clip_logvar(logvar: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Adaptive variance clipping: logvar − softplus_β(logvar − hi) + softplus_β(lo − logvar), β = 10/(|hi − lo|+1e-8).

    softplus_β(x) = log(1 + exp(βx))/β, and x itself where βx > 20 (torch's threshold semantics). Where hi = lo the
    dimension is pinned to hi. low/high: (d,); logvar: (K, d).
    """
    sharpness = 10.0 / ((high - low).abs() + 1e-8)  # (d,)
    above = F.softplus((logvar - high) * sharpness, beta=1.0, threshold=20.0) / sharpness
    below = F.softplus((low - logvar) * sharpness, beta=1.0, threshold=20.0) / sharpness
    clipped = logvar - above + below
    return torch.where(high == low, high.expand_as(logvar), clipped)


class MixtureWeights(nn.Module):
    """A mixture's weights, softmax(logits) or uniform, and its clipping-bound buffers: one member's (K,) logits
    here, a population's (P, K) in models/soft_intro_population.py. Subclasses give `raw_components()`."""

    is_mixture = True

    def __init__(self, logits: torch.Tensor, latent_dim: int, learnable_weights: bool):
        super().__init__()
        self.num_components, self.latent_dim = logits.shape[-1], latent_dim
        self.logits = nn.Parameter(logits.detach().clone(), requires_grad=learnable_weights)  # ([P,] K)
        self.weights_learned = learnable_weights  # not logits.requires_grad, which freezing turns off
        # frozen at the first introspective step ((d,), or (P, d)); empty until then
        self.register_buffer("clip_low", torch.empty(0, device=logits.device))
        self.register_buffer("clip_high", torch.empty(0, device=logits.device))

    def raw_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @property
    def learnable_weights(self) -> bool:
        return self.weights_learned

    def log_weights(self) -> torch.Tensor:
        return mixture_log_weights(self.logits, self.weights_learned)  # ([P,] K)


class MixturePrior(MixtureWeights):
    """Shared mixture maths; subclasses provide `raw_components()` -> (mu (K, d), logvar (K, d))."""

    def __init__(self, num_components: int, latent_dim: int, learnable_weights: bool):
        super().__init__(torch.zeros(num_components), latent_dim, learnable_weights)
        self.clipping_enabled = True

    # ---- components -----------------------------------------------------------------------------------------

    def components(self, detached: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu (K, d), logvar (K, d) after clipping, log w (K,)): every read of the prior goes through here.

        detached: the prior as a constant (p_ψ.detach() in the decoder loss): no gradient reaches its parameters.
        """
        mu, logvar = self.raw_components()
        if self.clipping_enabled and self.clip_low.numel():
            logvar = soft_clip_logvar(logvar, self.clip_low, self.clip_high)
        log_w = self.log_weights()
        if detached:
            return mu.detach(), logvar.detach(), log_w.detach()
        return mu, logvar, log_w

    def freeze_variance_bounds(self) -> None:
        """At the first introspective step: lo_d, hi_d = min_k, max_k of log σ²_kd, frozen from now on."""
        with torch.no_grad():
            _, logvar = self.raw_components()
            self.clip_low = logvar.min(dim=0).values.detach().clone()
            self.clip_high = logvar.max(dim=0).values.detach().clone()

    # ---- density, sampling, responsibilities ----------------------------------------------------------------
    def joint_log_prob(self, z: torch.Tensor, detached: bool = False) -> torch.Tensor:
        """log w_k + log N(z; μ_k, σ²_k) for every component: (..., d) -> (..., K)."""
        return mixture_joint_log_prob(z, *self.components(detached))

    def log_prob(self, z: torch.Tensor, detached: bool = False) -> torch.Tensor:
        return mixture_log_prob(z, *self.components(detached))  # (...,)

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """r_k(z) = w_k N(z; μ_k, σ²_k) / Σ_j w_j N(z; μ_j, σ²_j): (..., d) -> (..., K), summing to 1."""
        return torch.softmax(self.joint_log_prob(z), dim=-1)

    def sample_noise(self, n: int, generator: torch.Generator | None = None, device=None) -> tuple:
        """The randomness of n draws: component indices by weight (n,) and standard normals (n, d)."""
        log_w = self.log_weights().detach()
        which = torch.multinomial(log_w.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=log_w.device)
        return which, eps

    def sample_from_noise(self, noise: tuple) -> torch.Tensor:
        """μ_k + σ_k ε for the drawn components; differentiable in μ, σ (sampling with gradient)."""
        which, eps = noise
        mu, logvar, _ = self.components()
        return mu[which] + torch.exp(0.5 * logvar[which]) * eps  # (n, d)

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return self.sample_from_noise(self.sample_noise(n, generator, device))

    def kl_from_posterior(self, mu: torch.Tensor, logvar: torch.Tensor, generator=None,
                          detached: bool = False) -> torch.Tensor:
        return monte_carlo_kl(self, mu, logvar, NUM_KL_SAMPLES, generator, detached)

    def kl_and_mean_responsibilities(self, mu: torch.Tensor, logvar: torch.Tensor, generator=None,
                                     responsibility_gradient: bool = True):
        """MC KL per example (B,) and r̄ (K,), the responsibilities averaged over the same 100 samples of every
        example: one pass over the (S·B, K) joint serves both. `responsibility_gradient=False` (the
        responsibility regulariser is off) takes the fused path, where r̄ is a constant."""
        with torch.profiler.record_function(MC_KL_RANGE):
            z = posterior_samples(mu, logvar, NUM_KL_SAMPLES, generator)  # (S, B, d)
            if not responsibility_gradient:
                log_p, mean_responsibility = mixture_log_prob_and_usage(z, *self.components())
                return (diagonal_gaussian_log_prob(z, mu, logvar) - log_p).mean(dim=0), mean_responsibility
            joint = self.joint_log_prob(z)  # (S, B, K)
            log_p = torch.logsumexp(joint, dim=-1)  # (S, B)
            kl = (diagonal_gaussian_log_prob(z, mu, logvar) - log_p).mean(dim=0)  # (B,)
            mean_responsibility = torch.exp(joint - log_p.unsqueeze(-1)).mean(dim=(0, 1))  # (K,)
            return kl, mean_responsibility


class MixtureOfGaussiansPrior(MixturePrior):
    """K free diagonal Gaussians with (optionally learnable) weights softmax(w), w initialised at 0."""

    def __init__(self, num_components: int, latent_dim: int, learnable_weights: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__(num_components, latent_dim, learnable_weights)
        # init "random": μ ~ N(0,1)/√(K·d), log σ² ~ N(0,1); `init_from` replaces them with encoder outputs
        scale = 1.0 / math.sqrt(num_components * latent_dim)
        device = generator.device if generator is not None else None  # a CUDA generator draws on the GPU
        self.mu = nn.Parameter(torch.randn(num_components, latent_dim, generator=generator, device=device) * scale)
        self.logvar = nn.Parameter(torch.randn(num_components, latent_dim, generator=generator, device=device))

    def raw_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu, self.logvar

    @torch.no_grad()
    def init_from(self, mu: torch.Tensor, logvar: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Init "data": encoder outputs of K training points (K, d); or a VampPrior's components when converted."""
        self.mu.copy_(mu)
        self.logvar.copy_(logvar)
        if logits is not None:
            self.logits.copy_(logits)  # carry the logits over (not softmax(w): the reference's quirk)


class VampPrior(MixturePrior):
    """p(z) = Σ_k w_k q_φ(z | u_k): components are the shared encoder's posteriors of learnable pseudo-inputs.

    The encoder is passed in (not registered as a submodule): it belongs to the VAE and is trained with it.
    `squash` maps pseudo-inputs into the data range (images: hardtanh to [0, 1]; 2D: identity).
    """

    def __init__(self, pseudo_inputs: torch.Tensor, latent_dim: int, encoder, learnable_weights: bool = True,
                 squash_to_unit_interval: bool = False):
        super().__init__(len(pseudo_inputs), latent_dim, learnable_weights)
        self.pseudo_inputs = nn.Parameter(pseudo_inputs.clone())  # (K, *data shape)
        self._encoder = [encoder]  # a list hides it from nn.Module's parameter registry
        self.squash_to_unit_interval = squash_to_unit_interval

    def inputs(self) -> torch.Tensor:
        if self.squash_to_unit_interval:
            return F.hardtanh(self.pseudo_inputs, 0.0, 1.0)
        return self.pseudo_inputs

    def raw_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encoder[0](self.inputs())

    @torch.no_grad()
    def to_mixture_of_gaussians(self) -> MixtureOfGaussiansPrior:
        """A free MoG with μ, log σ² = encoder outputs of the pseudo-inputs and the same logits."""
        mu, logvar = self.raw_components()
        mog = MixtureOfGaussiansPrior(self.num_components, self.latent_dim, self.learnable_weights)
        mog.init_from(mu.detach(), logvar.detach(), self.logits.detach())
        mog.to(mu.device)
        mog.clipping_enabled = self.clipping_enabled
        return mog
