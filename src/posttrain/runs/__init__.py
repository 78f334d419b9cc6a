"""Runs: from a command line to a run folder (config, metrics, plot, summary, reports), pipelines
and comparisons. No torch import here.
"""
