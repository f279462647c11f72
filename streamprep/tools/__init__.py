"""Model diagnostics behind ``streamprep probe`` and ``streamprep verify``."""
