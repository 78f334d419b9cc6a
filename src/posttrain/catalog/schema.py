"""Pydantic models of the catalog's YAML: the taxonomy, method entries and paper references.

Every model forbids unknown fields so a typo in a YAML key is an error, not silently ignored.
``catalog schema`` exports these as JSON Schema for editors.
"""

from __future__ import annotations

import datetime as _dt
import re
from enum import Enum
from typing import Annotated, Any, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from posttrain.catalog import textsafety

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# New-style (2007+) arXiv ids, optionally versioned, and old-style archive/number ids.
ARXIV_PATTERN = r"^(\d{4}\.\d{4,5}(v\d+)?|[a-z-]+(\.[A-Z]{2})?/\d{7}(v\d+)?)$"
DOI_PATTERN = r"^10\.\d{4,9}/\S+$"
URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
# A publication date at the precision the source gives: year, year-month or a full date.
DATE_PATTERN = r"^\d{4}(-\d{2}(-\d{2})?)?$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _safe_and_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        """Every text field: no HTML, no script or non-http links, bounded size (see posttrain.catalog.textsafety)."""
        return checked_text(value, info.field_name or "")


def checked_text(value: Any, field_name: str) -> Any:
    """``value`` unchanged if its text is safe; lists and mappings are checked item by item, one level deep."""
    limit = textsafety.field_limit(field_name)
    if isinstance(value, str):
        problem = textsafety.text_problem(value, limit)
        if problem:
            raise ValueError(problem)
    elif isinstance(value, list | dict):
        if len(value) > textsafety.list_limit(field_name):
            raise ValueError(f"{len(value)} items, at most {textsafety.list_limit(field_name)} allowed")
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in pairs:
            texts = [t for t in (key, item) if isinstance(t, str)]
            problem = next((p for p in (textsafety.text_problem(t, limit) for t in texts) if p), None)
            if problem:
                where = f"item {key}" if isinstance(value, list) else f"key {str(key)[:40]!r}"
                raise ValueError(f"{where}: {problem}")
    return value


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


def check_date(value: str) -> str:
    """Accept YYYY, YYYY-MM or YYYY-MM-DD naming a real calendar date; raise ValueError otherwise."""
    if not re.match(DATE_PATTERN, value):
        raise ValueError(f"'{value}' is not a date (expected YYYY, YYYY-MM or YYYY-MM-DD)")
    parts = [int(p) for p in value.split("-")]
    try:
        _dt.date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a valid date ({exc})") from None
    return value


class PaperKind(str, Enum):
    paper = "paper"
    repository = "repository"
    post = "post"


class PaperRecord(Strict):
    """One paper (or repository, or blog post): ``catalog/papers/<id>.yaml``.

    Method entries cite records by id. Records imported from the awesome-list carry the list's
    sections; ``methods`` holds hand-made links to the method entries a paper proposes, uses or
    studies, and the importer never removes them.
    """

    id: str = Field(pattern=ID_PATTERN, description="Equals the file name without .yaml.")
    title: str = Field(min_length=1)
    kind: PaperKind = PaperKind.paper
    authors: list[str] = Field(default_factory=list)
    date: str | None = Field(None, description="YYYY, YYYY-MM or YYYY-MM-DD (as precise as the source).")
    arxiv: str | None = Field(None, pattern=ARXIV_PATTERN, description="arXiv id such as 2305.18290.")
    url: str | None = Field(None, pattern=URL_PATTERN, description="Link when there is no arXiv id, or besides it.")
    doi: str | None = Field(None, pattern=DOI_PATTERN, description="DOI such as 10.18653/v1/2024.acl-long.410.")
    venue: str | None = None
    sections: list[str] = Field(default_factory=list, description="Awesome-list sections it is listed under.")
    methods: list[str] = Field(default_factory=list, description="Method ids this paper proposes, uses or studies.")
    note: str | None = Field(None, description="Caveats: doubtful metadata, unverified links, list errors.")

    @field_validator("date", mode="before")
    @classmethod
    def _date_as_text(cls, v: Any) -> Any:
        # unquoted YAML dates and years arrive as date objects and ints
        return v.isoformat() if isinstance(v, _dt.date) else str(v) if isinstance(v, int) else v

    @field_validator("date")
    @classmethod
    def _valid_date(cls, v: str | None) -> str | None:
        return None if v is None else check_date(v)

    @model_validator(mode="after")
    def _complete(self) -> PaperRecord:
        if not self.arxiv and not self.url:
            raise ValueError("a paper needs an arxiv id or a url")
        if self.date is None and self.kind != PaperKind.repository:
            raise ValueError("date is required (only repositories may leave it out)")
        return self

    @property
    def year(self) -> int | None:
        return int(self.date[:4]) if self.date else None

    @property
    def link(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else str(self.url)

    def to_paper(self) -> Paper:
        """The record as the ``Paper`` citation a method entry shows."""
        return Paper(
            title=self.title,
            authors=self.authors,
            year=self.year or 1950,
            arxiv=self.arxiv,
            url=None if self.arxiv else self.url,
            venue=self.venue,
        )


def _paper_item_kind(value: Any) -> str:
    return "ref" if isinstance(value, str) else "inline"


# A method's paper: either the id of a record in catalog/papers/ or an inline citation.
PaperItem = Annotated[
    Union[  # noqa: UP007 (Tag needs the explicit Union form)
        Annotated[Annotated[str, StringConstraints(pattern=ID_PATTERN)], Tag("ref")],
        Annotated[Paper, Tag("inline")],
    ],
    Discriminator(_paper_item_kind),
]


class Default(Strict):
    """A hyperparameter as the paper used it; the plugin's own default lives in its ``Config``."""

    value: Any = Field(description="The paper's value (not necessarily the plugin's default).")
    source: str = Field(min_length=1, description="Where the paper states it (section, table, quote).")
    plugin_note: str | None = Field(
        None,
        min_length=1,
        description="Why the plugin's default differs from the paper's value (scale, hardware, the embedded task).",
    )


# --- practitioner fields (issue #21 item 2): every claim names its source ------------------------

# A claim's source: a paper id from catalog/papers/ or a committed report (reports/...).
SOURCE_PATTERN = r"^([a-z0-9][a-z0-9-]*|reports/[\w./-]+)$"
# Where in a paper a headline number is printed.
LOCATION_PATTERN = r"(Table|Figure|Fig\.|§|Section|Appendix|Abstract|Eq\.)"


class Claim(Strict):
    """One practical statement and where it comes from."""

    text: str = Field(min_length=1, description="The statement, one sentence.")
    source: str = Field(pattern=SOURCE_PATTERN, description="A paper id from catalog/papers/, or reports/<file>.")
    where: str | None = Field(None, min_length=1, description="Where in the source: section, table, figure.")


class DataFormat(str, Enum):
    """TRL's dataset types (huggingface.co/docs/trl/dataset_formats), plus what test-time methods take."""

    language_modeling = "language-modeling"
    prompt_only = "prompt-only"
    prompt_completion = "prompt-completion"
    preference = "preference"
    unpaired_preference = "unpaired-preference"
    stepwise_supervision = "stepwise-supervision"


class DataNeeds(Strict):
    formats: list[DataFormat] = Field(min_length=1, description="Dataset types the method trains or runs on.")
    amount: Claim | None = Field(None, description="How much data the paper used.")


class ModelRole(str, Enum):
    policy = "policy"
    reference = "reference"
    reward = "reward"
    value = "value"
    teacher = "teacher"
    verifier = "verifier"


class Compute(Strict):
    models_in_memory: list[ModelRole] = Field(min_length=1, description="Models held during training or search.")
    generations_per_prompt: int = Field(
        ge=0,
        description="Completions sampled per prompt: in the paper's setup, or in this project's default run "
        "when the source is a committed report (no verified figure from the paper).",
    )
    source: str = Field(
        pattern=SOURCE_PATTERN,
        description="Paper id, or the report of the plugin's run, stating the models and generations.",
    )
    where: str | None = Field(None, min_length=1)
    cost_vs_sft: Claim = Field(description="Cost relative to supervised fine-tuning on the same data.")

    @field_validator("models_in_memory")
    @classmethod
    def _distinct_roles(cls, v: list[ModelRole]) -> list[ModelRole]:
        if len(set(v)) != len(v):
            raise ValueError("a model role is listed twice")
        return v


class Result(Strict):
    """A headline number as the paper prints it."""

    text: str = Field(min_length=1, description="The number with its benchmark and comparison.")
    paper: str = Field(pattern=ID_PATTERN, description="Paper id from catalog/papers/.")
    where: str = Field(pattern=LOCATION_PATTERN, description="Table, figure, section or 'Abstract'.")


class ObjectiveSource(Strict):
    """Where the entry's objective is printed, and whether it was checked against the paper."""

    paper: str = Field(pattern=ID_PATTERN, description="Paper id from the entry's papers.")
    equation: str | None = Field(None, min_length=1, description="E.g. 'Eq. 7' or 'Proposition 3.1'.")
    verified: bool = Field(True, description="False while the objective is a sketch not checked against the paper.")

    @model_validator(mode="after")
    def _verified_needs_a_place(self) -> ObjectiveSource:
        if self.verified and not self.equation:
            raise ValueError("a verified objective names its equation (or set verified: false)")
        return self


class Metric(Strict):
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)


class Implementation(Strict):
    name: str = Field(min_length=1)
    url: str = Field(pattern=URL_PATTERN)


class Lineage(Strict):
    parent: str = Field(pattern=ID_PATTERN, description="The method id this one modifies.")
    changes: list[str] = Field(min_length=1, description="What it changes, one item each.")


class RunAs(Strict):
    """A method that is its plugin run with some Config values: a token-level option of grpo, say.
    ``catalog run ID`` applies them; ``catalog run PLUGIN --set KEY=VALUE ...`` is the same run."""

    set: dict[str, bool | int | float | str] = Field(
        min_length=1, description="Config fields of the entry's plugin and their values (checked by catalog validate)."
    )
    report: str | None = Field(
        None,
        pattern=r"^reports/runs/[A-Za-z0-9._-]+\.json$",
        description="The committed report of that run (reports/runs/NAME.json), shown on the method's page.",
    )

    @field_validator("set")
    @classmethod
    def _field_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not re.match(r"^[a-z_][a-z0-9_]*$", k)]
        if bad:
            raise ValueError(f"not Config field names: {', '.join(bad)}")
        return v


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
    papers: list[PaperItem] = Field(
        min_length=1,
        description="Paper ids from catalog/papers/ (preferred) or inline citations; the first is canonical. "
        "The loader replaces ids by the records' citations.",
    )
    plugin: str | None = Field(None, description="A registered plugin name, or null if not runnable.")
    status: Status
    status_note: str | None = Field(None, description="Why a method is catalogued only or experimental.")
    objective_source: ObjectiveSource | None = Field(
        None, description="Where the objective is printed: {paper, equation, verified}."
    )
    defaults: dict[str, Default] = Field(
        default_factory=dict,
        description="The paper's hyperparameters (paper defaults): name -> {value, source, plugin_note}. "
        "The plugin's own defaults are in its Config; plugin_note says why one differs.",
    )
    when_to_use: list[Claim] = Field(default_factory=list, description="Situations the method suits.")
    avoid_when: list[Claim] = Field(default_factory=list, description="Situations where another method is better.")
    data: DataNeeds | None = Field(None, description="Dataset format and amount.")
    compute: Compute | None = Field(None, description="Models in memory, generations per prompt, cost vs SFT.")
    failure_modes: list[Claim] = Field(default_factory=list, description="How it goes wrong, and the sign.")
    results: list[Result] = Field(default_factory=list, description="Headline numbers, with paper and table.")
    metrics: list[Metric] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list, description="Related method ids; each must list this one back.")
    related_one_way: list[str] = Field(
        default_factory=list, description="Related method ids that deliberately do not link back."
    )
    lineage: Lineage | None = None
    run_as: RunAs | None = Field(
        None,
        description="The method is its plugin run with these Config values: {set: {field: value}, report}. "
        "Needs plugin.",
    )
    implementations: list[Implementation] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("summary")
    @classmethod
    def _summary_is_a_sentence(cls, v: str) -> str:
        if not v.endswith("."):
            raise ValueError("summary should end with a period")
        return v

    @field_validator("related", "related_one_way")
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
        if self.run_as is not None and self.plugin is None:
            raise ValueError("run_as needs plugin: the plugin whose Config values it sets")
        return self


# --- the survey's tables as data: catalog/models/ (Table I) and catalog/benchmarks/ (Table III) ---

# A parameter count as the survey prints it: "500B", "12B", "1.5B", or a mixture of experts as
# total-A-active ("141B-A39B").
PARAMETERS_PATTERN = r"^\d+(\.\d+)?[MBT](-A\d+(\.\d+)?[MBT])?$"


class TableMembership(str, Enum):
    """How the row is known to belong to the table."""

    table_body = "table-body"  # read from the table itself
    # named by the survey's text that goes with the table: its caption, the prose of the section
    # it sits in, or a bibliography entry cited only at the table
    survey_text = "survey-text"


class SurveySource(Strict):
    """Where a row comes from in the survey (arXiv 2502.21321)."""

    table: str = Field(pattern=r"^Table (I|II|III)$", description="The survey table the row belongs to.")
    where: str = Field(
        min_length=1, description="What in the survey's text states the row: section, caption or reference number."
    )
    membership: TableMembership = Field(
        description="table-body (read from the table) or survey-text (named by its caption, section or references)."
    )


class Access(str, Enum):
    open = "open"
    closed = "closed"


def method_ids(values: list[str]) -> list[str]:
    """A survey row's method references: each must look like a method id (existence is checked by validate)."""
    bad = [m for m in values if not re.match(ID_PATTERN, m)]
    if bad:
        raise ValueError(f"not method ids: {', '.join(bad)}")
    return values


MethodIds = Annotated[list[str], AfterValidator(method_ids)]


class ModelRow(Strict):
    """One RL-enhanced LLM of the survey's Table I: ``catalog/models/<id>.yaml``.

    A field the survey's recoverable text does not state is left out rather than guessed.
    """

    id: str = Field(pattern=ID_PATTERN, description="Equals the file name without .yaml.")
    name: str = Field(min_length=1, description="The model as the survey names it.")
    organisation: str | None = Field(None, min_length=1, description="Who released it, as the survey cites it.")
    parameters: str | None = Field(
        None, pattern=PARAMETERS_PATTERN, description="Parameter count, e.g. 500B, or 141B-A39B for total-A-active."
    )
    modality: str | None = Field(None, min_length=1, description="E.g. text, multi-modal.")
    access: Access | None = Field(None, description="open or closed weights.")
    rl_methods: MethodIds = Field(
        default_factory=list, description="Method ids from catalog/methods/ for the RL method the survey lists."
    )
    survey: SurveySource
    note: str | None = Field(None, description="Caveats: how a value was read, what the survey leaves unclear.")


class BenchmarkGroup(str, Enum):
    """The five benchmark groups of the survey's \u00a76."""

    reasoning = "reasoning"
    rl_alignment = "rl-alignment"
    multilingual = "multilingual"
    general_comprehension = "general-comprehension"
    dialogue_and_search = "dialogue-and-search"


class BenchmarkRow(Strict):
    """One dataset or benchmark of the survey's Table III: ``catalog/benchmarks/<id>.yaml``."""

    id: str = Field(pattern=ID_PATTERN, description="Equals the file name without .yaml.")
    name: str = Field(min_length=1, description="The dataset as the survey names it.")
    group: BenchmarkGroup = Field(description="The survey's \u00a76 group it is discussed under.")
    focus: str = Field(min_length=1, description="What it measures, in one line.")
    paper: str | None = Field(None, pattern=ID_PATTERN, description="Paper id from catalog/papers/ introducing it.")
    arxiv: str | None = Field(None, pattern=ARXIV_PATTERN, description="arXiv id of the paper introducing it.")
    methods: MethodIds = Field(
        default_factory=list, description="Method ids from catalog/methods/ the survey ties it to."
    )
    survey: SurveySource
    note: str | None = Field(None, description="Caveats, e.g. where the survey cites a different paper.")


# --- per-framework flag maps: catalog/frameworks/<id>.yaml (issue #21 item 3) -------------------


class FlagStyle(str, Enum):
    """How a framework takes its options, so a page can write the flags the way a user types them."""

    python = "python"  # keyword arguments of a config class: GRPOConfig(loss_type="grpo")
    cli = "cli"  # command-line options: --advantage_estimator group_norm
    hydra = "hydra"  # Hydra overrides: algorithm.adv_estimator=grpo
    yaml = "yaml"  # keys of a YAML config file: pref_loss: sigmoid


FlagValue = Union[bool, int, float, str, list[Union[bool, int, float, str]]]  # noqa: UP007 (pydantic union)


class FrameworkRecipe(Strict):
    """How one framework runs one catalog method: its options, where they are documented, what differs."""

    entry_point: str = Field(min_length=1, description="Class, script or stage that runs it, e.g. trl.GRPOTrainer.")
    flags: dict[str, FlagValue] = Field(
        min_length=1,
        description="Option -> value that turns the paper's method on (names exactly as the framework spells them).",
    )
    config_class: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*$",
        description="Importable dotted path of the class whose fields the flags are (checked by the tests when installed).",
    )
    paper_defaults: dict[str, str] = Field(
        default_factory=dict,
        description="Flag -> the method entry's `defaults` key its value comes from (the validator checks they agree).",
    )
    source: str = Field(
        pattern=URL_PATTERN, description="Docs page or file (pinned to a tag or commit) stating the flags."
    )
    note: str | None = Field(None, min_length=1, description="Where the framework's version differs from the paper.")


class Framework(Strict):
    """One training framework's flag map: ``catalog/frameworks/<id>.yaml``."""

    id: str = Field(pattern=ID_PATTERN, description="Equals the file name without .yaml.")
    name: str = Field(min_length=1)
    version: str = Field(min_length=1, description="The version (or commit) whose code or docs were read.")
    checked: str = Field(description="YYYY-MM-DD: when the flags were checked against that version.")
    how_checked: str = Field(min_length=1, description="What was read: the installed package, docs pages, files.")
    docs: str = Field(pattern=URL_PATTERN, description="The framework's documentation.")
    flag_style: FlagStyle
    methods: dict[str, FrameworkRecipe] = Field(min_length=1, description="Method id -> how this framework runs it.")

    @field_validator("checked", mode="before")
    @classmethod
    def _checked_as_text(cls, v: Any) -> Any:
        return v.isoformat() if isinstance(v, _dt.date) else v

    @field_validator("checked")
    @classmethod
    def _full_date(cls, v: str) -> str:
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", v):
            raise ValueError(f"'{v}' is not a full date (expected YYYY-MM-DD)")
        return check_date(v)

    @field_validator("methods")
    @classmethod
    def _method_ids(cls, v: dict[str, FrameworkRecipe]) -> dict[str, FrameworkRecipe]:
        bad = [m for m in v if not re.match(ID_PATTERN, m)]
        if bad:
            raise ValueError(f"not method ids: {', '.join(bad)}")
        return v


def json_schemas() -> dict[str, dict[str, Any]]:
    return {
        "method": MethodEntry.model_json_schema(),
        "paper": PaperRecord.model_json_schema(),
        "taxonomy": Taxonomy.model_json_schema(),
        "model": ModelRow.model_json_schema(),
        "benchmark": BenchmarkRow.model_json_schema(),
        "framework": Framework.model_json_schema(),
    }
