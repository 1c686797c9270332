"""`mexkit spot` refuses a store whose features were made otherwise than its model's (issue 28,
item 7): another flow gap (a 23.976 fps video: gap 2 for a model trained at gap 3), another
flow method, eye mask or head-motion removal; the error names the model's value and the
store's; `--force` spots anyway with a warning."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mexkit.cli import cli
from mexkit.errors import ParameterError
from mexkit.pipeline.cache import cache_key
from mexkit.pipeline.runner import Task, run_stage
from mexkit.pipeline.spotting import spot_loso, spot_store

N = 60
EVENTS = {"s1": [(10, 15, "micro", "pos"), (35, 40, "micro", "neg")],
          "s2": [(20, 25, "micro", "neg"), (44, 49, "micro", "pos")]}
TVL1 = {"tau": 0.25, "lambda_": 0.15, "theta": 0.3}
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15}


def _compute(task):
    subject, gap = task.payload
    rng = np.random.default_rng(len(subject))
    x = rng.normal(0, 0.05, size=(N - gap, 3, 42, 42)).astype(np.float32)
    for on, off, _, emo in EVENTS[subject]:
        x[on:off + 1, 0] += 1.0
        x[on:off + 1, 2] += 1.0 if emo == "pos" else -1.0
    pairs = np.stack([np.arange(N - gap), np.arange(gap, N)], axis=1).astype(np.int64)
    # each interval's onset -> apex input (recognition trains on it), as flow stores it
    bounds = np.array([(on, (on + off) // 2, off) for on, off, _, _ in EVENTS[subject]],
                      dtype=np.int64)
    return {"mean_regions": x, "pairs": pairs, "interval_pairs": bounds,
            "interval_mean_regions": x[bounds[:, 1]]}, {"gap": gap}


def store(path, *, gap=3, method="tvl1", options=TVL1, mask_eyes=False, gaps=None):
    """A `mexkit flow --pairs gap --features mean` store, with the parameters it records;
    ``gaps`` gives each subject's own (videos of other frame rates)."""
    params = {"pairs": "gap", "k": None, "method": method, method: options,
              "features": ["mean"], "mask_eyes": mask_eyes, "remove_head_motion": False}
    tasks = []
    for subject in EVENTS:
        g = (gaps or {}).get(subject, gap)
        intervals = [{"onset": a, "offset": b, "kind": k, "label": None, "emotion": e}
                     for a, b, k, e in EVENTS[subject]]
        tasks.append(Task(f"t/{subject}/v", cache_key("flow", 1, params, subject + str(g)),
                          {"subject": subject, "video": "v", "clip": "v", "fps": 25.0,
                           "n_frames": N, "pair_mode": "gap", "intervals": intervals},
                          (subject, g)))
    run_stage(tasks, _compute, output=path, stage="flow", params=params, progress=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("spotmodel")
    main = store(root / "gap3.tvl1.h5")
    spot_loso(main, root / "run", options={"spot_epochs": 1}, epochs=1, batch_size=64,
              final=True, plots=False)
    return root / "run", main


def test_the_model_records_its_features(trained):
    run, _ = trained
    entry = json.loads((run / "spot_model.json").read_text())["types"]["micro"]
    assert entry["gap"] == 3
    assert entry["preprocessing"] == {"flow_method": "tvl1", "method_options": TVL1,
                                      "mask_eyes": False, "remove_head_motion": False,
                                      "mean_input": None}     # the store does not say


@pytest.mark.parametrize("kind, made, says", [
    ("gap", {"gap": 2}, "gap 3 / 2"),
    # the first video at 25 fps (gap 3), the second at 23.976 fps (gap 2): only the first
    # video's gap was compared, so this store was accepted
    ("mixed", {"gaps": {"s2": 2}}, "gap 3 / 2, 3"),
    ("method", {"method": "farneback", "options": FARNEBACK},
     'flow method "tvl1" / "farneback"'),
    ("options", {"options": {**TVL1, "lambda_": 0.3}}, "flow options lambda_ 0.15 / 0.3"),
    ("eyes", {"mask_eyes": True}, "mask eyes false / true"),
])
def test_spot_refuses_other_features_and_names_both(trained, tmp_path, kind, made, says):
    run, _ = trained
    other = store(tmp_path / f"{kind}.h5", **made)
    with pytest.raises(ParameterError) as err:
        spot_store(other, run, tmp_path / "out.csv", plots=False)
    assert "micro network" in str(err.value) and says in str(err.value)
    assert not (tmp_path / "out.csv").exists()
    r = CliRunner().invoke(cli, ["spot", str(other), "--results", str(run), "--no-plots",
                                 "--device", "cpu", "-o", str(tmp_path / "cli.csv")])
    assert r.exit_code == 2 and says in r.stderr and "--force" in r.stderr
    r = CliRunner().invoke(cli, ["spot", str(other), "--results", str(run), "--no-plots",
                                 "--device", "cpu", "--force", "-o", str(tmp_path / "f.csv")])
    assert r.exit_code == 0, r.output
    assert says in r.stderr and "spotting anyway (--force)" in r.stderr
    assert (tmp_path / "f.csv").exists()


def test_the_same_features_are_spotted_without_a_word(trained, tmp_path):
    run, main = trained
    twin = store(tmp_path / "same.h5")
    csv_path, _ = spot_store(twin, run, tmp_path / "ok.csv", plots=False)
    assert csv_path.exists()
