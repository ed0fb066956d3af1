#!/usr/bin/env python3
"""Writes the sample Lambda events in events/ (see events/README.md).

Deterministic: the same inputs always give byte-identical files, so `git diff` after a run
shows only real changes. Standard library only.

    python3 scripts/make-events.py           # (re)write events/*.json
    python3 scripts/make-events.py --check   # exit 1 if any file in events/ is stale

The webhook POST body is the minified form of
tests/fixtures/whatsapp/webhook_status_delivered.json. It is produced once, signed, and written
into the event as-is: the signature covers exactly the bytes the function will see in `body`
(JSON string escaping in the event file is undone by the deserialiser, so the UTF-8 bytes are
the same).

Message ids (`msg_` + 32 lowercase hex digits) are made-up UUIDv7s, as the send API generates
them: the millisecond timestamp of the event they belong to, then hash-derived bits.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import struct
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
FIXTURES = ROOT / "tests" / "fixtures" / "whatsapp"

# Test secrets. Never use them anywhere but tests and local runs.
APP_SECRET = "carteiro-test-app-secret"
VERIFY_TOKEN = "carteiro-test-verify-token"
WRONG_APP_SECRET = "not-the-app-secret"
API_KEY = "carteiro-test-api-key"  # the key of "app-1" in the api_keys document

CHALLENGE = "1158201444"
PATH = "/webhooks/whatsapp"

# A made-up deployment, consistent across all events.
REGION = "us-east-1"
ACCOUNT = "123456789012"
API_ID = "c4rte1r0ab"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
INBOUND_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:carteiro-InboundQueue-EXAMPLE0001"
OUTBOUND_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:carteiro-OutboundQueue-EXAMPLE0001"
# Documentation addresses (RFC 5737), standing in for Meta's webhook senders and for the app
# that calls the send API.
META_IP = "203.0.113.10"
APP_IP = "198.51.100.20"
MESSAGES_PATH = "/v1/messages"
# uuid5 namespace for message ids (any fixed UUID works; this one is uuid5(NAMESPACE_DNS, "carteiro")).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "carteiro")


def minified(path: Path) -> str:
    """The fixture as Meta puts it on the wire: no whitespace, non-ASCII escaped as \\uXXXX."""
    return json.dumps(json.loads(path.read_text(encoding="utf-8")), separators=(",", ":"))


def signature(secret: str, body: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), body.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def request_id(name: str) -> str:
    """An API Gateway style request id (16 characters of base64)."""
    return base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()[:11]).decode()


def trace_id(name: str, epoch: int) -> str:
    return f"Root=1-{epoch:08x}-{hashlib.sha256(name.encode()).hexdigest()[:24]}"


def clf_time(epoch_ms: int) -> str:
    t = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.timezone.utc)
    return t.strftime("%d/%b/%Y:%H:%M:%S +0000")


def message_id(name: str, epoch_ms: int) -> str:
    """A made-up Carteiro message id: `msg_` + a UUIDv7 (48-bit ms timestamp, version 7,
    variant 10, the other 74 bits from a hash of `name`) as 32 lowercase hex digits."""
    rand = int.from_bytes(hashlib.sha256(f"message-id-{name}".encode()).digest()[:10], "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (epoch_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return f"msg_{uuid.UUID(int=value).hex}"


def http_api_request(
    name: str,
    method: str,
    epoch_ms: int,
    user_agent: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    path: str = PATH,
    route_path: str | None = None,
    path_parameters: dict[str, str] | None = None,
    source_ip: str = META_IP,
) -> dict:
    """An API Gateway HTTP API (payload format 2.0) request for `method path`, shaped like
    aws-lambda-rust-runtime's fixture example-apigw-v2-request-no-authorizer.json. `route_path`
    is the route's template (`/v1/messages/{id}`) when it differs from the path. Header names
    are lower case, as API Gateway delivers them."""
    query = query or []
    raw_query = "&".join(f"{k}={v}" for k, v in query)
    all_headers = {
        "accept": "*/*",
        "host": DOMAIN,
        "user-agent": user_agent,
        "x-amzn-trace-id": trace_id(name, epoch_ms // 1000),
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if body is not None:
        all_headers["content-length"] = str(len(body.encode("utf-8")))
    all_headers.update(headers or {})
    route_key = f"{method} {route_path or path}"
    event: dict = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": dict(sorted(all_headers.items())),
    }
    if query:
        event["queryStringParameters"] = dict(query)
    event["requestContext"] = {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "domainName": DOMAIN,
        "domainPrefix": API_ID,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": user_agent,
        },
        "requestId": request_id(name),
        "routeKey": route_key,
        "stage": "$default",
        "time": clf_time(epoch_ms),
        "timeEpoch": epoch_ms,
    }
    if body is not None:
        event["body"] = body
    if path_parameters:
        event["pathParameters"] = path_parameters
    event["isBase64Encoded"] = False
    return event


def sorted_keys(value):
    """`value` with every object's keys sorted, as serde_json writes a `Value`."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def sqs_attributes_md5(attributes: dict[str, str]) -> str:
    """SQS's MD5OfMessageAttributes for String attributes: for each name in order, the
    length-prefixed name, data type and value, with transport type 1 (string)."""
    md5 = hashlib.md5()
    for name in sorted(attributes):
        for part in (name, "String"):
            encoded = part.encode("utf-8")
            md5.update(struct.pack(">I", len(encoded)) + encoded)
        value = attributes[name].encode("utf-8")
        md5.update(b"\x01" + struct.pack(">I", len(value)) + value)
    return md5.hexdigest()


INTAKE_SENDER = "AROAEXAMPLEINTAKE0001:carteiro-WebhookIntakeFunction-EXAMPLE"
SEND_API_SENDER = "AROAEXAMPLESENDAPI001:carteiro-SendApiFunction-EXAMPLE"
DISPATCH_SENDER = "AROAEXAMPLEDISPATCH01:carteiro-DispatchFunction-EXAMPLE"


def sqs_record(
    index: int,
    body: str,
    attributes: dict[str, str],
    sent_ms: int,
    queue: str = "inbound",
    sender: str = INTAKE_SENDER,
    queue_arn: str = INBOUND_QUEUE_ARN,
    first_receive_ms: int | None = None,
) -> dict:
    """One SQS record as the Lambda event source mapping delivers it. Without message
    attributes SQS sends no `md5OfMessageAttributes`, so the record has none."""
    message_id = str(uuid.uuid5(NAMESPACE, f"{queue}-{index}"))
    receipt_seed = f"receipt-{index}" if queue == "inbound" else f"{queue}-receipt-{index}"
    handle = base64.b64encode(hashlib.sha256(receipt_seed.encode()).digest() * 3).decode()
    record = {
        "messageId": message_id,
        "receiptHandle": f"AQEB{handle}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent_ms),
            "SenderId": sender,
            "ApproximateFirstReceiveTimestamp": str(first_receive_ms or sent_ms + 35),
        },
        "messageAttributes": {
            name: {
                "stringValue": value,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
            for name, value in sorted(attributes.items())
        },
        "md5OfBody": hashlib.md5(body.encode("utf-8")).hexdigest(),
    }
    if attributes:
        record["md5OfMessageAttributes"] = sqs_attributes_md5(attributes)
    record.update(
        {
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        }
    )
    return record


def build() -> dict[str, str]:
    """File name -> exact file contents."""
    files: dict[str, dict] = {}

    # GET handshake: Meta subscribes the callback URL.
    get_ms = 1698266900123
    files["webhook-intake-get-handshake.json"] = http_api_request(
        "get-handshake",
        "GET",
        get_ms,
        "facebookplatform/1.0 (+http://developers.facebook.com)",
        query=[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", VERIFY_TOKEN),
            ("hub.challenge", CHALLENGE),
        ],
    )

    # Signed POST: a "delivered" status webhook.
    delivered = json.loads((FIXTURES / "webhook_status_delivered.json").read_text("utf-8"))
    body = minified(FIXTURES / "webhook_status_delivered.json")
    post_ms = (int(delivered["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"]) + 2) * 1000 + 417
    for name, secret in (
        ("webhook-intake-post-signed.json", APP_SECRET),
        ("webhook-intake-post-bad-signature.json", WRONG_APP_SECRET),
    ):
        files[name] = http_api_request(
            name.removesuffix(".json"),
            "POST",
            post_ms,
            "facebookexternalua",
            headers={
                "content-type": "application/json",
                "x-hub-signature-256": signature(secret, body),
            },
            body=body,
        )

    # SQS batch for the inbound events function: what intake queues for the signed POST above
    # (its one status) plus one inbound text message.
    value = delivered["entry"][0]["changes"][0]["value"]
    # Key order as carteiro-shared serialises an InboundEvent (struct fields in declaration
    # order, free-form JSON values with sorted keys), so this body is byte for byte what intake
    # queues for the signed POST.
    status = value["statuses"][0]
    status_event = {
        "kind": "status",
        "phone_number_id": value["metadata"]["phone_number_id"],
        "status": {key: sorted_keys(item) for key, item in status.items()},
    }
    # The inbound message in Meta's wire shape, which `Message` reads (and writes back with
    # sorted keys).
    message_event = {
        "kind": "message",
        "phone_number_id": value["metadata"]["phone_number_id"],
        "contact": {"profile": {"name": "Ana"}, "wa_id": "5511999990001"},
        "message": sorted_keys(
            {
                "from": "5511999990001",
                "id": "wamid.HBgNNTUxMTk5OTk5MDAwMRUCABIYIDNFQjBDOTk5QTRFRjA3NDk1MjNCNTI2ODQyN0UyOUE1AA",
                "timestamp": "1698266960",
                "type": "text",
                "text": {"body": "Olá"},
            }
        ),
    }
    post_request_id = files["webhook-intake-post-signed.json"]["requestContext"]["requestId"]
    records = []
    for index, event in enumerate((status_event, message_event)):
        event_body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        attributes = {"correlation_id": post_request_id, "event_kind": event["kind"]}
        records.append(sqs_record(index, event_body, attributes, post_ms + 60 + index * 25_000))
    files["inbound-events-sqs-batch.json"] = {"Records": records}

    # Send API: an app sends a WhatsApp text with its API key and an Idempotency-Key.
    send_ms = 1698267000123
    send_body = json.dumps(
        {"channel": "whatsapp", "to": "+5511999990001", "text": {"body": "Olá"}},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    app_agent = "curl/8.5.0"
    files["send-api-post-text.json"] = http_api_request(
        "send-api-post-text",
        "POST",
        send_ms,
        app_agent,
        headers={
            "authorization": f"Bearer {API_KEY}",
            "content-type": "application/json",
            "idempotency-key": "order-1042-confirmation",
        },
        body=send_body,
        path=MESSAGES_PATH,
        source_ip=APP_IP,
    )

    # ... and reads a message back. The id is an example: the real one is generated when the
    # POST is handled.
    sent_id = message_id("send-api-post-text", send_ms + 18)
    get_ms = send_ms + 4_250
    files["send-api-get-message.json"] = http_api_request(
        "send-api-get-message",
        "GET",
        get_ms,
        app_agent,
        headers={"authorization": f"Bearer {API_KEY}"},
        path=f"{MESSAGES_PATH}/{sent_id}",
        route_path=f"{MESSAGES_PATH}/{{id}}",
        path_parameters={"id": sent_id},
        source_ip=APP_IP,
    )

    # SQS batch for dispatch: the job the send API queued for that message, and a retry that
    # dispatch put back on its own queue with a delay. Bodies as serde_json writes a DispatchJob.
    retry_id = message_id("dispatch-retry", send_ms - 95_000)
    jobs = [
        (sent_id, SEND_API_SENDER, send_ms + 31, None),
        # Re-enqueued with DelaySeconds 30 after a throttled attempt: received when it is due.
        (retry_id, DISPATCH_SENDER, send_ms - 30_000 + 12, send_ms + 44),
    ]
    files["dispatch-sqs-batch.json"] = {
        "Records": [
            sqs_record(
                index,
                json.dumps({"id": job_id}, separators=(",", ":")),
                {},
                sent,
                queue="outbound",
                sender=sender,
                queue_arn=OUTBOUND_QUEUE_ARN,
                first_receive_ms=first_receive,
            )
            for index, (job_id, sender, sent, first_receive) in enumerate(jobs)
        ]
    }

    return {
        name: json.dumps(event, indent=2, ensure_ascii=False) + "\n"
        for name, event in sorted(files.items())
    }


def self_check(files: dict[str, str]) -> None:
    """Re-derive the signature from the written text: what the function will verify."""
    post = json.loads(files["webhook-intake-post-signed.json"])
    expected = signature(APP_SECRET, post["body"])
    if post["headers"]["x-hub-signature-256"] != expected:
        raise SystemExit("internal error: signature does not match the written body")
    bad = json.loads(files["webhook-intake-post-bad-signature.json"])
    if bad["headers"]["x-hub-signature-256"] == expected or bad["body"] != post["body"]:
        raise SystemExit("internal error: the bad-signature event is not a bad signature")
    # Message ids must parse as carteiro-shared's MessageId: msg_ + 32 lowercase hex digits.
    get = json.loads(files["send-api-get-message.json"])
    batch = json.loads(files["dispatch-sqs-batch.json"])
    ids = [get["pathParameters"]["id"]] + [json.loads(r["body"])["id"] for r in batch["Records"]]
    for id_ in ids:
        rest = id_.removeprefix("msg_")
        if rest == id_ or len(rest) != 32 or rest.strip("0123456789abcdef"):
            raise SystemExit(f"internal error: {id_!r} is not a Carteiro message id")
    if get["rawPath"] != f"{MESSAGES_PATH}/{ids[0]}" or ids[1] != ids[0]:
        raise SystemExit("internal error: the GET and the first dispatch job name different messages")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    args = parser.parse_args()

    files = build()
    self_check(files)
    stale = []
    for name, text in files.items():
        path = EVENTS / name
        current = path.read_text("utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            EVENTS.mkdir(exist_ok=True)
            path.write_text(text, "utf-8")
    if args.check:
        for name in stale:
            print(f"stale: events/{name} (run python3 scripts/make-events.py)", file=sys.stderr)
        return 1 if stale else 0
    for name in files:
        print(f"{'wrote' if name in stale else 'unchanged'} events/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
