"""Test-time scaling: the shared plumbing of the search and sampling plugins. No torch import here."""
