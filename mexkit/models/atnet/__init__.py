"""ATNet (Peng et al. 2019): apex frame and direction-magnitude streams.

``network`` (the torch network), ``inputs`` (``apex_rgb``,
``direction_magnitude``), ``augment`` (rotation and shift of the apex frame),
``spec`` (the registry entries ``atnet``, ``atnet-spatial``,
``atnet-temporal``).
"""
