"""posttrain: the core of posttrain-catalog (catalog schema, plugin interface, CLI, shared plumbing).

Only the names below are public. Heavy modules (torch, transformers) are imported by the plugins
and the plumbing modules that need them, never from here.
"""

from posttrain.errors import UserError
from posttrain.interface import Plugin, RunContext, RunResult

__all__ = ["Plugin", "RunContext", "RunResult", "UserError", "__version__"]
__version__ = "0.1.0"
