"""Decoding a capture file end to end, with either backend, as an iterable of CollectedBatch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from otsentry.collectors.capture import open_capture
from otsentry.collectors.collector import CollectedBatch, Collector, CollectorConfig
from otsentry.collectors.pairing import Pairer
from otsentry.collectors.types import CaptureError

__all__ = ["CaptureRun", "decode_capture"]


class CaptureRun:
    """One capture decoded: iterate for batches; ``conns`` and ``stats`` are filled as it goes."""

    def __init__(self, path: Path, config: CollectorConfig, decoder: str = "native", progress: bool = False) -> None:
        self.path = Path(path)
        self.config = config
        self.decoder = decoder
        self.progress = progress
        self.chunk_bytes = 8 << 20
        self.collector = Collector(config)
        self.conns = self.collector.conns
        self.stats = self.collector.stats

    def __iter__(self) -> Iterator[CollectedBatch]:
        if not self.path.exists():
            raise CaptureError(f"{self.path}: no such file")
        if self.decoder == "tshark":
            yield from self._tshark()
            return
        bar = _progress_bar(self.path) if self.progress else None
        try:
            with open_capture(self.path, chunk_bytes=self.chunk_bytes) as reader:
                for chunk in reader.chunks():
                    yield self.collector.process(chunk)
                    if bar is not None:
                        bar.update(len(chunk.buf))
                self.stats.warnings.extend(reader.stats.warnings)
            yield self.collector.finish()
        finally:
            if bar is not None:
                bar.close()

    def _tshark(self) -> Iterator[CollectedBatch]:
        from otsentry.collectors.tshark import iter_halves  # optional backend: pyshark + tshark

        pairer = Pairer(self.config.pairing_timeout_s)
        collector = self.collector
        for halves in iter_halves(self.path, self.config, self.conns, self.stats):
            collector._count_halves(halves)
            yield collector._account(CollectedBatch(pairer.push(halves), []))
        yield collector._account(CollectedBatch(pairer.flush(), []))
        yield from self._tshark_ot()

    def _tshark_ot(self) -> Iterator[CollectedBatch]:
        """The OT protocols from Wireshark's dissectors (a second tshark pass, EK output)."""
        import shutil

        from otsentry.collectors.events import ModbusBatch
        from otsentry.collectors.tshark_ot import TsharkOtDecoder

        tshark = shutil.which("tshark")
        if tshark is None:
            raise CaptureError(f"{self.path}: tshark not found: install it (apt-get install tshark)")
        decoder = TsharkOtDecoder(self.conns, self.stats.protocols, self.config.pairing_timeout_s,
                                  self.config.keep_messages)
        try:
            for operations, messages in decoder.batches(tshark, self.path):
                yield CollectedBatch(ModbusBatch.empty(), [], operations=tuple(operations), messages=tuple(messages))
        except RuntimeError as e:
            raise CaptureError(f"{self.path}: tshark: {e}") from None


def decode_capture(path: Path, config: CollectorConfig, decoder: str = "native", progress: bool = False) -> CaptureRun:
    return CaptureRun(path, config, decoder, progress)


def _progress_bar(path: Path):
    from tqdm import tqdm

    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    return tqdm(total=size, unit="B", unit_scale=True, desc=path.name, leave=False)
