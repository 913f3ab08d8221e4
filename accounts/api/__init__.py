"""The accounts REST API (``/api/v1/``): viewsets registered in ``portal/api.py``."""
