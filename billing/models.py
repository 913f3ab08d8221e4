"""Data of the billing app; its models arrive with the issue that builds it."""
