"""EMS runtime server: one TF-Serving-compatible REST front end for every model format.

Runs inside each runtime container (``python -m runtimes.server``) and as a local process for
the embedded default. Nothing in this package imports Django.
"""

RUNTIMES = ("tfserving", "pmml", "openvino", "tensorrt", "angel")
