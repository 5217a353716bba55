"""One S3 client measured in a process of its own (run by s3_clients.py; stdlib + the client).

Prints one JSON line: import time and RSS, streamed multipart upload throughput, 64 KiB ranged
GET latency, peak RSS. Settings come from the environment (BENCH_*), so the same file runs in
the project's venv (obstore) and in a throwaway venv holding the alternative (aiobotocore).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import statistics
import sys
import time

PART = 8 * 1024 * 1024
CHUNK = 1024 * 1024  # what the upload handler hands over at a time
IN_FLIGHT = 2


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def body(total: int) -> list[bytes]:
    block = os.urandom(CHUNK)
    return [block] * (total // CHUNK)


async def obstore_run(env: dict[str, str], total: int, gets: int) -> dict[str, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        env["BENCH_BUCKET"],
        endpoint=env["BENCH_ENDPOINT"],
        region=env["BENCH_REGION"],
        access_key_id=env["BENCH_KEY"],
        secret_access_key=env["BENCH_SECRET"],
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    chunks = body(total)
    began = time.perf_counter()
    writer = obstore.open_writer_async(store, "obj", buffer_size=PART, max_concurrency=IN_FLIGHT)
    for chunk in chunks:
        await writer.write(chunk)
    await writer.close()
    upload = time.perf_counter() - began
    latencies = []
    for _ in range(gets):
        start = random.randrange(0, total - 65536)
        t0 = time.perf_counter()
        got = await obstore.get_range_async(store, "obj", start=start, length=65536)
        latencies.append(time.perf_counter() - t0)
        assert len(got) == 65536
    return {"upload_s": upload, **summary(latencies)}


async def aiobotocore_run(env: dict[str, str], total: int, gets: int) -> dict[str, float]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    config = AioConfig(s3={"addressing_style": "path"}, max_pool_connections=10)
    async with session.create_client(
        "s3",
        endpoint_url=env["BENCH_ENDPOINT"],
        region_name=env["BENCH_REGION"],
        aws_access_key_id=env["BENCH_KEY"],
        aws_secret_access_key=env["BENCH_SECRET"],
        config=config,
    ) as client:
        bucket = env["BENCH_BUCKET"]
        chunks = body(total)
        began = time.perf_counter()
        created = await client.create_multipart_upload(Bucket=bucket, Key="obj")
        upload_id = created["UploadId"]
        slots = asyncio.Semaphore(IN_FLIGHT)
        tasks = []

        async def part(number: int, data: bytes) -> dict[str, object]:
            try:
                answer = await client.upload_part(
                    Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=number, Body=data
                )
            finally:
                slots.release()
            return {"PartNumber": number, "ETag": answer["ETag"]}

        pending = bytearray()
        number = 0
        for chunk in chunks:
            pending += chunk
            if len(pending) >= PART:
                number += 1
                await slots.acquire()
                tasks.append(asyncio.ensure_future(part(number, bytes(pending))))
                pending.clear()
        if pending:
            number += 1
            await slots.acquire()
            tasks.append(asyncio.ensure_future(part(number, bytes(pending))))
        parts = await asyncio.gather(*tasks)
        await client.complete_multipart_upload(
            Bucket=bucket, Key="obj", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        upload = time.perf_counter() - began
        latencies = []
        for _ in range(gets):
            start = random.randrange(0, total - 65536)
            t0 = time.perf_counter()
            answer = await client.get_object(
                Bucket=bucket, Key="obj", Range=f"bytes={start}-{start + 65535}"
            )
            async with answer["Body"] as stream:
                got = await stream.read()
            latencies.append(time.perf_counter() - t0)
            assert len(got) == 65536
    return {"upload_s": upload, **summary(latencies)}


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "get_p50_ms": statistics.median(ordered) * 1000,
        "get_p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


def main() -> None:
    client = sys.argv[1]
    env = dict(os.environ)
    total = int(env.get("BENCH_MIB", "256")) * 1024 * 1024
    gets = int(env.get("BENCH_GETS", "200"))
    base_rss = rss_mib()
    t0 = time.perf_counter()
    if client == "obstore":
        import obstore.store  # noqa: F401

        run = obstore_run
    else:
        import aiobotocore.session  # noqa: F401

        run = aiobotocore_run
    imported = time.perf_counter() - t0
    import_rss = rss_mib() - base_rss
    result = asyncio.run(run(env, total, gets))
    result.update(
        client=client,
        import_s=imported,
        import_rss_mib=import_rss,
        peak_rss_mib=peak_mib(),
        upload_mib_s=total / 1024 / 1024 / result["upload_s"],
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
