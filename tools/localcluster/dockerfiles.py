"""What a Dockerfile build depends on, read without an engine (pure functions).

- `instructions` splits a Dockerfile the way the builder does (parser directives, comments,
  line continuations with the escape character);
- `declared_args` lists its `ARG` names, so only build arguments it declares are passed;
- `copy_sources` lists what its `COPY`/`ADD` take from the build context;
- `IgnoreRules` is `.dockerignore` with Docker's semantics (last match wins, `!` exceptions,
  `**`, a pattern also matching a file's parent directories), and `context_files` walks a context
  as the Docker CLI does when it sends one;
- `input_hash` is the content hash an image is cached by: the Dockerfile, the files it copies
  (after `.dockerignore`) with their modes, and the build arguments (which name the base images
  by their ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, e.g. "COPY"
    value: str  # the rest of the instruction, continuation lines joined
    line: int  # 1-based line the instruction starts on


def _escape_char(lines: list[str]) -> str:
    """The `# escape=` parser directive (only valid before anything else), default backslash."""
    for line in lines:
        match = _DIRECTIVE.match(line.strip())
        if match is None:
            break
        if match[1].lower() == "escape" and match[2] in ("\\", "`"):
            return match[2]
    return "\\"


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions in order (comments and blank lines dropped)."""
    lines = text.splitlines()
    escape = _escape_char(lines)
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and empty lines vanish, also inside a continuation
        if not pending:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            pending.append(body[:-1])
            continue
        pending.append(body)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        keyword, _, value = joined.partition(" ")
        result.append(Instruction(keyword.upper(), value.strip(), start))
    if pending:
        joined = " ".join(part.strip() for part in pending).strip()
        keyword, _, value = joined.partition(" ")
        result.append(Instruction(keyword.upper(), value.strip(), start))
    return result


def _split_words(value: str) -> list[str]:
    """Whitespace-separated words, double or single quotes grouping (as in `ARG A="x y"`)."""
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    in_word = False
    for char in value:
        if quote is not None:
            if char == quote:
                quote = None
            else:
                current.append(char)
        elif char in "\"'":
            quote, in_word = char, True
        elif char.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(char)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words


def declared_args(text: str) -> dict[str, str | None]:
    """Every `ARG` the Dockerfile declares (global or in a stage): name -> default (or None)."""
    declared: dict[str, str | None] = {}
    for instruction in instructions(text):
        if instruction.keyword != "ARG":
            continue
        for word in _split_words(instruction.value):
            name, equals, default = word.partition("=")
            if name and name not in declared:
                declared[name] = default if equals else None
    return declared


def build_args_for(text: str, offered: Mapping[str, str]) -> dict[str, str]:
    """The subset of `offered` build arguments the Dockerfile declares (never an unknown one)."""
    declared = declared_args(text)
    return {name: value for name, value in offered.items() if name in declared}


def _flags_and_rest(value: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = value
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, flag_value = word[2:].partition("=")
        flags[name] = flag_value
        rest = rest.lstrip()
    return flags, rest


def copy_sources(text: str) -> list[str] | None:
    """The build-context paths (or globs) the Dockerfile's COPY/ADD take, in order.

    `COPY --from=...` takes from another stage or image and is left out; URLs in ADD too. None
    when a source cannot be known without evaluating variables (`$X`): then the whole context
    counts."""
    sources: list[str] = []
    for instruction in instructions(text):
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        flags, rest = _flags_and_rest(instruction.value)
        if "from" in flags or rest.startswith("<<"):
            continue  # another stage's files, or a heredoc written in the Dockerfile itself
        json_form = rest.startswith("[")
        words = [str(word) for word in json.loads(rest)] if json_form else rest.split()
        for source in words[:-1]:
            if "://" in source:
                continue
            if "$" in source:
                return None
            sources.append(source)
    return sources


# --- .dockerignore ---------------------------------------------------------------------------


def read_ignore_file(text: str) -> list[str]:
    """`.dockerignore` lines as the Docker CLI reads them: comments and blanks dropped, each
    pattern cleaned and made relative (a leading `/` removed), `!` kept in front."""
    patterns: list[str] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = os.path.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


class _Pattern:
    """One `.dockerignore` pattern, matched the way Docker's pattern matcher does: an exact
    path, a prefix (`dir/**`), a suffix (`**/name`) or, with wildcards, a regular expression
    (`*` and `?` stop at `/`, `**` crosses directories, `[...]` classes, `\\` escapes)."""

    def __init__(self, text: str) -> None:
        self.exclusion = text.startswith("!")
        self.text = text[1:] if self.exclusion else text
        self.kind, self.regex = _compile(self.text)

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self.regex is not None and self.regex.match(path) is not None


def _compile(pattern: str) -> tuple[str, re.Pattern[str] | None]:
    out = ["^"]
    kind = "exact"
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                first = i == 0
                i += 2
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                if i >= len(pattern):
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regex"
                else:
                    out.append("(.*/)?")
                    kind = "regex"
                if first:
                    kind = "suffix"
                continue
            out.append("[^/]*")
            kind = "regex"
        elif char == "?":
            out.append("[^/]")
            kind = "regex"
        elif char == "\\":
            if i + 1 < len(pattern):
                i += 1
                out.append(re.escape(pattern[i]))
                kind = "regex"
            else:
                out.append(re.escape(char))
        elif char in "[]":
            out.append(char)
            kind = "regex"
        else:
            out.append(re.escape(char))
        i += 1
    if kind != "regex":
        return kind, None
    try:
        return kind, re.compile("".join(out) + "$", re.DOTALL)
    except re.error as err:
        raise ValueError(f"bad .dockerignore pattern {pattern!r}: {err}") from err


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A COPY source glob as the builder matches it (filepath.Match: no wildcard crosses `/`)."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                out.append("[^" + body[1:] + "]" if body.startswith("^") else "[" + body + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class IgnoreRules:
    """`.dockerignore` semantics: is a context path left out of the build context?"""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [_Pattern(pattern) for pattern in patterns]
        self.has_exceptions = any(p.exclusion for p in self.patterns)

    @classmethod
    def of_context(cls, context: Path) -> IgnoreRules:
        ignore = context / ".dockerignore"
        return cls(read_ignore_file(ignore.read_text()) if ignore.is_file() else [])

    def ignored(self, path: str) -> bool:
        """True when `path` (relative, slash-separated) is excluded. The last pattern matching
        the path, or one of its parent directories, decides."""
        parents = list(PurePosixPath(path).parents)[-2::-1]  # outermost first, without "."
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # an inclusion cannot change a match, nor an exception a non-match
            hit = pattern.match(path) or any(pattern.match(str(p)) for p in parents)
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_contain_exceptions(self, directory: str) -> bool:
        """Whether an ignored directory still has to be walked: an exception pattern lies
        below it (the CLI's rule for not skipping the directory)."""
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def context_files(context: Path, rules: IgnoreRules | None = None) -> Iterator[str]:
    """Every path of the build context the CLI would send (files, links and directories),
    relative and slash-separated, in sorted walk order."""
    rules = rules if rules is not None else IgnoreRules.of_context(context)

    def walk(directory: Path, relative: str) -> Iterator[str]:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = f"{relative}/{entry.name}" if relative else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if rules.ignored(path):
                if is_dir and rules.has_exceptions and rules.may_contain_exceptions(path):
                    yield from walk(Path(entry.path), path)
                continue
            yield path
            if is_dir:
                yield from walk(Path(entry.path), path)

    yield from walk(context, "")


def copied_files(context: Path, sources: list[str] | None) -> list[str]:
    """The context paths the COPY/ADD `sources` take (directories with everything below them,
    globs as the builder matches them), after `.dockerignore`. None: the whole context."""
    sent = list(context_files(context))
    if sources is None:
        return sent
    wanted: set[str] = set()
    for source in sources:
        cleaned = os.path.normpath(source.lstrip("/"))
        if cleaned == ".":
            return sent
        if any(char in cleaned for char in "*?["):
            glob = _glob_regex(cleaned)
            roots = [path for path in sent if glob.match(path)]
        else:
            roots = [cleaned]
        for root in roots:
            wanted.update(path for path in sent if path == root or path.startswith(root + "/"))
    return sorted(wanted)


def _entry_digest(path: Path) -> str:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"link {os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        return f"dir {stat.S_IMODE(info.st_mode):o}"
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
    return f"file {stat.S_IMODE(info.st_mode):o} {sha.hexdigest()}"


#: Bump to invalidate every cached image when what the hash covers changes.
HASH_SCHEME = "localcluster-images-1"


def input_hash(
    context: Path, dockerfile: Path, build_args: Mapping[str, str], extra: Iterable[str] = ()
) -> str:
    """sha256 over the Dockerfile, `.dockerignore`, every file its COPY/ADD take (path, mode,
    content; symlinks by target), the build arguments and `extra` lines (e.g. the tag)."""
    text = dockerfile.read_text()
    sha = hashlib.sha256()

    def line(value: str) -> None:
        sha.update(value.encode() + b"\n")

    line(HASH_SCHEME)
    line("dockerfile " + hashlib.sha256(text.encode()).hexdigest())
    ignore = context / ".dockerignore"
    if ignore.is_file():
        line("dockerignore " + hashlib.sha256(ignore.read_bytes()).hexdigest())
    for name, value in sorted(build_args.items()):
        line(f"arg {name}={value}")
    for item in extra:
        line(f"extra {item}")
    for relative in copied_files(context, copy_sources(text)):
        line(f"{relative} {_entry_digest(context / relative)}")
    return sha.hexdigest()
