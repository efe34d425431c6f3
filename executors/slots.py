"""The node's capacity slots, one per flow run, with an owner for each.

Prefect's worker counts its runs with an anonymous ``anyio.CapacityLimiter``; a slot taken on a
path that later raised was never given back and the node slowly stopped taking work (Prefect
issue #17415). This ledger keeps the flow-run id of every holder, so the worker can release any
slot whose run is neither being submitted nor running a process (``release_orphans``): a leak
lasts at most until the next pick-up cycle. It offers the three calls Prefect's worker makes on
its limiter.
"""

from __future__ import annotations

from collections.abc import Container, Hashable

import anyio


class SlotLedger:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a node needs at least one slot")
        self.capacity = capacity
        self._holders: set[Hashable] = set()

    @property
    def borrowed_tokens(self) -> int:
        return len(self._holders)

    @property
    def total_tokens(self) -> int:
        return self.capacity

    @property
    def holders(self) -> frozenset[Hashable]:
        return frozenset(self._holders)

    def acquire_on_behalf_of_nowait(self, borrower: Hashable) -> None:
        """Take a slot for ``borrower``; ``anyio.WouldBlock`` when all are taken (as anyio)."""
        if borrower in self._holders:
            raise RuntimeError("this borrower is already holding one of this ledger's slots")
        if len(self._holders) >= self.capacity:
            raise anyio.WouldBlock
        self._holders.add(borrower)

    def release_on_behalf_of(self, borrower: Hashable) -> None:
        if borrower not in self._holders:
            raise RuntimeError("this borrower is not holding any of this ledger's slots")
        self._holders.remove(borrower)

    def release_orphans(self, *owners: Container[Hashable]) -> list[Hashable]:
        """Release every slot whose holder is in none of ``owners``; return those holders."""
        orphans = [h for h in self._holders if not any(h in o for o in owners)]
        for holder in orphans:
            self._holders.discard(holder)
        return orphans
