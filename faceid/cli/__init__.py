"""``python -m faceid VERB``: the verb table, parser and error handling (``main``) and one
module per verb (``commands``); the logic lives in the packages below.

May import: every faceid package except the dashboard's wiring (``faceid.app``).
"""
