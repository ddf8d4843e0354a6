"""FaceID Review Desk: the core, which never imports streamlit.

Packages, bottom to top (each imports only from the ones before it; the table is in
``tests/test_architecture.py``, the map in ``docs/architecture.md``): ``core``, ``api``,
``access``, ``store``, ``review`` and ``accounts``, ``reports``; then ``app`` (the dashboard's
wiring) and ``cli`` (``python -m faceid``).
"""
