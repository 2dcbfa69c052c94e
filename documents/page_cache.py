"""A small in-memory LRU of rendered images, bounded by bytes (per process).

Used for confidential page images, which are rendered per viewer with a watermark: a viewer
flipping back and forth between pages gets the image rendered a moment ago instead of a new
render. The caller puts everything that makes an image differ into the key (server.
api_documents: version, page, width, viewer, watermark text, time bucket), so an entry can
only ever be served for exactly the request it was rendered for.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class ByteLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self.size = 0  # bytes held
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> bytes | None:
        data = self._items.get(key)
        if data is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return data

    def put(self, key: Hashable, data: bytes) -> None:
        """Keep `data` (dropping the least recently used entries to make room); an item
        larger than the whole cache is not kept."""
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old)
        if len(data) > self.max_bytes:
            return
        self._items[key] = data
        self.size += len(data)
        while self.size > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.size -= len(dropped)
            self.evictions += 1
