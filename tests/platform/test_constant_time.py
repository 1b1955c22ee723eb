"""Secrets are compared in constant time: a code-level guarantee, checked on the source.

``==`` on two strings stops at the first differing character, so the time a refusal takes
tells an attacker how much of a guessed signature or password was right. Every comparison of
a secret must go through ``hmac.compare_digest``.

The heuristic, kept small so its blind spots are plain:

* Scope: app/verifiers/, app/routers/ and app/intake/guard.py, where presented
  credentials meet configured ones.
* A comparison is an ``==`` or ``!=`` (``ast.Compare``). Its operands' identifiers are every
  variable name, attribute name and called function's name inside them; an operand "names a
  secret" when one of those identifiers, split on ``_``, contains a word from
  :data:`SECRET_WORDS` (secret, signature, sig, token, digest, password, hmac, key, ...).
* Exempt: comparisons whose other side is a literal (``None``, a number, a string written in
  the source) or an UPPER_CASE module constant (``HMAC_ALGORITHM``): a value in the source
  code is no secret, and ``mode == "hmac"`` leaks nothing. Exempt too are operands wrapped
  in ``len()``, ``type()`` or
  ``isinstance()``: lengths and types of secrets are not what a timing attack recovers.
* Anything else flagged must be in :data:`ALLOWED` with the reason it is safe.

Blind spots: a secret held in a variable with an innocent name, or compared through ``in``,
``startswith`` or a dict lookup, is not seen. The per-module check below (each verifier calls
``hmac.compare_digest``) is the second line.
"""

from __future__ import annotations

import ast
import re

from tests.support.paths import REPO

SCOPE = [
    *sorted((REPO / "app" / "verifiers").rglob("*.py")),
    *sorted((REPO / "app" / "routers").rglob("*.py")),
    REPO / "app" / "intake" / "guard.py",
]
SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "signature",
        "signatures",
        "sig",
        "sigs",
        "token",
        "tokens",
        "digest",
        "password",
        "passwd",
        "hmac",
        "mac",
        "key",
        "keys",
        "credential",
        "credentials",
        "fingerprint",
        "sfp",
        "apikey",
    }
)
# (file relative to the root, source text of the comparison) -> why it is not a secret check.
ALLOWED: dict[tuple[str, str], str] = {
    ("app/routers/icims/events.py", 'head.dedupe_key.split("/", 1)[0] == content'): (
        "a dedupe key is a hash of the event's public ids, not a credential"
    ),
}
_HARMLESS_CALLS = frozenset({"len", "type", "isinstance", "bool"})


def _identifiers(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for child in ast.walk(node):
        if (
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Name)
            and child.func.id in _HARMLESS_CALLS
        ):
            return set()
        if isinstance(child, ast.Name):
            names.add(child.id)
        elif isinstance(child, ast.Attribute):
            names.add(child.attr)
    return names


def _names_secret(node: ast.AST) -> bool:
    words = {w for name in _identifiers(node) for w in re.split(r"_+", name.lower()) if w}
    return bool(words & SECRET_WORDS)


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    if isinstance(node, ast.Name | ast.Attribute) and name and name.isupper():
        return True
    return isinstance(node, ast.Tuple | ast.List | ast.Set) and all(
        isinstance(e, ast.Constant) for e in node.elts
    )


def secret_comparisons() -> list[tuple[str, int, str]]:
    """(file, line, source) of every ``==``/``!=`` between non-literals naming a secret."""
    found = []
    for path in SCOPE:
        source = path.read_text()
        for node in ast.walk(ast.parse(source, str(path))):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
                if not isinstance(op, ast.Eq | ast.NotEq):
                    continue
                if _is_literal(left) or _is_literal(right):
                    continue
                if _names_secret(left) or _names_secret(right):
                    text = ast.get_source_segment(source, node) or ""
                    found.append((str(path.relative_to(REPO)), node.lineno, text))
    return found


def test_no_secret_is_compared_with_equality() -> None:
    flagged = [
        f"{file}:{line}: {text}"
        for file, line, text in secret_comparisons()
        if (file, text) not in ALLOWED
    ]
    assert not flagged, "compare secrets with hmac.compare_digest:\n" + "\n".join(flagged)


def test_the_allow_list_has_no_stale_entries() -> None:
    present = {(file, text) for file, _, text in secret_comparisons()}
    assert set(ALLOWED) <= present


def test_the_heuristic_sees_a_plain_comparison() -> None:
    tree = ast.parse("ok = presented_signature == expected\nfine = mode == 'hmac'")
    flagged = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        and not any(_is_literal(o) for o in [n.left, *n.comparators])
        and any(_names_secret(o) for o in [n.left, *n.comparators])
    ]
    assert len(flagged) == 1


def test_every_verifier_compares_with_compare_digest() -> None:
    modules = [
        p for p in sorted((REPO / "app" / "verifiers").glob("*.py")) if p.name != "__init__.py"
    ]
    assert len(modules) >= 6
    for path in modules:
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "compare_digest"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "hmac"
        ]
        assert calls, f"{path.relative_to(REPO)} never calls hmac.compare_digest"
