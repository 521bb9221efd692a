"""The residual convolutional VAE of the image experiments (spec: introvae.md, "Images"), with the same interface as
the MLP VAE (`encoder(x) -> (mu, logvar)`, `decoder(z)`, `encode`, `decode`, `prior`), so the Soft-IntroVAE run,
objectives and priors serve both.

Encoder: conv5×5(c₀)+BN+LReLU(0.2)+avgpool2, then per further channel count a residual block + avgpool2, one more
residual block, a linear map to 2·z. Decoder: the mirror, nearest ×2 upsampling, a final conv5×5, no output
activation (the reconstruction loss is a plain sum of squares on [0, 1] pixels). Batch norm runs on batch statistics
in training (every pass of a step: real, reconstructed and generated images, pseudo-inputs) and on running averages
in evaluation, as in the reference.
"""
from dataclasses import dataclass

import torch
from torch import nn

from models.priors import StandardNormalPrior

SLOPE = 0.2  # LeakyReLU slope everywhere


@dataclass(frozen=True)
class ConvVaeConfig:
    channels_in: int = 1  # 1 (MNIST, FashionMNIST) or 3 (CIFAR-10)
    image_size: int = 28  # 28 or 32; halved once per channel count, so divisible by 2^len(channels)
    channels: tuple[int, ...] = (64, 128)  # (64, 128, 256) for CIFAR-10
    latent_dim: int = 32  # 128 for CIFAR-10

    @property
    def bottleneck_size(self) -> int:  # side of the smallest feature map
        return self.image_size // 2 ** len(self.channels)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return (self.channels_in, self.image_size, self.image_size)


class ResidualBlock(nn.Module):
    """(B, c_in, H, W) -> (B, c_out, H, W): LReLU(BN(conv3×3(LReLU(BN(conv3×3 x)))) + shortcut x)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.shortcut = (nn.Identity() if channels_in == channels_out
                         else nn.Conv2d(channels_in, channels_out, 1, bias=False))
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
            nn.LeakyReLU(SLOPE),
            nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
        )
        self.activation = nn.LeakyReLU(SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> (mu (B, d), logvar (B, d))."""

    def __init__(self, config: ConvVaeConfig):
        super().__init__()
        first, *rest = config.channels
        layers: list[nn.Module] = [nn.Conv2d(config.channels_in, first, 5, padding=2, bias=False),
                                   nn.BatchNorm2d(first), nn.LeakyReLU(SLOPE), nn.AvgPool2d(2)]
        width = first
        for channels in rest:
            layers += [ResidualBlock(width, channels), nn.AvgPool2d(2)]
            width = channels
        layers.append(ResidualBlock(width, width))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * config.bottleneck_size ** 2, 2 * config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=-1)  # (B, d) each
        return mu, logvar


class ConvDecoder(nn.Module):
    """z (B, d) -> x̂ (B, C, H, W)."""

    def __init__(self, config: ConvVaeConfig):
        super().__init__()
        width = config.channels[-1]
        self.size, self.width = config.bottleneck_size, width
        self.head = nn.Sequential(nn.Linear(config.latent_dim, width * self.size ** 2), nn.ReLU())
        layers: list[nn.Module] = []
        for channels in reversed(config.channels):
            layers += [ResidualBlock(width, channels), nn.Upsample(scale_factor=2, mode="nearest")]
            width = channels
        layers += [ResidualBlock(width, width), nn.Conv2d(width, config.channels_in, 5, padding=2)]
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(self.head(z).view(-1, self.width, self.size, self.size))


class ConvVae(nn.Module):
    def __init__(self, config: ConvVaeConfig, prior: nn.Module | None = None):
        super().__init__()
        if config.image_size % 2 ** len(config.channels):
            raise ValueError(f"image size {config.image_size} is not divisible by 2^{len(config.channels)}")
        self.config = config
        self.encoder = ConvEncoder(config)
        self.decoder = ConvDecoder(config)
        self.prior = prior if prior is not None else StandardNormalPrior(config.latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
