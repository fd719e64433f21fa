"""The worker container: the in-container wrapper that runs a coding agent on a git checkout."""
