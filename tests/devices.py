"""Devices a test can be parametrised over: the CPU always, and CUDA where the machine has a GPU.

Tests of the GPU paths (captured steps as CUDA graphs, populations on a GPU) take `@pytest.mark.parametrize("device",
DEVICES)`: on a machine without a GPU (CI) their CUDA case shows as skipped; on a lent GPU machine
(`python3 -m pytest tests/unit -k cuda`) it runs the same assertions on the device.
"""
import pytest
import torch

DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
