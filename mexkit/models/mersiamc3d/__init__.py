"""MERSiamC3D (Zhao et al. 2021): a 3D CNN with siamese prior learning on key-frame flow.

``network`` (the torch networks), ``inputs`` (``keyframe_flow``), ``augment``
(crops and frame drops), ``training`` (prior learning on clip pairs, then
target learning), ``spec`` (the registry entry).
"""
