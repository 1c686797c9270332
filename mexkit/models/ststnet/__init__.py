"""STSTNet (Liong et al., FG 2019): the MEGC 2019 baseline on 28x28 flow images.

``network`` (the torch network), ``inputs`` (``flow_image``), ``spec`` (the registry
entry).
"""
