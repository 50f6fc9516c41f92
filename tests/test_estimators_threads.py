"""The estimators' threads (``_threads``): two parts at once with the numbers of one after the other, each on
its share of the threads, their warnings in order; BLAS single-threaded during a call and restored after."""

import threading
import warnings

import numpy as np
import pytest
import torch
from threadpoolctl import ThreadpoolController

from entropy_ae.estimators import EstimatorWarning, _entropy, _mutual_info, _threads, entropy, mutual_information
from entropy_ae.estimators._validation import collecting, one_warning, warn

torch.set_num_threads(1)

HAS_BLAS = bool(ThreadpoolController().select(user_api="blas").lib_controllers)


def blas_threads() -> list[int]:
    return [lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers]


def test_alongside_gives_each_part_its_share_of_the_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    seen = {}

    def part(name):
        seen[name] = (_threads.workers(), threading.current_thread().name)
        return name

    assert _threads.alongside(lambda: part("first"), lambda: part("second"), 3) == ("first", "second")
    assert seen["first"][0] == 1 and seen["second"][0] == 2
    assert seen["first"][1] != seen["second"][1]  # two threads
    assert _threads.workers() == 3  # the share ends with the part
    assert _threads.alongside(lambda: _threads.workers(), lambda: _threads.workers(), 1) == (3, 3)  # one thread: in turn


def test_alongside_reraises_and_still_waits_for_the_helper():
    finished = threading.Event()

    def slow():
        finished.wait(0.2)
        finished.set()
        return 1

    def failing():
        raise RuntimeError("second part failed")

    with pytest.raises(RuntimeError, match="second part failed"):
        _threads.alongside(slow, failing, 2)
    assert finished.is_set()
    with pytest.raises(ValueError, match="first part failed"):
        _threads.alongside(lambda: (_ for _ in ()).throw(ValueError("first part failed")), lambda: 2, 2)


def test_callers_in_several_threads_do_not_queue_behind_one_helper():
    # Each caller's first part waits for the other's: with one shared helper thread the second would never
    # start and the barrier would time out.
    both = threading.Barrier(2, timeout=5)
    results = []

    def caller():
        results.append(_threads.alongside(lambda: both.wait() in (0, 1), lambda: "second", 2))

    callers = [threading.Thread(target=caller) for _ in range(2)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(10)
    assert results == [(True, "second")] * 2


def test_warnings_of_both_parts_reach_the_one_warning_in_calling_order():
    @one_warning
    def call():
        (a, first), (b, second) = _threads.alongside(collecting(lambda: warn("from the first") or 1),
                                                     collecting(lambda: warn("from the second") or 2), 2)
        for message in first + second:
            warn(message)
        return a + b

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert call() == 3
    assert len(caught) == 1 and issubclass(caught[0].category, EstimatorWarning)
    assert str(caught[0].message) == "from the first Also: from the second"


@pytest.mark.parametrize("d, n", [(1, 600), (4, 600), (3, 20_000)])
def test_mi_on_two_threads_equals_mi_on_one(d, n, monkeypatch):
    # Two threads run the data's pass and the reference at once (alongside), or, at 3 vs 3 on the kd-tree
    # path (SEQUENTIAL_MIN_JOINT_DIM), one after the other on both threads; the number must not move.
    rng = np.random.default_rng(d)
    x = rng.standard_normal((n, d))
    y = 0.6 * x + rng.standard_normal((n, d))
    one = mutual_information(x, y)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert mutual_information(x, y) == one
    assert mutual_information(x, y, correction=None) == mutual_information(x, y, correction=None)


@pytest.mark.parametrize("method, norm, n_blocks, shape, device, want", [
    ("ksg", "euclidean", 2, (20_000, 6), None, False),   # sampled reference, SEQUENTIAL_MIN_JOINT_DIM: one after
    ("ksg", "euclidean", 2, (100_000, 4), None, True),   # ... the other; below that joint dimension at once
    ("ksg", "euclidean", 2, (19_999, 6), None, True),    # below REFERENCE_SAMPLING_MIN_N: every point counted
    ("ksg", "euclidean", 2, (10_000, 6), None, True),    # the brute force (KSG_BRUTE_MAX_N[6])
    ("ksg", "max", 2, (100_000, 8), None, True),         # max-norm: the reference counts all its points
    ("ksg", "euclidean", 3, (100_000, 9), None, True),   # CMI
    ("kde", "max", 2, (1_000, 8), None, True),
    ("ksg", "euclidean", 2, (1_000, 8), "cpu", False),   # a torch device: one after the other, as before
])
def test_passes_run_at_once_except_where_the_reference_is_the_shorter_part(method, norm, n_blocks, shape, device,
                                                                          want, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _mutual_info._passes_at_once(method, norm, n_blocks, shape, device) is want


@pytest.mark.skipif(not HAS_BLAS, reason="threadpoolctl finds no BLAS library in this numpy build")
def test_blas_runs_on_one_thread_during_a_call_and_is_restored():
    controller = ThreadpoolController()
    with controller.limit(limits=2, user_api="blas"):
        before = blas_threads()
        assert max(before) == 2
        inside = []

        @_threads.one_blas_thread
        def outer():
            inside.append(blas_threads())
            inner()
            inside.append(blas_threads())  # still limited after a nested call returned

        @_threads.one_blas_thread
        def inner():
            inside.append(blas_threads())

        outer()
        assert all(max(counts) == 1 for counts in inside) and len(inside) == 3
        assert blas_threads() == before

        @_threads.one_blas_thread
        def failing():
            raise KeyError("x")

        with pytest.raises(KeyError):
            failing()
        assert blas_threads() == before


@pytest.mark.skipif(not HAS_BLAS, reason="threadpoolctl finds no BLAS library in this numpy build")
def test_calls_from_other_threads_leave_the_blas_setting_alone():
    # Only the main thread sets and restores the limit; a call in another thread, during a main-thread call
    # or not, must neither change nor restore it.
    with ThreadpoolController().limit(limits=2, user_api="blas"):
        before = blas_threads()
        seen = []

        @_threads.one_blas_thread
        def other_thread_call():
            seen.append(max(blas_threads()))

        @_threads.one_blas_thread
        def main_call():
            run_in_thread(other_thread_call)
            seen.append(max(blas_threads()))  # the other call has ended; this one still runs limited

        run_in_thread(other_thread_call)
        assert blas_threads() == before
        main_call()
        assert seen == [2, 1, 1]
        assert blas_threads() == before


def run_in_thread(function):
    thread = threading.Thread(target=function)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()


@pytest.mark.skipif(not HAS_BLAS, reason="threadpoolctl finds no BLAS library in this numpy build")
def test_public_estimators_run_with_one_blas_thread(monkeypatch):
    seen = []

    def recording(function):
        return lambda *args, **kwargs: seen.append(max(blas_threads())) or function(*args, **kwargs)

    monkeypatch.setattr(_mutual_info, "_prepare", recording(_mutual_info._prepare))
    monkeypatch.setattr(_entropy, "knn_distances", recording(_entropy.knn_distances))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3))
    with ThreadpoolController().limit(limits=2, user_api="blas"):
        assert np.isfinite(entropy(x)) and np.isfinite(mutual_information(x[:, :1], x[:, 1:]))
        assert max(blas_threads()) == 2
    assert len(seen) >= 2 and set(seen) == {1}
