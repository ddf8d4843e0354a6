"""Start the desk: ``streamlit run dashboard.py`` with Streamlit's legacy ``pages/`` mode off.

Streamlit (1.67) treats a folder named ``pages`` beside the entry point as an old-style
multipage app until the first ``st.navigation`` call in the process flips
``PagesManager.uses_pages_directory`` to False. Until then — the first browser session after a
server start — a deep link shows "Page not found" over the real page, and the first widget
change after loading ``/`` is lost. The design keeps the page modules in ``pages/`` and routes
them explicitly with ``st.navigation``, so the flag is set before the server starts. The flag
is only consulted when it is None (``PagesManager.__init__``), so setting it is enough.

Usage: ``python scripts/desk.py [streamlit run options...]`` (``make run`` does this).
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(ROOT / "dashboard.py"), *argv]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
