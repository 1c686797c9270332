"""`mexkit train --weights` refuses pre-trained weights that saw any clip of a subject
it evaluates under a subject-independent protocol (issue 25, item 7). Before, only the
same clips (source path or frames) were refused: weights pre-trained on other clips of
an evaluated subject passed, and the LOSO test subject was not unseen."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mexkit.errors import ParameterError
from mexkit.pipeline.weights import check_weights, sample_sources


class _Sample:
    def __init__(self, attrs):
        self.attrs = attrs


class _Store:
    path = "eval.h5"

    def __init__(self, samples):
        self._samples = samples
        self.sample_ids = list(samples)

    def __getitem__(self, sid):
        return _Sample(self._samples[sid])


def _weights(tmp_path, subjects, sources=()):
    path = tmp_path / "backbone.safetensors"
    meta = {"mexkit_stage": "pretrain", "sources": json.dumps(sorted(sources))}
    if subjects is not None:
        meta["subjects"] = json.dumps(sorted(subjects))
    save_file({"w": torch.zeros(1)}, str(path), metadata=meta)
    return path


STORE = _Store({
    "casme2/sub01/EP01": {"dataset": "casme2", "subject": "sub01", "source": "/d/sub01/EP01"},
    "casme2/sub02/EP01": {"dataset": "casme2", "subject": "sub02", "source": "/d/sub02/EP01"},
    "samm/006/006_1": {"dataset": "samm", "subject": "006", "source": "/s/006_1"},
})


@pytest.mark.parametrize("protocol", ["loso", "cde", "hde"])
def test_weights_that_saw_another_clip_of_an_evaluated_subject_are_refused(tmp_path,
                                                                           protocol):
    # pre-trained on sub02's EP05, a clip the store does not hold
    w = _weights(tmp_path, ["casme2/sub02", "casme2/sub30"],
                 sample_sources({"source": "/d/sub02/EP05"}))
    with pytest.raises(ParameterError, match=r"1 subject\(s\).*casme2/sub02"):
        check_weights(w, STORE, protocol=protocol)


def test_other_subjects_and_kfold_pass(tmp_path):
    # another dataset's subject of the same name is another person
    w = _weights(tmp_path, ["casme2/sub30", "samm/sub01"])
    assert check_weights(w, STORE, protocol="loso")["mexkit_stage"] == "pretrain"
    w = _weights(tmp_path, ["casme2/sub01"])
    # k-fold mixes every subject's clips over the folds: only the clips themselves matter
    assert check_weights(w, STORE, protocol="kfold")["mexkit_stage"] == "pretrain"


def test_the_same_clips_stay_refused_under_any_protocol(tmp_path):
    w = _weights(tmp_path, ["casme2/sub01"], sample_sources({"source": "/d/sub01/EP01"}))
    with pytest.raises(ParameterError, match="clip"):
        check_weights(w, STORE, protocol="kfold")


def test_weights_without_subjects_are_warned_about(tmp_path, caplog):
    w = _weights(tmp_path, None)
    with caplog.at_level("WARNING", logger="mexkit"):
        check_weights(w, STORE, protocol="loso")
    assert "do not say which subjects" in caplog.text
