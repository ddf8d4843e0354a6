"""The bottom layer every other package builds on: the error tree (``errors``), UTC time
helpers (``timeutil``), settings from the environment and secrets.toml (``config``) and the
spreadsheet-safe CSV cell rules (``csvsafe``).

May import: no other faceid package.
"""
