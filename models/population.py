"""A population of P independent MLP VAEs with stacked weights, trained together in one set of tensor ops.

Member p computes exactly what a lone `MlpVae` with the same weights computes; the population only changes the
layout. Every step issues the same operations whatever P is (batched products instead of a loop over models),
which on a launch-bound GPU turns into ~P× throughput and on a CPU into larger, more efficient products.

Layout: the encoder's first layer, whose input (a data batch shared by the members) is the same for all, is one
wide product (B, D) × (D, P·H); every other layer is a batched product (P, B, in) × (P, in, out). Members of
several seeds read one batch per seed: G equal groups of consecutive members, input (G, B, D), and the first layer
is G wide products in one batched product (G, B, D) × (G, D, (P/G)·H), its weight stored in that layout.
"""
import torch
from torch import nn

from models.priors import StandardNormalPrior
from models.vae import MlpVae, MlpVaeConfig


class StackedMlp(nn.Module):
    """P MLPs of one shape; ReLU between layers, none after the last.

    `input_groups` G (encoders: the input is shared by all members, or by each of G equal groups of consecutive
    members): the first layer's weight is stored (G, in, (P/G)·out), so the shared input needs one wide product per
    group and its gradient comes out of the backward product in the stored layout (no transposing copy). Otherwise
    (None) every weight is (P, in, out)."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], input_groups: int | None):
        super().__init__()
        self.input_groups = input_groups
        self.size = biases[0].shape[0]
        self.weights = nn.ParameterList(nn.Parameter(w) for w in weights)  # (P, in, out); first (G, in, (P/G)·out)
        self.biases = nn.ParameterList(nn.Parameter(b) for b in biases)  # (P, out)

    @classmethod
    def from_members(cls, members: list[nn.Sequential], input_groups: int | None) -> "StackedMlp":
        linears = [[m for m in member if isinstance(m, nn.Linear)] for member in members]
        weights, biases = [], []
        for layer in range(len(linears[0])):
            stacked = torch.stack([lin[layer].weight.detach().T for lin in linears])  # (P, in, out)
            if layer == 0 and input_groups:
                size, fan_in, fan_out = stacked.shape
                grouped = stacked.view(input_groups, size // input_groups, fan_in, fan_out).transpose(1, 2)
                stacked = grouped.reshape(input_groups, fan_in, -1)  # (G, in, (P/G)·out)
            weights.append(stacked.contiguous())
            biases.append(torch.stack([lin[layer].bias.detach() for lin in linears]))
        return cls(weights, biases, input_groups)

    def first_layer_members(self, tensor: torch.Tensor) -> torch.Tensor:
        """The first layer's weight (or a tensor of its shape: gradient, optimiser moment) viewed (G, in, P/G, out):
        member p is [p // (P/G), :, p % (P/G)]."""
        groups, fan_in, _ = self.weights[0].shape
        return tensor.view(groups, fan_in, self.size // groups, -1)

    def member_weights(self, p: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight (out, in), bias (out,)) per layer of member p, as nn.Linear stores them."""
        layers = []
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if layer == 0 and self.input_groups:
                group, index = divmod(p, self.size // self.input_groups)
                w = self.first_layer_members(weight)[group, :, index]  # (in, out)
            else:
                w = weight[p]
            layers.append((w.T.detach().clone(), bias[p].detach().clone()))
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in) shared by all members, or (G, B, in), batch g shared by the g-th of G equal groups of
        consecutive members (input_groups); else (P, B, in) -> (P, B, out)."""
        last = len(self.weights) - 1
        h = x
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if layer == 0 and self.input_groups:
                h = self._wide_first_layer(h, weight, bias)  # (P, B, out)
            else:
                h = torch.baddbmm(bias[:, None, :], h, weight)  # (P, B, out)
            if layer < last:
                h = torch.relu(h)
        return h

    def _wide_first_layer(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, in), shared by all, or (G, B, in), times the (G, in, (P/G)·out) weight, plus bias -> (P, B, out)."""
        groups, fan_in, wide_out = weight.shape
        batch = x.shape[-2]
        x = x.expand(groups, batch, fan_in)  # (G, B, in): a view when one batch is shared by every group
        wide = torch.baddbmm(bias.view(groups, 1, wide_out), x, weight)  # (G, B, (P/G)·out): one product per group
        return wide.view(groups, batch, self.size // groups, -1).transpose(1, 2).reshape(self.size, batch, -1)


class PopulationMlpVae(nn.Module):
    """P β-VAEs: encoder (a data batch (B, D) shared by all, or (G, B, D), one per group of members, in;
    (P, B, 2d) out), decoder ((P, B, d) in, (P, B, D) out)."""

    def __init__(self, encoder: StackedMlp, decoder: StackedMlp, config: MlpVaeConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = encoder, decoder
        self.prior = StandardNormalPrior(config.latent_dim)

    @classmethod
    def from_members(cls, members: list[MlpVae], input_groups: int = 1) -> "PopulationMlpVae":
        """`input_groups` G: the members form G equal groups of consecutive members, each reading its own data
        batch (one per seed); 1: every member reads the same batch."""
        config = members[0].config
        encoder = StackedMlp.from_members([m.encoder.net for m in members], input_groups=input_groups)
        decoder = StackedMlp.from_members([m.decoder for m in members], input_groups=None)
        return cls(encoder, decoder, config)

    @property
    def size(self) -> int:
        return self.encoder.size

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (P, B, d) each
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (P, B, d) -> (P, B, D)."""
        return self.decoder(z)

    def member(self, p: int) -> MlpVae:
        """Member p as a lone MlpVae (a copy)."""
        model = MlpVae(self.config)
        for source, target in ((self.encoder, model.encoder.net), (self.decoder, model.decoder)):
            linears = [m for m in target if isinstance(m, nn.Linear)]
            for linear, (weight, bias) in zip(linears, source.member_weights(p), strict=True):
                linear.weight.data.copy_(weight)
                linear.bias.data.copy_(bias)
        return model.to(self.encoder.biases[0].device)
