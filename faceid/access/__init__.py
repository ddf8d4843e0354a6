"""Who is acting and what they may do: the role → permission table (``permissions``), the
``Actor`` every service call takes (``actors``), and the masking of personal data (``pii``).
Policy only: no database, no accounts (those are ``faceid.accounts``).

May import: faceid.core only.
"""
