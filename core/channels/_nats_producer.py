"""The NATS channel's appends: a batch of envelopes published to a broker's subject, and when an
append may return, per durability level.

Why it exists: what a 202 promises is decided here, so it is written down here:

    none     core NATS publish, no acknowledgement: the append returns once the messages are in
             the client's write buffer of a live connection. A server that fails before it
             stored them loses them.
    leader   JetStream publish, waiting for every message's PubAck: the stream has stored it. On a
    all      one-replica stream that is the one server; on an R3 stream the PubAck comes only
             after the stream's Raft group committed it on a majority (2 of 3). JetStream has no
             leader-only acknowledgement, so `leader` gives the same guarantee as `all`.

Either way "stored" means written to the server's file store, which JetStream fsyncs every
`sync_interval` (2 minutes by default), not per message: a power loss of a majority of the nodes
at once can lose what was acknowledged in that window (set `sync_interval: always` in the server
config for an fsync per write, at its cost).

The batch is published in order without waiting between messages (the PubAcks are awaited
together), so a batch costs one round trip, not one per event.

What it refuses to do: answer before that guarantee holds, publish while the connection is down
(nats-py would hold the messages and send them after the 503), or wait longer than
`publish_timeout`: an unanswered publish is a `ChannelUnavailable` (503). The connection can drop
after a message left, so a 503 does not prove it was not stored: a retried event can be stored
twice (at-least-once, as with every other channel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from kbroker.core import contract
from kbroker.core.channel import ChannelUnavailable, Envelope
from kbroker.core.channels import _nats_records
from kbroker.core.channels._nats_client import Connection, translate
from nats.js import api


async def append(
    conn: Connection,
    subject: str,
    envelopes: Sequence[Envelope],
    durability: contract.Durability,
    on_stored: Callable[[int], None],
) -> None:
    """Publish `envelopes` in order; `on_stored(seq)` gets the last stream sequence acknowledged."""
    encoded = [_nats_records.encode(env) for env in envelopes]
    try:
        nc = await conn.client()
        if not nc.is_connected:
            # nats-py would buffer the messages until it reconnects and send them then, long after
            # the 503 told the client they were not taken. Refuse them now instead.
            raise ChannelUnavailable(f"nats: publish to {subject}: not connected (reconnecting)")
        if durability is contract.Durability.NONE:
            for headers, payload in encoded:
                await nc.publish(subject, payload, headers=headers)
            return
        js = await conn.js()
        futures: list[asyncio.Future[api.PubAck]] = []
        try:
            for headers, payload in encoded:
                futures.append(
                    await js.publish_async(
                        subject, payload, wait_stall=conn.settings.publish_timeout,
                        headers=headers,
                    )
                )  # fmt: skip
            acks = await asyncio.wait_for(asyncio.gather(*futures), conn.settings.publish_timeout)
        finally:
            for f in futures:  # an unanswered one must release its slot in nats-py's window
                if not f.done():
                    f.cancel()
    except Exception as exc:
        raise translate(exc, f"publish to {subject}") from None
    on_stored(max(a.seq for a in acks))
