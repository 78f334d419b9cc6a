"""Scoring: rule rewards, trained reward models, PRMs and verifiers, and the code-execution sandbox.
No torch import here.
"""
