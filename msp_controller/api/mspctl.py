"""mspctl: the controller's REST API from a shell.

    mspctl [--url URL] [--json] health | list | show NAME
           | watch [NAME] [--interval S] [--for S]
           | policy get NAME | policy set NAME FILE|- | openapi
           | rates NAME ISP [--down-kbps N|none] [--up-kbps N|none]
           | homenet create FILE|- | homenet replace NAME FILE|- | homenet delete NAME
    mspctl token [--role operator|owner] [--homenet NAME] [--name NAME]   (offline)

health, list (also `homenets`) and show print tables; --json prints the API's JSON as it
came, for scripts. The other commands print indented JSON. watch polls the API and prints
one line per change of a path's state or of the path a class uses, until --for seconds
have passed or Ctrl-C.

Token: --token-file, else $MSP_TOKEN, else the file named by $MSP_TOKEN_FILE (sent as
"Authorization: Bearer ..."; the reference topology's is etc/reference-operator.token).
URL: --url, else $MSP_URL, else http://127.0.0.1:8080 (the reference topology's controller,
in its own namespace, answers on http://198.19.255.2:8080). For an https URL the server's
certificate is checked against the system's CAs, or the file named by $MSP_CACERT.

Exit status: 0 done, 1 the API refused (its message on stderr) or a local file is
unreadable, 2 the controller cannot be reached (or bad usage).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from msp_controller.api import ctl_tables, ctl_watch
from msp_controller.api.auth import digest, new_token
from msp_controller.api.openapi import API_PREFIX

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "MSP_URL"
CACERT_ENV = "MSP_CACERT"  # the CA that signed the API's certificate, for https URLs


class CtlError(Exception):
    def __init__(self, message: str, code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status  # the API's HTTP status, when it answered


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mspctl", description="Talk to the MSP controller's REST API.")
    parser.add_argument("--url", default=os.environ.get(URL_ENV, DEFAULT_URL),
                        help=f"the controller's API (default ${URL_ENV}, else {DEFAULT_URL})")
    parser.add_argument("--token-file", help="file holding the API token (default $MSP_TOKEN, $MSP_TOKEN_FILE)")
    parser.add_argument("--json", action="store_true",
                        help="print the API's JSON as it came, for scripts (default: tables for health, list, show)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("health", help="controller and switch health")
    commands.add_parser("homenets", aliases=["list"], help="list the homenets")
    commands.add_parser("show", help="a homenet's paths, measurements and classes").add_argument("name")
    watch = commands.add_parser("watch", help="print path changes as they happen (polls the API)")
    watch.add_argument("name", nargs="?", help="one homenet (every class); default: all (their default class)")
    watch.add_argument("--interval", type=_seconds(0.1), default=1.0, metavar="S",
                       help="seconds between polls (default 1, at least 0.1)")
    watch.add_argument("--for", dest="for_s", type=_seconds(0.0), metavar="S",
                       help="stop after this many seconds (default: until Ctrl-C)")
    commands.add_parser("openapi", help="the API's OpenAPI document")
    policy = commands.add_parser("policy", help="get or set a homenet's traffic policy")
    actions = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("get", help="print the policy").add_argument("name")
    put = actions.add_parser("set", help="replace the policy with a JSON file")
    put.add_argument("name")
    put.add_argument("file", help="JSON policy file, or - for standard input")
    rates = commands.add_parser("rates", help="set an ISP's access rates in a homenet's policy (QoS shaping)")
    rates.add_argument("name")
    rates.add_argument("isp")
    for direction in ("down", "up"):
        rates.add_argument(f"--{direction}-kbps", type=_kbps, metavar="N", default=_UNCHANGED,
                           help=f"the ISP's {direction}stream rate in kbit/s, or none (not shaped); default: unchanged")
    homenet = commands.add_parser("homenet", help="create, replace or delete a homenet (stored by the controller)")
    changes = homenet.add_subparsers(dest="action", required=True, metavar="ACTION")
    changes.add_parser("create", help="serve a new homenet described by a JSON file").add_argument(
        "file", help="JSON homenet (the fields of a [[homenets]] table), or - for standard input")
    replace = changes.add_parser("replace", help="change a homenet to the JSON file's description")
    replace.add_argument("name")
    replace.add_argument("file", help="JSON homenet, or - for standard input")
    changes.add_parser("delete", help="stop serving a homenet (flows, groups and routes go)").add_argument("name")
    token = commands.add_parser("token", help="make a new API token and the config line that admits it")
    token.add_argument("--role", choices=["operator", "owner"], default="operator")
    token.add_argument("--homenet", help="the owner's homenet")
    token.add_argument("--name", help="who holds it (default: the role, or <homenet>-owner)")
    return parser


def _seconds(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not minimum <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text} s: must be at least {minimum:g}")
        return value

    return parse


_UNCHANGED = object()  # a rate not given on the command line


def _kbps(text: str) -> int | None:
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate in kbit/s (an integer, or none)") from None


def _set_rates(args: argparse.Namespace, token: str | None) -> tuple[int, bytes]:
    """Read the policy, change one ISP's rates, put it back: the controller validates it
    as any policy (a wrong ISP or rate is refused, naming the field, and nothing changes).
    A change made by someone else in between is overwritten."""
    _, body = _call(args.url, "GET", _homenet(args.name) + "/policy", None, args.timeout, token)
    policy = _decode(body)
    if not isinstance(policy, dict):
        raise CtlError("the controller's policy has an unexpected shape", 1)
    rates = dict(policy.get("rates") or {})
    current = dict(rates.get(args.isp) or {})
    for key, value in (("down_kbps", args.down_kbps), ("up_kbps", args.up_kbps)):
        if value is not _UNCHANGED:
            current[key] = value
    rates[args.isp] = current
    policy["rates"] = rates
    return _call(args.url, "PUT", _homenet(args.name) + "/policy", json.dumps(policy).encode(),
                 args.timeout, token)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        path = args.token_file
    elif os.environ.get("MSP_TOKEN"):
        return os.environ["MSP_TOKEN"].strip()
    elif os.environ.get("MSP_TOKEN_FILE"):
        path = os.environ["MSP_TOKEN_FILE"]
    else:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as err:
        raise CtlError(f"cannot read the token file {path}: {err.strerror or err}", 2) from None


def _new_token(args: argparse.Namespace) -> int:
    if (args.role == "owner") != bool(args.homenet):
        print("mspctl: an owner token needs --homenet, an operator token none", file=sys.stderr)
        return 2
    token = new_token()
    name = args.name or (f"{args.homenet}-owner" if args.homenet else "operator")
    homenet = f', homenet = "{args.homenet}"' if args.homenet else ""
    print(f"token (keep it secret; the controller keeps only its digest): {token}")
    print(f'[api] tokens entry: {{ name = "{name}", role = "{args.role}"{homenet}, sha256 = "{digest(token)}" }}')
    return 0


def _homenet(name: str) -> str:
    return f"/homenets/{quote(name, safe='')}"


def _request(args: argparse.Namespace) -> tuple[str, str, bytes | None]:
    """The method, API path and body the command line asks for."""
    if args.command == "health":
        return "GET", "/health", None
    if args.command in ("homenets", "list"):
        return "GET", "/homenets", None
    if args.command == "show":
        return "GET", _homenet(args.name), None
    if args.command == "openapi":
        return "GET", "/openapi.json", None
    if args.command == "homenet":
        if args.action == "create":
            return "POST", "/homenets", _read_policy(args.file)
        if args.action == "replace":
            return "PUT", _homenet(args.name), _read_policy(args.file)
        return "DELETE", _homenet(args.name), None
    if args.action == "get":
        return "GET", _homenet(args.name) + "/policy", None
    return "PUT", _homenet(args.name) + "/policy", _read_policy(args.file)


def _read_policy(path: str) -> bytes:
    # Sent as is: the server reports JSON mistakes with their line and column.
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise CtlError(f"cannot read {path}: {err.strerror or err}", 1) from None


def _call(base: str, method: str, path: str, body: bytes | None, timeout: float,
          token: str | None = None) -> tuple[int, bytes]:
    url = base.rstrip("/") + API_PREFIX + path
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
    except ValueError as err:  # no scheme, say
        raise CtlError(f"bad --url {base!r}: {err}", 2) from None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_tls_context()) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        raise CtlError(_api_error(err.code, err.reason, err.read()), 1, err.code) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise CtlError(f"cannot reach the controller at {base}: {_why(err)}", 2) from None


def _tls_context() -> ssl.SSLContext | None:
    """For an https URL: the system's CAs, or only the one in $MSP_CACERT (the controller's
    own CA, [api] tls_cert's issuer)."""
    cafile = os.environ.get(CACERT_ENV)
    return ssl.create_default_context(cafile=cafile) if cafile else None


def _why(err: Exception) -> str:
    reason = getattr(err, "reason", err)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the controller running, with its REST API on this port?)"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(getattr(reason, "strerror", None) or reason)


def _api_error(status: int, reason: str, body: bytes) -> str:
    """The API's own error message; something sensible if the answer is not the API's."""
    try:
        error = json.loads(body)["error"]
        where = f"{error['where']}: " if error.get("where") else ""
        return f"{status}: {where}{error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} {reason} (not an answer from the msp API: is --url right?)"


TABLES: dict[str, Callable[[Any], str]] = {
    "health": ctl_tables.health_text, "homenets": ctl_tables.homenets_text, "list": ctl_tables.homenets_text,
    "show": ctl_tables.homenet_text,
}


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise CtlError("the controller answered something that is not JSON", 1) from None


def _show(body: bytes, raw: bool, command: str = "") -> None:
    if raw:
        sys.stdout.write(body.decode("utf-8", "replace"))
        return
    answer = _decode(body)
    render = TABLES.get(command)
    if render is None:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    try:
        print(render(answer))
    except (AttributeError, TypeError, ValueError):
        raise CtlError(f"the controller's answer has an unexpected shape; try --json: {body[:200]!r}", 1) from None


def _watch(args: argparse.Namespace, token: str | None) -> None:
    """Poll until --for has passed; only a refusal that waiting cannot cure (a bad token,
    say) ends it early, with its error."""
    path = _homenet(args.name) if args.name else "/homenets"
    snapshot = ctl_watch.homenet_snapshot if args.name else ctl_watch.list_snapshot

    def fetch() -> ctl_watch.Snapshot:
        try:
            _, body = _call(args.url, "GET", path, None, args.timeout, token)
        except CtlError as err:
            if err.code == 2 or err.status == 404 or (err.status or 0) >= 500:
                raise ctl_watch.Unavailable(f"{err}") from None
            raise
        try:
            return snapshot(_decode(body))
        except (AttributeError, TypeError) as err:
            raise CtlError(f"the controller's answer has an unexpected shape: {err}", 1) from None

    what = f"homenet {args.name}" if args.name else "every homenet"
    print(f"mspctl: watching {what} at {args.url} every {args.interval:g} s; Ctrl-C stops", file=sys.stderr)
    ctl_watch.watch(fetch, sys.stdout, args.interval, args.for_s)


def _warn_pending(status: int, body: bytes) -> None:
    if status != 202:
        return
    try:
        pending = ", ".join(map(str, json.loads(body).get("pending", [])))
    except (ValueError, AttributeError):
        pending = "?"
    print(f"mspctl: accepted, applied when these switches connect: {pending}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # usage errors and --help: argparse has already printed
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if args.command == "token":
        return _new_token(args)
    try:
        if args.command == "watch":
            _watch(args, _token(args))
            return 0
        if args.command == "rates":
            status, answer = _set_rates(args, _token(args))
            _show(answer, args.json, args.command)
            _warn_pending(status, answer)
            return 0
        method, path, body = _request(args)
        status, answer = _call(args.url, method, path, body, args.timeout, _token(args))
        _show(answer, args.json, args.command)
        _warn_pending(status, answer)
    except CtlError as err:
        print(f"mspctl: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:  # Ctrl-C: the way to stop `watch`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
