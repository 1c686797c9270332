"""AKMNet (Peng et al. 2021): adaptive key-frame mining over magnified clips.

``network`` (the torch network), ``inputs`` (``magnified_clip``), ``augment``
(resize and random crop), ``training`` (the fold trainer: pre-trained
weights), ``pretraining`` (the backbone on still frames, ``mexkit
pretrain``), ``report`` (key-frame plots), ``spec`` (the registry entry).
"""
