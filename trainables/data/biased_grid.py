"""The β × bias study's data: n×n grids of m×m squares whose intensities are sigmoids of Gaussian latents.

Training images for bias μ: z ~ N(μ·1, I) (n² latents), v = sigmoid(z), square i filled with v_i, plus i.i.d.
pixel noise N(0, noise_variance), no clipping. The test set enumerates v_i ∈ {0.1, 0.5, 0.9} for all n² squares
(3^(n²) noise-free images, 19,683 for n = 3) with ground truth z = logit(v). Square i sits at row i // n, column
i % n. Everything is generated with tensor ops on the target device; no Python loop per image.
"""
from dataclasses import dataclass

import torch

TEST_LEVELS = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class GridSpec:
    grid_size: int = 3  # n: squares per side
    square_size: int = 7  # m: pixels per square side
    noise_variance: float = 0.25

    @property
    def num_latents(self) -> int:
        return self.grid_size**2

    @property
    def image_side(self) -> int:
        return self.grid_size * self.square_size

    @property
    def num_pixels(self) -> int:
        return self.image_side**2


def render(v: torch.Tensor, spec: GridSpec) -> torch.Tensor:
    """Square intensities (B, n²) -> flattened noise-free images (B, (n·m)²)."""
    grid = v.reshape(-1, spec.grid_size, spec.grid_size)  # (B, n, n)
    pixels = grid.repeat_interleave(spec.square_size, dim=1).repeat_interleave(spec.square_size, dim=2)
    return pixels.reshape(v.shape[0], spec.num_pixels)  # (B, (n·m)²)


class BiasedGridStream:
    """An endless, seeded stream of training batches for one bias μ (or a fixed-size set drawn from it).

    `train_set_size = 0` draws fresh images every step; a positive size draws that many once and then samples
    minibatches from them. The generator's state is part of a checkpoint (`state_dict`), so a restored trial
    sees exactly the batches it would have seen.
    """

    def __init__(
        self, bias: float, spec: GridSpec, seed: int, device: torch.device | str = "cpu", train_set_size: int = 0
    ):
        self.bias = float(bias)
        self.spec = spec
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.fixed_set = self.sample(train_set_size)[0] if train_set_size > 0 else None

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh noisy images (B, (n·m)²) and their latents z (B, n²)."""
        z = self.bias + torch.randn(batch_size, self.spec.num_latents, generator=self.generator, device=self.device)
        clean = render(torch.sigmoid(z), self.spec)
        noise = torch.randn(clean.shape, generator=self.generator, device=self.device)
        return clean + self.spec.noise_variance**0.5 * noise, z

    def next_batch(self, batch_size: int) -> torch.Tensor:
        if self.fixed_set is None:
            return self.sample(batch_size)[0]
        index = torch.randint(len(self.fixed_set), (batch_size,), generator=self.generator, device=self.device)
        return self.fixed_set[index]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@dataclass(frozen=True)
class EnumeratedTestSet:
    images: torch.Tensor  # (N, (n·m)²) noise-free
    latents: torch.Tensor  # (N, n²) ground-truth z = logit(v)
    intensities: torch.Tensor  # (N, n²) v ∈ TEST_LEVELS


def enumerated_test_set(spec: GridSpec, device: torch.device | str = "cpu") -> EnumeratedTestSet:
    """Every combination of TEST_LEVELS over the n² squares: 3^(n²) images, first square varying slowest."""
    levels = torch.tensor(TEST_LEVELS, device=device)
    k, n_latents = len(TEST_LEVELS), spec.num_latents
    index = torch.arange(k**n_latents, device=device)  # (N,)
    place_values = k ** torch.arange(n_latents - 1, -1, -1, device=device)  # (n²,) most significant first
    digits = (index[:, None] // place_values[None, :]) % k  # (N, n²) base-k digits
    v = levels[digits]
    return EnumeratedTestSet(images=render(v, spec), latents=torch.logit(v), intensities=v)
