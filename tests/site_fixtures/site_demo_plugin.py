"""Demo method for the site's tests (a fixture, not a real plugin).

Stands in for a plugin file in the site tests: it has a plugin's anatomy (docstring, Config) so
that a method page for a runnable entry can be built before, or without, the real plugins.
Deviations from the paper:
1. There is no paper and no training loop; nothing here runs.

    catalog run demo-runnable --set beta=0.2
"""

from pydantic import BaseModel, Field


class Config(BaseModel):
    beta: float = Field(0.1, description="β, the fixture's KL strength (paper symbol β).")
    max_steps: int = Field(2, description="Optimiser steps.")
    learning_rate: float = 1e-6
