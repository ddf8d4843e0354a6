"""People who sign in: local accounts and OIDC identities (``users``), the dashboard's sign-in
gate (``auth``) and the session expiry rule (``sessions``).

May import: faceid.core, faceid.access, faceid.store.
"""
