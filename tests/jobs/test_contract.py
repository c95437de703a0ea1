"""The pool's cut into scoring jobs, shared by both runners."""

from __future__ import annotations

from ls_al_backend.jobs.contract import scoring_chunks


def test_a_set_chunk_size_cuts_the_pool_into_chunks_of_that_size_in_order() -> None:
    assert scoring_chunks([5, 6, 7, 8, 9], 2) == [[5, 6], [7, 8], [9]]
    assert scoring_chunks([], 2) == []


def test_chunk_size_zero_sends_a_small_pool_in_chunks_of_100_and_a_large_one_in_20_or_more_of_at_most_500() -> None:
    def sizes(tasks: int) -> list[int]:
        chunks = scoring_chunks(list(range(tasks)), 0)
        assert [task for chunk in chunks for task in chunk] == list(range(tasks)), "every task once, in order"
        return [len(chunk) for chunk in chunks]

    assert sizes(250) == [100, 100, 50]
    assert sizes(2000) == [100] * 20
    assert sizes(5000) == [250] * 20
    assert sizes(10_000) == [500] * 20
    assert sizes(30_000) == [500] * 60
