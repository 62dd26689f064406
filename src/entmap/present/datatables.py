"""Tables a reader sorts and filters in the report: DataTables through ITables in offline mode.

:func:`datatables_bundle` is ITables' offline initialisation (the DataTables JavaScript and CSS
inlined), included once per page; :func:`sortable_table` is one table. Without JavaScript the
table still shows, as a static preview.
"""

from __future__ import annotations

import functools

import markupsafe
import pandas as pd


@functools.cache
def datatables_bundle() -> str:
    """The DataTables library, inlined, for every :func:`sortable_table` of a page (no network)."""
    from itables import options
    from itables.javascript import generate_init_offline_itables_html

    return generate_init_offline_itables_html(options.dt_bundle)


def sortable_table(frame: pd.DataFrame, caption: str | None = None, page_length: int = 25) -> markupsafe.Markup:
    """HTML of ``frame`` as a table sortable by any column and filtered by the search box above it."""
    from itables import to_html_datatable

    with pd.option_context("display.float_format", lambda v: f"{v:.4g}"):  # shown; sorting uses the full value
        return markupsafe.Markup(
            to_html_datatable(
                frame,
                caption=caption,
                connected=False,
                display_logo_when_loading=False,
                pageLength=page_length,
                lengthMenu=[10, 25, 100, -1],
                # lists, not ITables' default layout, which drops the search box from tables of one page
                layout={
                    "topStart": ["pageLength"],
                    "topEnd": ["search"],
                    "bottomStart": ["info"],
                    "bottomEnd": ["paging"],
                },
                showIndex=False,
                maxBytes=0,
                classes="display compact",
                text_in_header_can_be_selected=False,  # a click anywhere on a header sorts
            )
        )
