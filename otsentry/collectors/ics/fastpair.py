"""Requests paired with responses over arrays: ``pairing.OperationPairer``'s rule for the fast path's messages.

Within one connection, protocol and key, in order: a response pairs with the message just before it when that is
a request (else it is an orphan); a request followed by another request went unanswered; a request followed by
nothing stays open (for a later chunk, or the timeout). Requests open from earlier chunks come first in their
key's order (``carried``). The pairer applies the same rule one message at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otsentry.collectors.grouping import group_columns

__all__ = ["Paired", "pair"]


@dataclass(frozen=True, slots=True)
class Paired:
    """Message references: >= 0 a message of the chunk, < 0 the carried request -1 - ref."""

    request: np.ndarray  # answered requests
    response: np.ndarray  # ... and their responses
    unanswered: np.ndarray  # requests another request of the same key followed
    open: np.ndarray  # requests nothing followed
    orphans: np.ndarray  # responses without a request


def pair(ref: np.ndarray, request: np.ndarray, key: list[np.ndarray], carried_key: list[np.ndarray]) -> Paired:
    """``ref``/``request``/``key`` (uint64 columns, the connection and protocol first) of the chunk's keyed
    messages in order; ``carried_key`` the same columns of the requests carried over, in their order."""
    n_carried = len(carried_key[0]) if carried_key else 0
    refs = np.concatenate([-1 - np.arange(n_carried, dtype=np.int64), ref])
    is_req = np.concatenate([np.ones(n_carried, dtype=bool), request])
    cols = [np.concatenate([c, k]) for c, k in zip(carried_key, key)] if n_carried else key
    if not len(refs):
        empty = np.empty(0, dtype=np.int64)
        return Paired(empty, empty, empty, empty, empty)
    _, group = group_columns(cols)
    order = np.argsort(group, kind="stable")
    g, r, q = group[order], refs[order], is_req[order]
    same_next = np.zeros(len(g), dtype=bool)
    same_next[:-1] = g[1:] == g[:-1]
    q_next = np.zeros(len(g), dtype=bool)
    q_next[:-1] = q[1:]
    answered = q & same_next & ~q_next
    answer = np.zeros(len(g), dtype=bool)
    answer[1:] = answered[:-1]
    return Paired(r[answered], r[answer], r[q & same_next & q_next], r[q & ~same_next], r[~q & ~answer])
