"""Plain MLP builder shared by every fully connected encoder and decoder."""
from torch import nn


def mlp(in_features: int, hidden_width: int, hidden_depth: int, out_features: int) -> nn.Sequential:
    """`hidden_depth` ReLU layers of `hidden_width`, then a linear output layer (no output activation)."""
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(hidden_depth):
        layers += [nn.Linear(width, hidden_width), nn.ReLU()]
        width = hidden_width
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
