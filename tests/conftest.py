"""Shared fixtures: a fixed seed for every test, small thread counts on the 2-core CI machines."""
from __future__ import annotations

import random

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:  # runtime tests run without torch too
        return
    torch.manual_seed(0)
