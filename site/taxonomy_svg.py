"""Draw the catalog's taxonomy as an inline SVG at build time (no JavaScript, no diagram library).

The picture is a tree read top to bottom: the root ("LLM post-training"), the survey's three
branches side by side, each branch's families stacked under it, and inside each family box one
row per method. Every family and method is a link. Colours and fonts come from CSS classes that
``site/docs/assets/stylesheets/extra.css`` defines with the theme's variables, so the figure
follows the light and dark palettes.

The module is pure: ``taxonomy_svg(branches, href)`` takes plain data and a function that turns a
page's source path into a link relative to the page the figure is shown on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape

# Geometry, in SVG user units (the figure scales to the page width through its viewBox).
COL_W = 300
GAP = 26
MARGIN = 12
ROOT_H = 40
BRANCH_H = 62
FAMILY_HEAD = 30
ROW_H = 22
FAMILY_GAP = 16
INDENT = 18
LINEAGE_INDENT = 14  # a variant sits this much to the right of the method it modifies
CHAR_W = 6.6  # average advance of a 12.5px sans-serif character, for truncating long names
BRANCH_CHAR_W = 8.6  # the same for the 15px bold branch labels


@dataclass
class MethodNode:
    id: str
    label: str
    src: str  # the method page's source path, e.g. "methods/dpo.md"
    runnable: bool
    status: str
    depth: int = 0  # 1 for a variant of the method above it (its lineage parent), 2 for its variant...


@dataclass
class FamilyNode:
    id: str
    label: str
    src: str
    methods: list[MethodNode] = field(default_factory=list)


@dataclass
class BranchNode:
    id: str
    label: str
    src: str
    families: list[FamilyNode] = field(default_factory=list)


def _fit(text: str, width: float) -> str:
    room = int(width / CHAR_W)
    return text if len(text) <= room else text[: max(room - 1, 1)].rstrip() + "…"


def _wrap(text: str, width: float, char_w: float, max_lines: int) -> list[str]:
    """Greedy word wrap by estimated width; the last line is truncated if the text is still too long."""
    room = max(int(width / char_w), 1)
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= room:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [" ".join(lines[max_lines - 1 :])]
    return [_fit(line, width * CHAR_W / char_w) for line in lines]


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _link(href: str, title: str, body: str, data: str = "") -> str:
    return f'<a href="{escape(href)}"{data}><title>{escape(title)}</title>{body}</a>'


def _family_height(fam: FamilyNode) -> int:
    return FAMILY_HEAD + max(len(fam.methods), 1) * ROW_H + 8


def taxonomy_svg(branches: list[BranchNode], href: Callable[[str], str], root_label: str = "LLM post-training") -> str:
    """The taxonomy figure as one ``<svg>`` element; ``href(src)`` gives each link's target."""
    n = max(len(branches), 1)
    width = MARGIN * 2 + n * COL_W + (n - 1) * GAP
    top = MARGIN + ROOT_H + 28  # branch boxes start here
    heights = [sum(_family_height(f) + FAMILY_GAP for f in b.families) for b in branches]
    height = top + BRANCH_H + 20 + max(heights, default=0) + MARGIN
    out: list[str] = [
        f'<svg class="taxonomy-svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="taxonomy-title">',
        f'<title id="taxonomy-title">Taxonomy of LLM post-training methods: {len(branches)} branches, '
        f"{sum(len(b.families) for b in branches)} families, "
        f"{sum(len(f.methods) for b in branches for f in b.families)} methods</title>",
    ]
    # Root, and the connectors from it to each branch.
    root_w = 240
    root_x = (width - root_w) / 2
    out.append(f'<rect class="tx-root" x="{root_x}" y="{MARGIN}" width="{root_w}" height="{ROOT_H}" rx="8"/>')
    out.append(
        f'<text class="tx-root-label" x="{width / 2}" y="{MARGIN + ROOT_H / 2 + 5}" text-anchor="middle">'
        f"{escape(root_label)}</text>"
    )
    bus_y = MARGIN + ROOT_H + 14
    out.append(f'<path class="tx-edge" d="M{width / 2},{MARGIN + ROOT_H} V{bus_y}"/>')
    for i, branch in enumerate(branches):
        x = MARGIN + i * (COL_W + GAP)
        cx = x + COL_W / 2
        out.append(f'<path class="tx-edge" d="M{width / 2},{bus_y} H{cx} V{top}"/>')
        out.append(f'<g class="tx-branch tx-branch-{i}">')
        label_lines = _wrap(branch.label, COL_W - 16, BRANCH_CHAR_W, 2)
        label_y = top + (24 if len(label_lines) == 1 else 17)
        tspans = "".join(
            f'<tspan x="{cx}" dy="{0 if k == 0 else 17}">{escape(t)}</tspan>' for k, t in enumerate(label_lines)
        )
        n_methods = sum(len(f.methods) for f in branch.families)
        box = (
            f'<rect class="tx-branch-box" x="{x}" y="{top}" width="{COL_W}" height="{BRANCH_H}" rx="8"/>'
            f'<text class="tx-branch-label" x="{cx}" y="{label_y}" text-anchor="middle">{tspans}</text>'
            f'<text class="tx-branch-count" x="{cx}" y="{top + BRANCH_H - 9}" text-anchor="middle">'
            f"{_count(len(branch.families), 'family', 'families')} · "
            f"{_count(n_methods, 'method', 'methods')}</text>"
        )
        out.append(_link(href(branch.src), branch.label, box, f' data-branch="{escape(branch.id)}"'))
        # Families hang from a spine on the column's left.
        y = top + BRANCH_H + 20
        spine_x = x + 10
        last_mid = y
        for fam in branch.families:
            fh = _family_height(fam)
            fx = x + INDENT + 6
            fw = COL_W - INDENT - 6
            last_mid = y + FAMILY_HEAD / 2
            out.append(f'<path class="tx-edge" d="M{spine_x},{last_mid} H{fx}"/>')
            head = (
                f'<rect class="tx-family-box" x="{fx}" y="{y}" width="{fw}" height="{fh}" rx="6"/>'
                f'<rect class="tx-family-head" x="{fx}" y="{y}" width="{fw}" height="{FAMILY_HEAD}" rx="6"/>'
                f'<text class="tx-family-label" x="{fx + 10}" y="{y + 20}">'
                f"{escape(_fit(fam.label, fw - 20))}</text>"
            )
            out.append(_link(href(fam.src), f"{fam.label} (family page)", head, f' data-family="{escape(fam.id)}"'))
            row_y = y + FAMILY_HEAD
            if not fam.methods:
                out.append(f'<text class="tx-empty" x="{fx + 12}" y="{row_y + 15}">no methods catalogued yet</text>')
            for m in fam.methods:
                marker = "tx-dot-runnable" if m.runnable else "tx-dot-catalogued"
                dx = min(m.depth, 4) * LINEAGE_INDENT
                if dx:
                    mid_y = row_y + ROW_H / 2
                    out.append(f'<path class="tx-lineage" d="M{fx + dx + 2},{row_y - 4} V{mid_y} H{fx + dx + 8}"/>')
                if m.runnable:
                    state = "runnable: catalog run " + m.id
                elif m.status == "catalogued":
                    state = "catalogued only"
                else:
                    state = "its plugin is not available in this build"
                row = (
                    f'<rect class="tx-method-hit" x="{fx + 2}" y="{row_y + 1}" width="{fw - 4}" '
                    f'height="{ROW_H - 2}" rx="4"/>'
                    f'<circle class="{marker}" cx="{fx + 14 + dx}" cy="{row_y + ROW_H / 2}" r="4"/>'
                    f'<text class="tx-method-label" x="{fx + 26 + dx}" y="{row_y + 15}">'
                    f"{escape(_fit(m.label, fw - 36 - dx))}</text>"
                )
                out.append(_link(href(m.src), f"{m.label} ({state})", row, f' data-method="{escape(m.id)}"'))
                row_y += ROW_H
            y += fh + FAMILY_GAP
        if branch.families:
            out.append(f'<path class="tx-edge" d="M{spine_x},{top + BRANCH_H} V{last_mid}"/>')
        out.append("</g>")
    # Legend.
    lx, ly = MARGIN + 4, MARGIN + 12
    out.append(
        f'<circle class="tx-dot-runnable" cx="{lx + 4}" cy="{ly}" r="4"/>'
        f'<text class="tx-legend" x="{lx + 14}" y="{ly + 4}">runnable (catalog run ID)</text>'
        f'<circle class="tx-dot-catalogued" cx="{lx + 4}" cy="{ly + 18}" r="4"/>'
        f'<text class="tx-legend" x="{lx + 14}" y="{ly + 22}">not runnable here</text>'
        f'<path class="tx-lineage" d="M{lx + 2},{ly + 28} V{ly + 38} H{lx + 8}"/>'
        f'<text class="tx-legend" x="{lx + 14}" y="{ly + 40}">indented: a variant of the method above</text>'
    )
    out.append("</svg>")
    return "\n".join(out)
