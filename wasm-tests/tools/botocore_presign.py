"""Presigned S3 requests from botocore, for fixed inputs: the reference edgefront's own presigning
(core/src/s3.rs) must match byte for byte. Reads a JSON list of cases on stdin, writes a JSON
object {"botocore": version, "results": [...]} on stdout. Used by core/tests/botocore.rs, which
`cargo xtask test` runs with PYTHONPATH pointing at a pinned botocore.

A case: {"op": "put"|"get"|"post", "time": unix seconds, "endpoint", "region", "bucket",
"path_style", "access_key_id", "secret_access_key", "key", "expires",
"content_type" (put, post), "content_length" (put, optional), "disposition" (get, optional), "max_bytes" (post)}.
"""
import datetime
import json
import sys

import botocore
import botocore.auth
import botocore.session
import botocore.signers
from botocore.config import Config


_clients = {}


def client_for(case):
    target = (case["endpoint"], case["region"], case["path_style"], case["access_key_id"])
    if target not in _clients:
        _clients[target] = make_client(case)
    return _clients[target]


def make_client(case):
    return botocore.session.get_session().create_client(
        "s3",
        region_name=case["region"],
        endpoint_url=case["endpoint"],
        aws_access_key_id=case["access_key_id"],
        aws_secret_access_key=case["secret_access_key"],
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if case["path_style"] else "virtual"},
        ),
    )


def presign(case):
    now = datetime.datetime.fromtimestamp(case["time"], datetime.timezone.utc).replace(tzinfo=None)
    # botocore reads the clock through this helper in both the signer and the POST presigner.
    botocore.auth.get_current_datetime = lambda *a, **k: now
    botocore.signers.get_current_datetime = lambda *a, **k: now
    client = client_for(case)
    op = case["op"]
    if op == "put":
        params = {"Bucket": case["bucket"], "Key": case["key"], "ContentType": case["content_type"]}
        if case.get("content_length") is not None:
            params["ContentLength"] = case["content_length"]
        return {"url": client.generate_presigned_url("put_object", Params=params, ExpiresIn=case["expires"])}
    if op == "get":
        params = {"Bucket": case["bucket"], "Key": case["key"]}
        if case.get("disposition") is not None:
            params["ResponseContentDisposition"] = case["disposition"]
        return {"url": client.generate_presigned_url("get_object", Params=params, ExpiresIn=case["expires"])}
    if op == "post":
        ct = case["content_type"]
        post = client.generate_presigned_post(
            case["bucket"],
            case["key"],
            Fields={"Content-Type": ct},
            Conditions=[{"Content-Type": ct}, ["content-length-range", 1, case["max_bytes"]]],
            ExpiresIn=case["expires"],
        )
        return {"url": post["url"], "fields": [[k, v] for k, v in post["fields"].items()]}
    raise ValueError(f"unknown op {op}")


def main():
    cases = json.load(sys.stdin)
    json.dump({"botocore": botocore.__version__, "results": [presign(c) for c in cases]}, sys.stdout)


if __name__ == "__main__":
    main()
