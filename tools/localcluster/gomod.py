"""Pure helpers over `go mod edit -json` output (Go's own go.mod parser does the parsing)."""

from __future__ import annotations

from typing import Any


def local_replacements(modfile: dict[str, Any]) -> list[str]:
    """Modules that a go.mod both requires and redirects to a local folder (`=> ./staging/...`).

    These are what `go install module@version` refuses; a throwaway module replaces each with its
    published twin. Local replaces of modules that are not required (etcd's
    `=> ./FORBIDDEN_DEPENDENCY` guards) are left out.
    """
    required = {req["Path"] for req in modfile.get("Require") or []}
    found: list[str] = []
    for rep in modfile.get("Replace") or []:
        old, new = rep["Old"]["Path"], rep["New"]
        is_local = not new.get("Version") and new["Path"].startswith(("./", "../"))
        if is_local and old in required and old not in found:
            found.append(old)
    return sorted(found)


def replace_args(modules: list[str], version: str) -> list[str]:
    """`go mod edit` arguments replacing each module with itself at `version`."""
    return [f"-replace={module}={module}@{version}" for module in modules]
