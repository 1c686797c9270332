"""PSN (Li et al.): parallel spatial and temporal sub-networks on RPCA and TIM frames.

``network`` (the torch network), ``inputs`` (``psn_sparse``, ``psn_frames``),
``augment`` (one rotation and flip per clip), ``spec`` (the registry entry).
"""
