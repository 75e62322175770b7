"""One self-contained HTML page: headings, tables and matplotlib plots inlined as PNG data URIs.

The blocks of :mod:`fuxictr_mmctr.train.report` (``mmctr report``). The page needs no network,
no JavaScript and no file beside it: styles are in the page, every plot is a PNG made by
matplotlib's Agg canvas (``matplotlib.figure.Figure``, no pyplot state) and embedded as
``data:image/png;base64``. matplotlib is an optional extra (``pip install
'fuxictr_mmctr[report]'``), imported when a plot is drawn.
"""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

from .. import __version__
from ..errors import require
from ..io import PathLike, atomic_path

# Colours of the plots (matplotlib's tab10), the first for the best or only series.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class Cell:
    """A table cell: ``text`` shown; ``value`` (a number) right-aligns it; ``bar`` in [0, 1]
    draws a bar behind it (a share of the column's best)."""

    text: str
    value: Optional[float] = None
    bar: Optional[float] = None


@dataclass
class Table:
    """Rows of cells under a header; ``highlight``: indexes of rows shown in bold colour."""

    header: List[str]
    rows: List[List[Cell]]
    highlight: Sequence[int] = ()
    caption: str = ""


@dataclass
class Plot:
    """A plot: its title (the image's ``alt`` text too) and the PNG bytes."""

    title: str
    png: bytes


@dataclass
class Facts:
    """A row of headline figures: ``(label, value)`` pairs shown as cards."""

    items: List[tuple]


@dataclass
class Text:
    """A paragraph (escaped)."""

    text: str


Block = Union[Table, Plot, Facts, Text]


@dataclass
class Section:
    """A heading and its blocks, in order."""

    title: str
    blocks: List[Block] = field(default_factory=list)


@dataclass
class Page:
    """The whole page: a title, a subtitle line (what it was made from) and its sections."""

    title: str
    subtitle: str = ""
    sections: List[Section] = field(default_factory=list)

    @property
    def plots(self) -> List[Plot]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Plot)]

    @property
    def tables(self) -> List[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]


# ---------------------------------------------------------------------------- cells

def number(value, digits: int = 4, bar: Optional[float] = None) -> Cell:
    """A numeric cell (``""`` for None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("")
    value = float(value)
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return Cell(text, value=value, bar=bar)


def text(value) -> Cell:
    return Cell("" if value is None else str(value))


# ---------------------------------------------------------------------------- plots

def figure(panels: int = 1, width: float = 5.2, height: float = 3.4):
    """A matplotlib ``Figure`` with ``panels`` axes side by side (Agg canvas, no pyplot)."""
    require("matplotlib", "report", "mmctr report")
    # lazy: the optional extra, imported when a plot is drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, color="#e5e5e5", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, list(axes)


def plot(title: str, draw: Callable, panels: int = 1, width: float = 5.2,
         height: float = 3.4) -> Plot:
    """Draw with ``draw(fig, axes)`` and keep the PNG."""
    fig, axes = figure(panels, width, height)
    draw(fig, axes)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return Plot(title, buffer.getvalue())


# ---------------------------------------------------------------------------- HTML

_STYLE = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
 background:#f6f7f9;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:8px 0 4px}
h2{font-size:19px;margin:34px 0 12px;padding-bottom:6px;border-bottom:2px solid #dde1e7}
.sub{color:#5b6474;font-size:13px;margin-bottom:10px}
p{line-height:1.45;max-width:900px}
.facts{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.fact{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 16px;min-width:120px}
.fact .k{font-size:12px;color:#5b6474;text-transform:uppercase;letter-spacing:.04em}
.fact .v{font-size:20px;font-weight:600;margin-top:2px;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;margin:10px 0}
table{border-collapse:collapse;background:#fff;font-size:13px;border:1px solid #dde1e7}
caption{caption-side:top;text-align:left;color:#5b6474;font-size:12px;padding:4px 0}
th{background:#eef1f5;text-align:left;padding:6px 10px;border-bottom:1px solid #dde1e7;
 white-space:nowrap}
td{padding:5px 10px;border-bottom:1px solid #eef0f3;white-space:nowrap;position:relative}
tr:nth-child(even) td{background:#fafbfc}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td .bar{position:absolute;left:0;top:3px;bottom:3px;background:#d7e6f5;z-index:0}
td span{position:relative;z-index:1}
tr.best td{font-weight:600;color:#0b4f8a}
figure{display:inline-block;margin:8px 12px 8px 0;background:#fff;border:1px solid #dde1e7;
 border-radius:8px;padding:6px}
figure img{display:block;max-width:100%}
figcaption{font-size:12px;color:#5b6474;padding:4px 2px 0}
footer{margin-top:40px;color:#8a93a3;font-size:12px}
"""


def _table_html(table: Table) -> str:
    out = ['<div class="scroll"><table>']
    if table.caption:
        out.append(f"<caption>{html.escape(table.caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
               + "</tr></thead><tbody>")
    for i, row in enumerate(table.rows):
        cells = []
        for cell in row:
            klass = ' class="n"' if cell.value is not None else ""
            bar = ""
            if cell.bar is not None and math.isfinite(cell.bar):
                bar = f'<div class="bar" style="width:{max(0.0, min(1.0, cell.bar)) * 100:.1f}%">' \
                      '</div>'
            cells.append(f"<td{klass}>{bar}<span>{html.escape(cell.text)}</span></td>")
        attr = ' class="best"' if i in table.highlight else ""
        out.append(f"<tr{attr}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _block_html(block: Block) -> str:
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Plot):
        data = base64.b64encode(block.png).decode("ascii")
        title = html.escape(block.title)
        return (f'<figure><img alt="{title}" src="data:image/png;base64,{data}">'
                f"<figcaption>{title}</figcaption></figure>")
    if isinstance(block, Facts):
        cards = "".join(f'<div class="fact"><div class="k">{html.escape(str(k))}</div>'
                        f'<div class="v">{html.escape(str(v))}</div></div>'
                        for k, v in block.items)
        return f'<div class="facts">{cards}</div>'
    return f"<p>{html.escape(block.text)}</p>"


def render(page: Page) -> str:
    """The page as one HTML document (UTF-8, styles inline, images as data URIs)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(page.title)}</title><style>{_STYLE}</style></head>",
             f"<body><main><h1>{html.escape(page.title)}</h1>"]
    if page.subtitle:
        parts.append(f'<div class="sub">{html.escape(page.subtitle)}</div>')
    for section in page.sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts += [_block_html(b) for b in section.blocks]
        parts.append("</section>")
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(f"<footer>fuxictr_mmctr {html.escape(__version__)} &middot; mmctr report "
                 f"&middot; {stamp}</footer></main></body></html>")
    return "\n".join(parts)


def write_page(page: Page, out: PathLike) -> Path:
    """Write :func:`render` of ``page`` to ``out`` atomically; returns ``out``."""
    out = Path(out)
    document = render(page)
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(document, encoding="utf-8")
    return out
