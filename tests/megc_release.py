"""A copy of the MEGC 2019 optical-flow release in miniature, in its published layout.

Quirks included: the space before ``.png`` in the flow images' names, the
LOSO split folders, a header with ``filename_o`` and ``imagename``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mexkit.io.datasets.megc2019_flow import APEX_DIR, FLOW_DIR, LIST_NAME, SPLIT_DIR

HEADER = "dataset,sub,filename_o,label,apex,imagename,sub_filename\n"
# (dataset, subject, clip, label, imagename) as the release writes them
ROWS = [("casme2", "sub01", "EP02_01f", 1, "sub01_EP02_01f.jpg"),
        ("casme2", "sub01", "EP19_05f", 0, "sub01_EP19_05f.jpg"),
        ("smic", "s01", "s01_ne_01", 0, "s01_s1_ne_01.jpg"),
        ("smic", "s02", "s02_sur_01", 2, "s02_s2_sur_01.jpg"),
        ("samm", "006", "006_1_2", 0, "006_006_1_2.jpg")]


def write_flow_png(path: Path, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def face_224() -> np.ndarray:
    """scikit-image's bundled astronaut, cropped to her face and resized to 224x224."""
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()[20:260, 130:370]).resize((224, 224)))


def make_release(root: Path, rows=ROWS, *, split: bool = True, face: bool = False
                 ) -> dict[str, np.ndarray]:
    """A copy of the release: the list, flow images (name + ' .png'), apex faces, split.

    The apex faces are flat grey images, or with ``face=True`` :func:`face_224`.
    """
    real = face_224() if face else None
    (root / FLOW_DIR).mkdir(parents=True)
    (root / APEX_DIR).mkdir(parents=True)
    (root / LIST_NAME).write_text(HEADER + "".join(
        f"{d},{s},{c},{lab},,{img},\n" for d, s, c, lab, img in rows))
    images = {}
    for i, (_, s, c, lab, img) in enumerate(rows):
        name = f"{s}_{c} .png"
        images[name] = write_flow_png(root / FLOW_DIR / name, i)
        apex = real if real is not None else np.full((224, 224, 3), 40 * i, np.uint8)
        Image.fromarray(apex).save(root / APEX_DIR / img, quality=95)
        if split:
            for fold in {r[1] for r in rows}:
                part = "u_test" if fold == s else "u_train"
                d = root / SPLIT_DIR / fold / part / str(lab)
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[name]).save(d / name)
    return images
