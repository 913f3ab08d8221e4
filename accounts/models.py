"""Data of the accounts app; its models arrive with the issue that builds it."""
