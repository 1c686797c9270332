"""HTNet (Wang et al., Neurocomputing 2024): hierarchical transformer on four facial areas.

``network`` (the torch network, :func:`~mexkit.models.htnet.network.four_areas`,
:func:`~mexkit.models.htnet.network.five_points`), ``inputs`` (``facial_areas``),
``spec`` (the registry entry).
"""
