"""The local base image: Debian bookworm with Python, from Debian packages (no registry).

`mmdebstrap --variant=minbase` installs the packages from the host's own Debian mirror and writes
the root filesystem as a tar to stdout; `write_base_archive` turns that stream into a one-layer
image archive (`ociarchive`), leaving out device nodes and the host's name and resolver files.

This base differs from python:3.11-slim-bookworm in one deliberate way: it carries the extra CA
certificates the host trusts (`/usr/local/share/ca-certificates`, added with
update-ca-certificates, and `SSL_CERT_FILE`/`PIP_CERT`/`REQUESTS_CA_BUNDLE`/`CARGO_HTTP_CAINFO`
pointing at the system bundle), so pip, apt and cargo inside builds work through a
TLS-intercepting proxy. The published Dockerfiles stay as they are.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from localcluster import ociarchive

DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("ca-certificates", "python3", "python3-venv", "python-is-python3")
#: As debian:bookworm-slim (and so python:3.11-slim-bookworm): no docs, man pages or locales.
#: Written `option=value`: mmdebstrap filters the essential packages it extracts itself (before
#: dpkg runs) only by `path-exclude=`/`path-include=` lines; with `path-exclude /...` dpkg alone
#: honoured them, so coreutils', bash's, dpkg's... locales, docs and man pages (36 MB) got in.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
)
#: Left out of the root filesystem: device nodes (the runtime provides /dev) and the host's name
#: and resolver configuration, which mmdebstrap copies in.
BASE_DROP = ("dev", "etc/hostname", "etc/resolv.conf")
#: mmdebstrap's own merged-/usr set-up (as debian:bookworm-slim has it): without it, bookworm's
#: minbase installs the `usrmerge` package, which pulls in perl (about 55 MB of the image).
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_RUNTIME = ociarchive.RuntimeConfig(
    cmd=("python3",),
    env=(
        f"PATH={SYSTEM_PATH}",
        "LANG=C.UTF-8",
        f"SSL_CERT_FILE={CA_BUNDLE}",
        f"PIP_CERT={CA_BUNDLE}",
        f"REQUESTS_CA_BUNDLE={CA_BUNDLE}",
        f"CARGO_HTTP_CAINFO={CA_BUNDLE}",
    ),
)


def _options_end(words: list[str]) -> list[str]:
    """Drop a one-line entry's `[arch=amd64 signed-by=...]` options."""
    if not words or not words[0].startswith("["):
        return words
    for i, word in enumerate(words):
        if word.endswith("]"):
            return words[i + 1 :]
    return []


def debian_sources(texts: Sequence[str], suite: str = DEBIAN_SUITE) -> list[str]:
    """One-line `deb` entries for `suite` and its -updates/-security from APT source files
    (one-line `.list` or deb822 `.sources` format), in order, without duplicates.

    Empty when the host has none: mmdebstrap then uses its default mirror."""
    wanted = (suite, f"{suite}-updates", f"{suite}-security")
    entries: list[str] = []

    def add(uris: Sequence[str], suites: Sequence[str], components: Sequence[str]) -> None:
        for uri in uris:
            for each in suites:
                entry = f"deb {uri} {each} {' '.join(components or ['main'])}"
                if each in wanted and entry not in entries:
                    entries.append(entry)

    for text in texts:
        stanza: dict[str, str] = {}
        for raw in [*text.splitlines(), ""]:
            line = raw.strip()
            if line.startswith("#"):
                continue
            if line.startswith("deb "):  # one-line format
                words = _options_end(line.split()[1:])
                if len(words) >= 2:
                    add(words[:1], words[1:2], words[2:])
                continue
            if not line:  # the end of a deb822 stanza
                enabled = stanza.get("enabled", "yes").lower() != "no"
                if enabled and "deb" in stanza.get("types", "").split():
                    add(
                        stanza.get("uris", "").split(),
                        stanza.get("suites", "").split(),
                        stanza.get("components", "").split(),
                    )
                stanza = {}
                continue
            key, colon, value = line.partition(":")
            if colon and not raw[:1].isspace():
                stanza[key.strip().lower()] = value.strip()
    return entries


def host_debian_sources(suite: str = DEBIAN_SUITE, etc: Path = Path("/etc/apt")) -> list[str]:
    """The host's own Debian mirror entries for `suite` (sources.list and sources.list.d/)."""
    files = [etc / "sources.list"]
    folder = etc / "sources.list.d"
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources"))
    return debian_sources([p.read_text(errors="replace") for p in files if p.is_file()], suite)


def host_ca_certificates(folder: Path = HOST_CA_DIR) -> list[Path]:
    """The extra CA certificates the host trusts (what update-ca-certificates adds)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.crt") if p.is_file())


def mmdebstrap_argv(sources: Sequence[str], certificates: Sequence[Path]) -> list[str]:
    """mmdebstrap writing the base's root filesystem as a tar to stdout."""
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        f"--hook-dir={MERGED_USR_HOOK}",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
    ]
    if certificates:
        paths = " ".join(f"'{path}'" for path in certificates)
        argv += [
            f"--customize-hook=copy-in {paths} /usr/local/share/ca-certificates/",
            '--customize-hook=chroot "$1" update-ca-certificates',
        ]
    return [*argv, DEBIAN_SUITE, "-", *sources]


class MmdebstrapError(RuntimeError):
    pass


def write_base_archive(
    out: Path, ref: str, sources: Sequence[str], certificates: Sequence[Path], log: Path
) -> ociarchive.ArchiveInfo:
    """Run mmdebstrap (its messages to `log`) and write the base image archive at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch, log.open("w") as messages:
        proc = subprocess.Popen(
            mmdebstrap_argv(sources, certificates),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=messages,
        )
        assert proc.stdout is not None
        try:
            layer = ociarchive.filtered_layer(
                proc.stdout, Path(scratch) / "rootfs.tar", drop=BASE_DROP, keep_directories=["dev"]
            )
        except (tarfile.TarError, OSError) as err:
            proc.kill()
            if proc.wait() > 0:  # mmdebstrap failed first: its log says why, not the tar reader
                raise MmdebstrapError(_failure(proc.returncode, log)) from err
            raise
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        if proc.wait() != 0:
            raise MmdebstrapError(_failure(proc.returncode, log))
        return ociarchive.write_archive(out, ref, [layer], BASE_RUNTIME)


def _failure(code: int, log: Path) -> str:
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    return f"mmdebstrap failed (exit {code}); its log {log} ends:\n{tail}"
