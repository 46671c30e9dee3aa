"""The decision aid as a printable handout: the same options rendered to PDF with WeasyPrint
(from the handout template and web/static/handout.css)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tandem.web.rendering import env

STYLESHEET = Path(__file__).resolve().parent.parent / "web" / "static" / "handout.css"


def handout(**context: Any) -> bytes:
    """The PDF bytes of the options handout for one patient and situation."""
    # Imported here: WeasyPrint loads Pango on import, which only the handout needs.
    from weasyprint import CSS, HTML

    html = env.get_template("choice/decision_handout.html").render(**context)
    pdf = HTML(string=html).write_pdf(stylesheets=[CSS(filename=str(STYLESHEET))])
    assert isinstance(pdf, bytes)
    return pdf
