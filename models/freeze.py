"""Freeze modules for one forward pass, so their parameters stay out of the graph (and get no gradient)."""
from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen(*modules: nn.Module | None):
    """requires_grad off for every parameter of `modules` inside the block; each flag restored afterwards.

    Gradients still flow *through* a frozen module to whatever feeds it (the decoder step trains the decoder
    through the frozen encoder).
    """
    parameters = [p for m in modules if m is not None for p in m.parameters()]
    flags = [p.requires_grad for p in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(parameters, flags, strict=True):
            parameter.requires_grad_(flag)
