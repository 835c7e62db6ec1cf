"""``make bench``'s rate window (issue 21): a program's rate is measured from the end of its
first burst of outputs, so a first batch's events are not counted without their time."""

from bench.run import SteadyWindow


def bursts(sizes: list[int], every_ms: int, start_ms: int = 1_000) -> list[int]:
    """Output stamps of a program writing a batch's records together (1 ms apart), one batch
    every ``every_ms``: its first batch ends ``every_ms`` after it started."""
    stamps: list[int] = []
    for n, size in enumerate(sizes):
        end = start_ms + (n + 1) * every_ms
        stamps += [end - 2 + (i * 3) // size for i in range(size)]
    return sorted(stamps)


def test_a_first_batch_larger_than_the_rest_does_not_inflate_the_rate() -> None:
    # 10,000 records in 500 ms, then 2,000 every 100 ms: 20,000 events a second throughout
    stamps = bursts([10_000], 500) + bursts([2_000] * 10, 100, start_ms=1_500)
    window = SteadyWindow.of(sorted(stamps))
    assert window.first_burst == 10_000
    rate = window.events(len(stamps)) / window.seconds
    assert 19_000 < rate < 21_000
    # from the first record, the first batch's 10,000 came free: half again as fast
    naive = len(stamps) / ((stamps[-1] - stamps[0]) / 1000)
    assert naive > 1.4 * rate


def test_raw_events_without_output_are_counted_in_proportion() -> None:
    window = SteadyWindow.of(bursts([1_000] * 5, 100))
    assert window.first_burst == 1_000
    # 6,000 raw events gave these 5,000 records: 4,800 came after the first burst
    assert window.events(6_000) == 4_800


def test_output_without_pauses_is_measured_whole() -> None:
    stamps = list(range(1_000, 3_000))  # a record a millisecond: 1,000 a second
    window = SteadyWindow.of(stamps)
    assert window.first_burst == 0
    assert window.start_ms == 1_000
    assert window.events(len(stamps)) / window.seconds == 2_000 / 1.999
