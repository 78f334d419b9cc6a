"""Pydantic models of the catalog's YAML: the taxonomy, method entries and paper references.

Every model forbids unknown fields so a typo in a YAML key is an error, not silently ignored.
``catalog schema`` exports these as JSON Schema for editors.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# New-style (2007+) arXiv ids, optionally versioned, and old-style archive/number ids.
ARXIV_PATTERN = r"^(\d{4}\.\d{4,5}(v\d+)?|[a-z-]+(\.[A-Z]{2})?/\d{7}(v\d+)?)$"
URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Family(Strict):
    id: str = Field(pattern=ID_PATTERN, description="Family id, referenced by method entries.")
    name: str
    description: str = Field(min_length=1)
    survey_section: str | None = Field(None, description="Where the survey (arXiv 2502.21321) covers it.")


class Branch(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    description: str = Field(min_length=1)
    survey_section: str | None = None
    families: list[Family] = Field(min_length=1)


class Taxonomy(Strict):
    """The survey's three branches (fine-tuning, reinforcement learning, test-time scaling)."""

    branches: list[Branch] = Field(min_length=1)

    def families(self) -> dict[str, tuple[Branch, Family]]:
        return {f.id: (b, f) for b in self.branches for f in b.families}


class Paper(Strict):
    title: str = Field(min_length=1)
    authors: list[str] = Field(default_factory=list, description="Author names; 'et al.' allowed last.")
    year: int = Field(ge=1950, le=2100)
    arxiv: str | None = Field(None, pattern=ARXIV_PATTERN, description="arXiv id such as 2305.18290.")
    url: str | None = Field(None, pattern=URL_PATTERN)
    venue: str | None = None

    @model_validator(mode="after")
    def _needs_a_link(self) -> Paper:
        if not self.arxiv and not self.url:
            raise ValueError("a paper needs an arxiv id or a url")
        return self

    @property
    def link(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else str(self.url)


class Default(Strict):
    value: Any
    source: str = Field(min_length=1, description="Where the paper states it (section, table, quote).")


class Metric(Strict):
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)


class Implementation(Strict):
    name: str = Field(min_length=1)
    url: str = Field(pattern=URL_PATTERN)


class Lineage(Strict):
    parent: str = Field(pattern=ID_PATTERN, description="The method id this one modifies.")
    changes: list[str] = Field(min_length=1, description="What it changes, one item each.")


class Status(str, Enum):
    stable = "stable"
    experimental = "experimental"
    catalogued = "catalogued"


class MethodEntry(Strict):
    """One method: ``catalog/methods/<id>.yaml``."""

    id: str = Field(pattern=ID_PATTERN, description="Equals the file name without .yaml.")
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    family: str = Field(description="A family id from catalog/taxonomy.yaml.")
    summary: str = Field(min_length=10, max_length=300, description="One or two sentences, ending in a period.")
    description: str = Field(min_length=1, description="Markdown.")
    objective: str = Field(min_length=1, description="LaTeX of the loss or algorithm.")
    papers: list[Paper] = Field(min_length=1)
    plugin: str | None = Field(None, description="A registered plugin name, or null if not runnable.")
    status: Status
    status_note: str | None = Field(None, description="Why a method is catalogued only or experimental.")
    defaults: dict[str, Default] = Field(default_factory=dict)
    metrics: list[Metric] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)
    lineage: Lineage | None = None
    implementations: list[Implementation] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("summary")
    @classmethod
    def _summary_is_a_sentence(cls, v: str) -> str:
        if not v.endswith("."):
            raise ValueError("summary should end with a period")
        return v

    @field_validator("related")
    @classmethod
    def _related_ids(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if not re.match(ID_PATTERN, r)]
        if bad:
            raise ValueError(f"not method ids: {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _plugin_matches_status(self) -> MethodEntry:
        if self.plugin is None and self.status != Status.catalogued:
            raise ValueError("status must be 'catalogued' when plugin is null")
        if self.plugin is not None and self.status == Status.catalogued:
            raise ValueError("status 'catalogued' means not runnable: set plugin to null or status to experimental")
        return self


def json_schemas() -> dict[str, dict[str, Any]]:
    return {"method": MethodEntry.model_json_schema(), "taxonomy": Taxonomy.model_json_schema()}
