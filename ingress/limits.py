"""BodyBudget: one process-wide cap on the request-body bytes ingress holds at any moment.

Why: each request's body is read whole before it is decoded, and the per-request cap alone lets
N clients that each announce a body just under the cap, send all of it but the last byte and
wait, pin N times that cap in memory (100 x 15 MB pinned 1.5 GB). Here a request reserves its
Content-Length before the body is read (a chunked body reserves as its chunks arrive); the
request that does not fit is answered 503 + Retry-After at once, and the reservation is given
back when the request ends, whatever the outcome. Memory held by bodies therefore stays under
`capacity`, and the excess is refused early rather than after buffering.

What it refuses to do: queue (a waiting request would hold its connection and the client's
bytes in kernel buffers for nothing; a retry later is cheaper) or know anything about HTTP.
The cost per request is two integer operations.
"""

from __future__ import annotations


class BodyBudget:
    __slots__ = ("capacity", "reserved")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.reserved = 0

    def reserve(self, nbytes: int) -> bool:
        """Take `nbytes` if they fit; False (nothing taken) if they do not."""
        if self.reserved + nbytes > self.capacity:
            return False
        self.reserved += nbytes
        return True

    def release(self, nbytes: int) -> None:
        self.reserved -= nbytes
