"""The one table renderer: a table described once, written as Markdown or as LaTeX.

A `Table` holds a header and rows of `Cell`s; a cell says what it shows (text, or a mean with its
standard error) and how it is marked (bold, italic, a footnote number), never in which format, so
the Markdown and LaTeX forms of a table cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from hyper_ensembles.maths.metrics import mean_and_se

FORMATS = ('markdown', 'latex')
DASH = '–'  # a cell without a value


@dataclasses.dataclass(frozen=True)
class Cell:
  """One table cell: `text`, or `mean` (± `se` where given) shown as value · scale."""

  text: str = DASH
  mean: float | None = None
  se: float | None = None
  decimals: int = 4
  scale: float = 1.0
  bold: bool = False
  italic: bool = False
  note: int | None = None  # footnote number: `text [n]` in Markdown, a superscript in LaTeX

  def number(self, value: float) -> str:
    return f'{value * self.scale:.{self.decimals}f}'


def stat_cell(values: Sequence[float | None], decimals: int = 4, scale: float = 1.0) -> Cell:
  """Mean ± standard error over seeds (maths.metrics.mean_and_se); only the mean for one value,
  a dash for none."""
  mean, se, n = mean_and_se(list(values))
  return stat(mean, se, n, decimals, scale)


def stat(mean: float, se: float | None, n: int, decimals: int = 4, scale: float = 1.0) -> Cell:
  """The cell of a `mean_and_se` result (mean, se, n)."""
  if n == 0:
    return Cell()
  return Cell(mean=mean, se=se, decimals=decimals, scale=scale)


@dataclasses.dataclass(frozen=True)
class Table:
  """`header[j]` names column j; `groups[j]` (optional) the group it belongs to — a prefix of the
  header in Markdown, a spanning heading row in LaTeX ('' for none). `align[j]` is 'l' or 'r'
  (Markdown marks 'r' as `--:`); by default every column is 'l'."""

  header: Sequence[str]
  rows: Sequence[Sequence[Cell | str]]
  groups: Sequence[str] | None = None
  align: str | None = None
  title: str | None = None

  def __post_init__(self):
    width = len(self.header)
    for row in self.rows:
      if len(row) != width:
        raise ValueError(f'a row of {len(row)} cells in a table of {width} columns: {row}')
    for name, value in (('groups', self.groups), ('align', self.align)):
      if value is not None and len(value) != width:
        raise ValueError(f'{len(value)} {name} for a table of {width} columns')


def _cell(cell: Cell | str, latex: bool) -> str:
  if isinstance(cell, str):
    cell = Cell(text=cell)
  if cell.mean is None:
    text = _tex(cell.text) if latex else cell.text
  else:
    text = cell.number(cell.mean)
    if cell.se is not None:
      text += (r' $\pm$ ' if latex else ' ± ') + cell.number(cell.se)
  if cell.note is not None:
    text += rf'\textsuperscript{{{cell.note}}}' if latex else f' [{cell.note}]'
  if cell.bold:
    text = rf'\textbf{{{text}}}' if latex else f'**{text}**'
  if cell.italic:
    text = rf'\textit{{{text}}}' if latex else f'*{text}*'
  return text


def _tex(text: str) -> str:
  return text.replace('_', r'\_').replace('%', r'\%')


def markdown(table: Table) -> str:
  groups = table.groups or [''] * len(table.header)
  header = [f'{g} {h}' if g else h for g, h in zip(groups, table.header)]
  align = table.align or 'l' * len(header)
  lines = [f'### {table.title}', ''] if table.title else []
  lines += ['| ' + ' | '.join(header) + ' |',
            '|' + '|'.join('--:' if a == 'r' else '---' for a in align) + '|']
  lines += ['| ' + ' | '.join(_cell(c, latex=False) for c in row) + ' |' for row in table.rows]
  return '\n'.join(lines)


def latex(table: Table) -> str:
  lines = [f'% {table.title}'] if table.title else []
  lines += [r'\begin{tabular}{' + (table.align or 'l' * len(table.header)) + '}', r'\toprule']
  if table.groups:
    spans = []
    for group, run in itertools.groupby(table.groups):
      n = len(list(run))
      spans += [rf'\multicolumn{{{n}}}{{c}}{{{_tex(group)}}}'] if group else [''] * n
    lines.append(' & '.join(spans) + r' \\')
  lines += [' & '.join(_tex(h) for h in table.header) + r' \\', r'\midrule']
  lines += [' & '.join(_cell(c, latex=True) for c in row) + r' \\' for row in table.rows]
  lines += [r'\bottomrule', r'\end{tabular}']
  return '\n'.join(lines)


def check_format(fmt: str) -> None:
  if fmt not in FORMATS:
    raise ValueError(f'unknown table format {fmt!r}; valid: {", ".join(FORMATS)}')


def render(table: Table, fmt: str) -> str:
  """The table as `fmt`, one of FORMATS."""
  check_format(fmt)
  return markdown(table) if fmt == 'markdown' else latex(table)
