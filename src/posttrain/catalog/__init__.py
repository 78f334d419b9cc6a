"""The catalog: loading and validating its YAML (taxonomy, methods, papers), paper identity,
source checks, the awesome-list import, and what catalog text may contain. No torch import here.
"""
