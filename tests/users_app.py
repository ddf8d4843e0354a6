"""AppTest script for the Users page (not a test module itself).

One in-memory store per AppTest run's process cache, keyed by ``st.session_state["t_db"]`` so
each test starts from its own accounts: ``root`` (admin, password), ``rita`` (reviewer,
password), ``olga`` (auditor, OIDC). ``["t_role"]`` picks the signed-in actor's role.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402

from faceid.access.actors import Actor  # noqa: E402
from faceid.accounts.users import UserService  # noqa: E402
from faceid.store import schema  # noqa: E402
from faceid.store.db import memory_engine  # noqa: E402
from pages import _widgets as w  # noqa: E402
from pages import users  # noqa: E402

SETUP = Actor("setup", "Setup", "admin")


@st.cache_resource
def service(_db: str) -> UserService:
    engine = memory_engine()
    schema.create_all(engine)
    svc = UserService(engine, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    svc.add(SETUP, "root", "admin", display_name="Root", password="correct horse battery")
    svc.add(SETUP, "rita", "reviewer", display_name="Rita", password="a reviewer's long password")
    svc.add(SETUP, "olga", "auditor", oidc_iss="https://idp.example/", oidc_sub="123")
    return svc


_role = str(st.session_state.get("t_role", "admin"))
_actor = Actor("root" if _role == "admin" else f"apptest.{_role}", "AppTest", _role)
_svc = service(str(st.session_state.get("t_db", "default")))
st.session_state["t_service"] = _svc
w.guarded(users.render, _svc, _actor)
