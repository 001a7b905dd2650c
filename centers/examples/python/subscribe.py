"""Follow a model's class centers on NATS with nats-py, as a downstream system would.

    pip install nats-py protobuf
    protoc -I schemas --python_out=centers/examples/python schemas/ffc/v1/ffc.proto
    python3 centers/examples/python/subscribe.py --model glyphs [--nats nats://127.0.0.1:14222]

Each ID's last center is on the subject centers.<model>.<id> of the JetStream stream
CENTERS_<model> (the stream keeps the last message per subject), encoded as the CenterUpdate
message of schemas/ffc/v1/ffc.proto: a replay of the stream gives every ID's current center,
then the updates as they come. A TOMBSTONE is a removed ID. The trainer signs each update
(ed25519, field 11); `ffc centers` and centers/broadcast verify it, this example does not.
"""

import argparse
import asyncio
import json

import nats
from ffc.v1 import ffc_pb2


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats", default="nats://127.0.0.1:14222")
    ap.add_argument("--model", default="glyphs")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many centers (0: follow)")
    args = ap.parse_args()
    nc = await nats.connect(args.nats)
    js = nc.jetstream()
    # centers.<model>.* : one token after the model, the ID (and "step", the step records).
    sub = await js.subscribe(f"centers.{args.model}.*", ordered_consumer=True)
    centers = {}
    async for msg in sub.messages:
        if msg.subject.endswith(".step"):
            continue
        u = ffc_pb2.CenterUpdate()
        u.ParseFromString(msg.data)
        if u.kind == ffc_pb2.CenterUpdate.TOMBSTONE:
            centers.pop(u.id, None)
        else:
            centers[u.id] = list(u.vector)
        print(json.dumps({"id": u.id, "kind": ffc_pb2.CenterUpdate.Kind.Name(u.kind), "step": u.step,
                          "epoch": u.epoch, "dim": len(u.vector), "ids": len(centers)}), flush=True)
        if args.limit and len(centers) >= args.limit:
            break
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
