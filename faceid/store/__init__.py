"""Persistence and the ways data gets in: engine (``db``), tables, triggers, schema and
migrations; the write path (``write``: inbox raw row → typed model → stored row) with its
derived columns (``summary``), the audit trail (``audit``) and the export line cache
(``export_lines``); fetching from FaceID, importing files and notify callbacks, with the
durable fetch queue and its worker.

May import: faceid.core, faceid.api, faceid.access.
"""
