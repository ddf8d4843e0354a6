"""``python -m faceid user add|disable|enable|list|passwd|role``: local account administration.

Passwords come from ``getpass`` (asked twice) or, for scripts and tests, the environment
variable ``FACEID_NEW_PASSWORD`` — never from the command line, where they would sit in the
shell history and in every other user's ``ps`` output.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from faceid.access.permissions import Role
from faceid.accounts.users import PasswordRejected, UserService, cli_actor
from faceid.cli.commands import open_engine
from faceid.core.timeutil import fmt

PASSWORD_ENV = "FACEID_NEW_PASSWORD"  # noqa: S105 - the variable's name, not a password


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create a user (password, or an OIDC identity)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--display-name", default=None)
    add.add_argument("--oidc-iss", default=None,
                     help="OIDC issuer; with --oidc-sub the user signs in via the IdP")
    add.add_argument("--oidc-sub", default=None, help="OIDC subject (not the e-mail)")
    for action, help_text in (("disable", "refuse sign-in from now on"),
                              ("enable", "allow sign-in again"),
                              ("passwd", "set a new password")):
        sub.add_parser(action, help=help_text).add_argument("username")
    role = sub.add_parser("role", help="change a user's role")
    role.add_argument("username")
    role.add_argument("role", choices=[r.value for r in Role])
    sub.add_parser("list", help="list users (never shows password hashes)")


def read_new_password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise PasswordRejected(f"No terminal to ask for the password: set {PASSWORD_ENV}.")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise PasswordRejected("The two passwords differ.")
    return first


def run(args: argparse.Namespace) -> int:
    engine = open_engine()
    try:
        return _run(UserService(engine), args)
    finally:
        engine.dispose()


def _run(users: UserService, args: argparse.Namespace) -> int:
    actor = cli_actor()
    action = args.user_action
    if action == "add":
        oidc = bool(args.oidc_iss or args.oidc_sub)
        info = users.add(actor, args.username, args.role, display_name=args.display_name,
                         password=None if oidc else read_new_password(),
                         oidc_iss=args.oidc_iss, oidc_sub=args.oidc_sub)
        print(f"added {info.username} ({info.role}, signs in with {info.auth})")
    elif action in ("disable", "enable"):
        changed = getattr(users, action)(actor, args.username)
        print(f"{args.username}: {action}d" if changed else f"{args.username}: already {action}d")
    elif action == "passwd":
        users.set_password(actor, args.username, read_new_password())
        print(f"{args.username}: password changed")
    elif action == "role":
        changed = users.set_role(actor, args.username, args.role)
        print(f"{args.username}: role {args.role}" + ("" if changed else " (unchanged)"))
    elif action == "list":
        rows = users.list_users(actor)
        print(f"{'USERNAME':24} {'ROLE':9} {'AUTH':9} {'STATE':9} {'CREATED':24} DISPLAY NAME")
        for u in rows:
            print(f"{u.username:24} {u.role:9} {u.auth:9} "
                  f"{'disabled' if u.disabled else 'enabled':9} {fmt(u.created_at):24} "
                  f"{u.display_name or ''}")
        print(f"{len(rows)} users")
    return 0
