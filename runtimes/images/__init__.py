"""Runtime image inputs (Dockerfile, per-runtime requirements) and their tag (``tag.py``).

Nothing under ``runtimes/images/`` is part of the tag's source hash or of the image itself.
"""
