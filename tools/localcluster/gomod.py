"""Pure helpers over `go mod edit -json` output (Go's own go.mod parser does the parsing).

A module whose go.mod has `replace` directives cannot be built with `go install pkg@version`
(golang/go#32776). The known way round (kubernetes-mixin's `scripts/go.mod`) is a throwaway
"wrapper" module that requires it and repeats what its go.mod says about its dependencies:
`wrapper_edits` computes that from the module's own go.mod.
"""

from __future__ import annotations

from typing import Any


def _is_local(new: dict[str, Any]) -> bool:
    return not new.get("Version") and str(new["Path"]).startswith(("./", "../"))


def local_replacements(modfile: dict[str, Any]) -> list[str]:
    """Modules that a go.mod both requires and redirects to a local folder (`=> ./staging/...`).

    These are what `go install module@version` refuses; a throwaway module replaces each with its
    published twin. Local replaces of modules that are not required (etcd's
    `=> ./FORBIDDEN_DEPENDENCY` guards) are left out.
    """
    required = {req["Path"] for req in modfile.get("Require") or []}
    found: list[str] = []
    for rep in modfile.get("Replace") or []:
        old = rep["Old"]["Path"]
        if _is_local(rep["New"]) and old in required and old not in found:
            found.append(old)
    return sorted(found)


def replace_args(modules: list[str], version: str) -> list[str]:
    """`go mod edit` arguments replacing each module with itself at `version`."""
    return [f"-replace={module}={module}@{version}" for module in modules]


def _at(module: dict[str, Any]) -> str:
    version = module.get("Version")
    return f"{module['Path']}@{version}" if version else str(module["Path"])


def wrapper_edits(modfile: dict[str, Any], twin_version: str) -> list[str]:
    """`go mod edit` arguments that make a wrapper module resolve dependencies as `modfile` does.

    - a required module replaced by a local folder -> its published twin at `twin_version`
      (the module's own sub-modules, released together with it);
    - a replace with a published target (a fork, a pinned version) -> copied as it is;
    - every `exclude` -> copied (the main module's excludes apply only in the main module).
    """
    edits = replace_args(local_replacements(modfile), twin_version)
    for rep in modfile.get("Replace") or []:
        if not _is_local(rep["New"]):
            edits.append(f"-replace={_at(rep['Old'])}={_at(rep['New'])}")
    for excluded in modfile.get("Exclude") or []:
        edits.append(f"-exclude={_at(excluded)}")
    return edits
