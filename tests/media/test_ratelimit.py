import time

from media.ratelimit import TokenBucket


def test_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=100.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    bucket.stamp -= 0.02  # 20 ms later: two tokens back
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=1000.0, burst=2)
    bucket.stamp = time.monotonic() - 60
    assert [bucket.take() for _ in range(3)] == [True, True, False]
