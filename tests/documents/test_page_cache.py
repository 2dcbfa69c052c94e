"""documents.page_cache.ByteLRU: bounded by bytes, least recently used out first."""

from documents.page_cache import ByteLRU


def test_evicts_least_recently_used_by_bytes() -> None:
    cache = ByteLRU(max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the most recent
    cache.put("c", b"1234")  # 12 bytes > 10: b goes
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.size == 8 and len(cache) == 2 and cache.evictions == 1
    cache.put("a", b"123456")  # replacing an entry counts its new size only
    assert cache.size == 10 and len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)


def test_items_larger_than_the_cache_are_not_kept() -> None:
    cache = ByteLRU(max_bytes=4)
    cache.put("a", b"12")
    cache.put("big", b"12345")
    assert cache.get("big") is None and cache.get("a") == b"12" and cache.size == 2
    off = ByteLRU(max_bytes=0)
    off.put("a", b"1")
    assert off.get("a") is None and off.size == 0
