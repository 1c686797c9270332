"""The ``megc2019-flow`` adapter: the MEGC 2019 composite's public optical-flow release.

Fixtures are small copies of the release in its published layout (quirks
included: the space before ``.png``, the LOSO split folders, a header with
``filename_o`` and ``imagename``).  The tests marked with the real release
read the copy named by ``MEXKIT_HTNET_REPO`` and skip, saying why, without it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from megc_release import make_release
from megc_release import write_flow_png as _flow_png
from PIL import Image

from mexkit.io.datasets import detect_dataset, get_adapter, load_dataset
from mexkit.io.datasets.megc2019_flow import (
    APEX_DIR,
    EXPECTED,
    FLOW_DIR,
    LIST_NAME,
    SPLIT_DIR,
    import_sample,
    read_release,
)


# -- smoke: the list, names with spaces, the files ----------------------------------------
def test_release_rows_become_samples_with_flow_images_as_sources(tmp_path, caplog):
    make_release(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        samples = load_dataset("megc2019-flow", tmp_path / LIST_NAME)
    assert [s.sample_id for s in samples] == [
        "casme2/sub01/EP02_01f", "casme2/sub01/EP19_05f", "smic-hs/s01/s01_ne_01",
        "smic-hs/s02/s02_sur_01", "samm/006/006_1_2"]
    assert [s.label for s in samples] == ["positive", "negative", "negative", "surprise",
                                          "negative"]
    assert [s.fps for s in samples] == [200.0, 200.0, 100.0, 100.0, 200.0]
    assert samples[0].source.endswith("sub01_EP02_01f .png")
    # the stray spaces are reported (one line, with an example), not silently fixed
    assert "5 flow image name(s) have a space before the extension" in caplog.text


def test_the_repository_folder_is_accepted_as_the_sheet_and_detected(tmp_path):
    make_release(tmp_path)
    assert len(load_dataset("megc2019-flow", tmp_path)) == 5
    assert detect_dataset(tmp_path / LIST_NAME) == "megc2019-flow"
    assert get_adapter("megc2019-flow").default_sheet == LIST_NAME


def test_names_without_the_space_are_matched_too(tmp_path, caplog):
    make_release(tmp_path)
    old = tmp_path / FLOW_DIR / "006_006_1_2 .png"
    old.rename(old.with_name("006_006_1_2.png"))
    rel = read_release(tmp_path)
    assert rel.spaced_names == 4 and not rel.missing and not rel.extra
    assert rel.entries[-1].flow.name == "006_006_1_2.png"


# -- exceptions and warnings: missing, extra, split, counts ----------------------------------
def test_a_warning_per_missing_and_per_extra_file(tmp_path, caplog):
    make_release(tmp_path)
    (tmp_path / FLOW_DIR / "s01_s01_ne_01 .png").unlink()
    (tmp_path / APEX_DIR / "006_006_1_2.jpg").unlink()
    _flow_png(tmp_path / FLOW_DIR / "sub09_EP01_01 .png", 9)
    Image.fromarray(np.zeros((224, 224, 3), np.uint8)).save(tmp_path / APEX_DIR / "x.jpg")
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        rel = read_release(tmp_path)
    assert rel.missing == [str(FLOW_DIR / "s01_s01_ne_01 .png"), str(APEX_DIR / "006_006_1_2.jpg")]
    assert rel.extra == [str(FLOW_DIR / "sub09_EP01_01 .png"), str(APEX_DIR / "x.jpg")]
    for name in ("s01_s01_ne_01 .png", "006_006_1_2.jpg", "sub09_EP01_01 .png", "x.jpg"):
        assert sum(name in r.getMessage() for r in caplog.records
                   if r.levelno == logging.WARNING) == 1, name
    entry = {e.sample_id: e for e in rel.entries}["smic-hs/s01/s01_ne_01"]
    assert entry.flow is None  # kept in the list; the import fails that sample alone
    with pytest.raises(Exception, match="s01_ne_01.*missing"):
        import_sample({"apex": str(entry.apex)}, "flow", entry.sample_id)


def test_counts_that_differ_from_the_published_composite_are_warned(tmp_path, caplog):
    make_release(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        rel = read_release(tmp_path)
    # 5 clips of 4 subjects against 442 of 68: each count named with both numbers
    assert "count: 5 clips, the published composite has 442" in rel.count_problems
    assert "count: 4 subjects, the published composite has 68" in rel.count_problems
    assert "count: 3 negative, the published composite has 250" in rel.count_problems
    assert "count: 2 casme2, the published composite has 145" in rel.count_problems
    assert "count: 5 clips, the published composite has 442" in caplog.text


def test_split_folders_are_checked_against_the_list(tmp_path):
    make_release(tmp_path)
    # move one test image into another subject's u_test, under another label
    src = tmp_path / SPLIT_DIR / "s02" / "u_test" / "2" / "s02_s02_sur_01 .png"
    dst = tmp_path / SPLIT_DIR / "s01" / "u_test" / "1"
    dst.mkdir(parents=True)
    src.rename(dst / src.name)
    rel = read_release(tmp_path)
    assert "split: 's02_s02_sur_01 .png' (subject s02) is tested in fold s01" \
        in rel.split_problems
    assert "split: 's02_s02_sur_01 .png' is under label 1 in fold s01; the list says 2" \
        in rel.split_problems
    ok = read_release(tmp_path / "..", tmp_path / LIST_NAME, warn=False)
    assert ok.missing  # another root: nothing found, all named


def test_bad_rows_are_skipped_with_row_numbers(tmp_path, caplog):
    make_release(tmp_path)
    text = (tmp_path / LIST_NAME).read_text()
    (tmp_path / LIST_NAME).write_text(text + "cas3,x,y,0,,y.jpg,\ncasme2,sub02,EP01,7,,a.jpg,\n")
    with caplog.at_level(logging.WARNING, logger="mexkit"):
        samples = load_dataset("megc2019-flow", tmp_path / LIST_NAME)
    assert len(samples) == 5
    assert "row 7: dataset 'cas3' is not one of casme2, samm, smic" in caplog.text
    assert "row 8: label '7' is not 0, 1 or 2" in caplog.text


# -- numbers: the channel order -------------------------------------------------------------
def test_flow_arrays_keep_the_image_channels_as_u_v_strain(tmp_path):
    images = make_release(tmp_path)
    rel = read_release(tmp_path, warn=False)
    e = rel.entries[0]
    arrays, attrs, face = import_sample({"flow": str(e.flow), "apex": str(e.apex)}, "flow",
                                        e.sample_id)
    assert attrs["flow_units"].startswith("per-clip min-max normalised to 0..255")
    rgb = images["sub01_EP02_01f .png"]
    assert arrays["flow"].shape == (1, 2, 28, 28) and arrays["flow"].dtype == np.float32
    np.testing.assert_array_equal(arrays["flow"][0, 0], rgb[..., 0])  # R: u
    np.testing.assert_array_equal(arrays["flow"][0, 1], rgb[..., 1])  # G: v
    np.testing.assert_array_equal(arrays["strain"][0], rgb[..., 2])   # B: strain
    assert face[0].shape == (224, 224, 3) and face[1] == pytest.approx(28 / 224)
    apex, _, face2 = import_sample({"apex": str(e.apex)}, "apex", e.sample_id)
    assert apex["apex_image"].shape == (224, 224, 3) and apex["frames"].shape == (1, 224, 224, 3)
    assert face2[1] == 1.0


# -- the real release -------------------------------------------------------------------------
def _repo() -> Path:
    repo = os.environ.get("MEXKIT_HTNET_REPO")
    if not repo:
        pytest.skip("MEXKIT_HTNET_REPO is not set (a local copy of the HTNet repository)")
    if not (Path(repo) / LIST_NAME).is_file():
        pytest.skip(f"MEXKIT_HTNET_REPO={repo} holds no {LIST_NAME}")
    return Path(repo)


def test_real_release_counts_are_the_published_composite():
    rel = read_release(_repo())
    assert rel.counts() == EXPECTED
    assert rel.counts()["clips"] == 442 and rel.counts()["subjects"] == 68
    assert rel.counts()["labels"] == {"negative": 250, "positive": 109, "surprise": 83}
    assert not rel.missing and not rel.extra and not rel.split_problems
    assert not rel.count_problems
    assert rel.spaced_names == 442  # every flow image is named '<sub>_<clip> .png'
    assert all(e.test_fold == e.subject for e in rel.entries)


def test_real_release_channels_are_u_v_then_strain():
    """Channel 2 (blue) is the strain of channels 0 and 1, not of 2 and 1.

    The images are min-max normalised per channel, so the strain magnitude
    sqrt(ux^2 + vy^2 + (uy + vx)^2 / 2) of (R, G) matches B only up to a
    scale: its correlation with B is high, while the same formula on (B, G)
    is unrelated to R.
    """
    rel = read_release(_repo(), warn=False)
    fwd, back = [], []
    for e in rel.entries[::4]:
        img = np.asarray(Image.open(e.flow).convert("RGB")).astype(float)

        def strain(u, v):
            uy, ux = np.gradient(u)
            vy, vx = np.gradient(v)
            return np.sqrt(ux ** 2 + vy ** 2 + 0.5 * (uy + vx) ** 2)[1:-1, 1:-1].ravel()

        fwd.append(np.corrcoef(strain(img[..., 0], img[..., 1]),
                               img[1:-1, 1:-1, 2].ravel())[0, 1])
        back.append(np.corrcoef(strain(img[..., 2], img[..., 1]),
                                img[1:-1, 1:-1, 0].ravel())[0, 1])
    assert np.nanmean(fwd) > 0.7
    assert abs(np.nanmean(back)) < 0.2
    # every channel of every image is stretched to the full 0..255
    img = np.asarray(Image.open(rel.entries[0].flow).convert("RGB"))
    assert img.reshape(-1, 3).min(0).tolist() == [0, 0, 0]
    assert img.reshape(-1, 3).max(0).tolist() == [255, 255, 255]
