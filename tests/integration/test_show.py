"""``mexkit show`` draws every kind of store, from the CLI."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from mexkit.cli import cli
from mexkit.io.store import open_store


def _run(*args):
    r = CliRunner().invoke(cli, ["-q", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


def test_sheet_sample_and_gif_of_a_crop_store(crop_store, tmp_path):
    sheet = _run("show", crop_store, "-o", tmp_path / "sheet.png")
    assert Path(sheet) == (tmp_path / "sheet.png").resolve()
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.size[0] > 300
    with open_store(crop_store) as s:
        sid = s.sample_ids[0]
        n_frames = s[sid].shape("frames")[0]
    one = _run("show", crop_store, "--sample", sid, "--frames", "0,2", "-o",
               tmp_path / "one.png")
    with Image.open(one) as im:
        assert im.format == "PNG"
    gif = _run("show", crop_store, "--sample", sid, "-o", tmp_path / "clip.gif")
    with Image.open(gif) as im:
        assert im.n_frames == n_frames
    # no stray temporaries beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "one.png", "sheet.png"]


def test_flow_store_and_errors(crop_store, tmp_path):
    flow = _run("flow", crop_store, "--pairs", "onset-apex", "--strain", "--method",
                "farneback", "-o", tmp_path / "f.h5")
    with open_store(flow) as s:
        sid = s.sample_ids[0]
    out = _run("show", flow, "--sample", sid, "-o", tmp_path / "flow.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
    r = CliRunner().invoke(cli, ["show", flow, "--sample", "nope", "-o",
                                 str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "no sample 'nope'" in r.stderr
    assert not (tmp_path / "x.png").exists()
    r = CliRunner().invoke(cli, ["show", flow, "-o", str(tmp_path / "x.jpg")])
    assert r.exit_code != 0 and "output format" in r.stderr


def test_a_multi_frame_flow_store_is_a_grid_with_one_scale(crop_store, tmp_path):
    """Issue 28, item 9: eight flow fields with strain were drawn in one row 4,100 px wide,
    every panel captioned with the same scale; now a grid at most 1,600 px wide, the flow
    scale stated once and one strain colour bar for all panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mexkit.pipeline.show import MAX_WIDTH_PX, _sample_figure

    flow = _run("flow", crop_store, "--pairs", "consecutive", "--strain", "--method",
                "farneback", "-o", tmp_path / "f.h5")
    with open_store(flow) as s:
        sid = s.sample_ids[0]
        assert s[sid].shape("flow")[0] >= 8
        fig = _sample_figure(s[sid], None, list(range(8)), sid)
        try:
            titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
            assert len([t for t in titles if t.startswith("flow ")]) == 8
            assert not any("px" in t or "max" in t or " x" in t for t in titles)
            head = fig._suptitle.get_text()                    # the scales, once
            assert head.count("full colour = ") == 1 and head.count("arrows: ") == 1
            bars = [ax for ax in fig.axes if ax.get_ylabel().startswith("strain")]
            assert len(bars) == 1
        finally:
            plt.close(fig)
    out = _run("show", flow, "--sample", sid, "--frames", "0,1,2,3,4,5,6,7", "-o",
               tmp_path / "flow8.png")
    with Image.open(out) as im:
        assert im.size[0] <= MAX_WIDTH_PX and im.size[1] > im.size[0] / 2   # rows, not one
    out = _run("show", crop_store, "--sample", sid, "--frames", ",".join(map(str, range(10))),
               "-o", tmp_path / "crop10.png")
    with Image.open(out) as im:
        assert im.size[0] <= MAX_WIDTH_PX
