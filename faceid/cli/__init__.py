"""``python -m faceid VERB``: the verb table, parser and error handling (``main``) and one
module per verb (``commands``); the logic lives in the packages below. The dashboard's wiring
(``faceid.app``) is not for the CLI.

May import: faceid.core, faceid.api, faceid.access, faceid.store, faceid.review,
faceid.reports, faceid.accounts.
"""
