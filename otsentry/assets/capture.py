"""The inventory of captures: one pass of the collector, with the link observations read from the same chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from otsentry.assets.inventory import Inventory
from otsentry.assets.observe import observe_chunk
from otsentry.assets.variables import VariableBook
from otsentry.collectors.capture import open_capture
from otsentry.collectors.collector import CollectedBatch, Collector, CollectorConfig
from otsentry.collectors.packets import decode_packets
from otsentry.collectors.types import CaptureError
from otsentry.records import Asset

__all__ = ["inventory_from_captures"]


def inventory_from_captures(paths: Sequence[Path], config: CollectorConfig | None = None,
                            progress: Callable[[int], None] | None = None,
                            until_ts: float | None = None, variables: VariableBook | None = None) -> list[Asset]:
    """One ``Asset`` per host of ``paths`` (decoded one after the other into one inventory); with ``until_ts``,
    only what happened before it (training on the first minutes of a capture); ``variables``, when given, learns
    the process variables of the same transactions."""
    config = config or CollectorConfig()
    inventory = Inventory()
    for path in paths:
        if not Path(path).exists():
            raise CaptureError(f"{path}: no such file")
        collector = Collector(config)

        def take(batch: CollectedBatch) -> None:
            events, flows, operations = list(batch.modbus.events(collector.conns)), batch.flows, batch.operations
            if until_ts is not None:
                events = [e for e in events if e.ts < until_ts]
                flows = [f for f in flows if f.ts_first < until_ts]
                operations = tuple(op for op in operations if op.ts < until_ts)
            inventory.add_events(events)
            inventory.add_operations(operations)
            inventory.add_flows(flows)
            if variables is not None:
                variables.add_events(events)

        with open_capture(path) as reader:
            for chunk in reader.chunks():
                observe_chunk(chunk, decode_packets(chunk), config.server_ports, inventory.links)
                take(collector.process(chunk))
                if progress is not None:
                    progress(len(chunk.buf))
        take(collector.finish())
    return inventory.assets()
