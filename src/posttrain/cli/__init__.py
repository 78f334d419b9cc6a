"""The `catalog` command line: one module per command group. No torch import at import time."""
