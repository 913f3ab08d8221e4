"""Data of the models_repo app; its models arrive with the issue that builds it."""
