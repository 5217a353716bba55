"""The test S3 server's request signer against AWS's published Signature V4 example."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from localcluster.sigv4 import EMPTY_SHA256, canonical_query, sign

pytestmark = pytest.mark.unit

AWS_EXAMPLE: dict[str, Any] = {
    "access_key": "AKIDEXAMPLE",
    "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "region": "us-east-1",
    "service": "service",
    "now": datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
}


def test_get_vanilla_matches_the_aws_test_suite() -> None:
    headers = sign(
        "GET", "https://example.amazonaws.com/", {}, {}, payload_sha256=None, **AWS_EXAMPLE
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert headers["x-amz-date"] == "20150830T123600Z"


def test_s3_requests_sign_the_payload_hash_and_every_given_header() -> None:
    headers = sign(
        "PUT",
        "http://127.0.0.1:8333/bucket",
        {},
        {"X-Amz-Acl": "public-read"},
        access_key="a",
        secret_key="s",
        region="us-east-1",
    )
    assert headers["x-amz-content-sha256"] == EMPTY_SHA256
    assert (
        "SignedHeaders=host;x-amz-acl;x-amz-content-sha256;x-amz-date,"
        in (headers["authorization"])
    )


def test_canonical_query_sorts_and_encodes() -> None:
    assert canonical_query({"uploads": "", "prefix": "a b/c"}) == "prefix=a%20b%2Fc&uploads="
