"""Tables of results on the book's pages: a pandas DataFrame shown as an HTML table.

A table of numbers is data, so the chapters build it as a DataFrame and show it with
:func:`results_table`, never as a Markdown string (which some builds print as raw ``| a | b |``
text). The table gets the book theme's DataFrame look (``class="dataframe"``), no index column,
numbers right-aligned and formatted per column, and ids that do not change between builds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from pandas.io.formats.style import Styler

Format = str | Callable[[object], str]
# Text that is only a number, possibly with a second one in brackets: "440 (0.1)", "-", "1e-3".
_NUMBER_TEXT = re.compile(r"^[-+]?[\d.,eE+-]*(\s*\([-+]?[\d.,eE+-]*\))?$")


def _is_number_column(column: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(column):
        return True
    values = [v for v in column if v is not None and v == v]  # v == v drops NaN
    return bool(values) and all(isinstance(v, str) and _NUMBER_TEXT.match(v.strip()) for v in values)


def results_table(data: pd.DataFrame | Sequence[Mapping[str, object]],
                  formats: Mapping[str, Format] | None = None, *, caption: str | None = None,
                  missing: str = "-") -> Styler:
    """A DataFrame (or a list of rows, one dict per row) styled for the page; a cell's last
    expression displays it as an HTML table.

    ``formats`` maps a column to a format string such as ``"{:.3f}"`` or a function; other
    numeric columns use ``"{:.4g}"``. Missing values (None, NaN) show as ``missing``. Columns of
    numbers, or of text that is only numbers such as ``"440 (0.1)"``, are right-aligned. Cells
    are HTML: a link is ``<a href=...>``; ``caption`` goes above the table.
    """
    df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    formats = dict(formats or {})
    unknown = sorted(set(formats) - set(df.columns))
    if unknown:
        raise ValueError(f"formats given for {unknown}, which are not columns of the table; "
                         f"its columns are {list(df.columns)}")
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    for column in numeric:
        formats.setdefault(column, "{:.4g}")
    # The same table gets the same ids in every build; two different tables on a page never share.
    uuid = hashlib.sha1(df.to_csv().encode()).hexdigest()[:10]
    right = [f"td.col{k}, th.col{k}" for k, c in enumerate(df.columns) if _is_number_column(df[c])]
    styles = [{"selector": "th", "props": "text-align: left;"}]
    styles += [{"selector": sel, "props": "text-align: right;"} for sel in right]
    styler = (df.style.hide(axis="index")
              .format(formats, na_rep=missing)
              .set_uuid(uuid)
              .set_table_attributes('class="dataframe"')
              .set_table_styles(styles))
    return styler.set_caption(caption) if caption else styler
