"""Crops of several sizes (`crop --detector none` without --size) are refused
only where one size is needed: a training batch."""
from __future__ import annotations

import pytest
import torch

from mexkit.errors import ModelInputError
from mexkit.learn.data import pad_collate


def test_batch_of_mixed_frame_sizes_says_to_pass_size():
    batch = [({"frames": torch.zeros(4, 34, 28)}, 0), ({"frames": torch.zeros(4, 30, 30)}, 1)]
    with pytest.raises(ModelInputError, match=r"'frames' differs in shape.*--size"):
        pad_collate(batch)


def test_batch_of_one_size_and_padded_inputs_still_collate():
    batch = [({"frames": torch.zeros(4, 8, 8), "clip": torch.zeros(3, 2)}, 0),
             ({"frames": torch.ones(4, 8, 8), "clip": torch.zeros(5, 2)}, 1)]
    inputs, labels = pad_collate(batch, variable=("clip",))
    assert inputs["frames"].shape == (2, 4, 8, 8) and inputs["clip"].shape == (2, 5, 2)
    assert labels.tolist() == [0, 1]
