"""Which Python S3 client the uploads use: obstore (chosen) against aiobotocore, same SeaweedFS.

Each client runs in a process of its own (s3_client_worker.py), one after the other, rounds
interleaved: a streamed upload of --mib MiB in 8 MiB parts (2 in flight, 1 MiB handed over at a
time, as the PUT handler does), --gets ranged GETs of 64 KiB at random offsets (p50/p99), import
time and RSS, peak RSS. Medians over the rounds are printed as a table.

aiobotocore is not a project dependency: it is installed into a throwaway venv
(.bench/s3-alt, git-ignored) when this runs (`make bench-s3-clients`), so its pinned botocore
never meets anything else.

Usage: python tools/bench/s3_clients.py [--mib 256] [--gets 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from localcluster.s3server import running_s3_server

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("s3_client_worker.py")
ALT_VENV = REPO / ".bench" / "s3-alt"
ALT_PIN = "aiobotocore==3.10.0"
FIELDS = (
    ("upload_mib_s", "upload MiB/s"),
    ("get_p50_ms", "64 KiB GET p50 ms"),
    ("get_p99_ms", "64 KiB GET p99 ms"),
    ("import_s", "import s"),
    ("import_rss_mib", "import RSS MiB"),
    ("peak_rss_mib", "peak RSS MiB"),
)


def alt_python() -> Path:
    """The throwaway venv's python with aiobotocore (created on first use)."""
    python = ALT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ALT_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", ALT_PIN], check=True, timeout=600
        )
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pythons = {"obstore": Path(sys.executable), "aiobotocore": alt_python()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in pythons}
    with (
        tempfile.TemporaryDirectory(prefix="s3bench-") as folder,
        running_s3_server(Path(folder)) as s3,
    ):
        for round_number in range(args.rounds):
            for client, python in pythons.items():
                bucket = s3.make_bucket(f"bench-{client}-{uuid.uuid4().hex[:6]}")
                env = {
                    **os.environ,
                    "BENCH_ENDPOINT": s3.endpoint,
                    "BENCH_REGION": s3.region,
                    "BENCH_KEY": s3.access_key,
                    "BENCH_SECRET": s3.secret_key,
                    "BENCH_BUCKET": bucket,
                    "BENCH_MIB": str(args.mib),
                    "BENCH_GETS": str(args.gets),
                }
                done = subprocess.run(
                    [str(python), str(WORKER), client],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results[client].append(result)
                print(f"round {round_number + 1} {client}: {result}", file=sys.stderr)
                s3.request("DELETE", f"/{bucket}/obj")
    print(f"{'client':<12}" + "".join(f"{label:>20}" for _, label in FIELDS))
    for client, runs in results.items():
        cells = [statistics.median(run[key] for run in runs) for key, _ in FIELDS]
        print(f"{client:<12}" + "".join(f"{value:>20.2f}" for value in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
