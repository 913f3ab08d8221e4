"""Data of the serving app; its models arrive with the issue that builds it."""
