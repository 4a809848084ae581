"""Memorisation copies of an empty set: nothing to copy, no error (a task's public set may be tiny)."""

import numpy as np

from harness.data.copies import changed_copies


def test_no_copies_of_no_images():
    chosen, copies = changed_copies(np.zeros((0, 28, 28), np.uint8), 1000, np.random.default_rng(0))
    assert chosen.shape == (0,) and copies.shape == (0, 28, 28)
