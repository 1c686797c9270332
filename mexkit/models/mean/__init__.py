"""MEAN (Liong, See, Chan 2023): spot-then-recognize on flow and strain of facial regions.

``network`` (the torch network), ``inputs`` (``mean_regions``), ``spotting``
(the spot-then-recognize hooks), ``spec`` (the registry entry).
"""
