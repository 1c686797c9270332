from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A small synthetic CASME II-like dataset (2 subjects x 3 classes), as PNG."""
    from mexkit.pipeline.synth import write_casme2_like

    root = tmp_path_factory.mktemp("synth") / "data"
    write_casme2_like(root, n_subjects=2, clips_per_class=1, fps=100.0, seed=3,
                      image_format="png")
    return root


@pytest.fixture(scope="session")
def crop_store(synth_dataset, tmp_path_factory):
    from click.testing import CliRunner

    from mexkit.cli import cli

    out = tmp_path_factory.mktemp("crop") / "synth.crop.h5"
    r = CliRunner().invoke(cli, ["-q", "crop", "--annotations",
                                 str(synth_dataset / "samples.csv"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out
