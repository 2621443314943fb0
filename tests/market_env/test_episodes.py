"""Episode sampling: a seed keeps playing the episodes it always has, one slot or a whole batch at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numba.typed import List

import market_env
from market_env.episodes import _mask, draw_episode, draw_episodes

REFERENCE = json.loads(Path(__file__).with_name("reference_episodes.json").read_text())


def _sampler(task: str, split: str):
    return market_env.make(task, split=split, obs_mode="numeric").market.sampler


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_seeds_draw_their_published_episodes(key):
    """Stored draws of seeds 0-2 (two episodes each): a change here changes every evaluation's episodes."""
    task, split = key.split("/")
    sampler = _sampler(task, split)
    drawn = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        for _ in range(2):
            episode = sampler.sample(rng)
            drawn.append(
                [
                    sampler.panel.iso_date(episode.start_day),
                    [sampler.panel.symbols[s] for s in episode.symbols],
                ]
            )
    assert drawn == REFERENCE[key]


@pytest.mark.parametrize("task", ["easy", "hard"])
def test_draws_match_numpy_integers_then_choice_without_replacement(task):
    """The compiled draw consumes a generator exactly like NumPy's own ``integers`` + ``choice``."""
    sampler = _sampler(task, "train")
    pools = [sampler._pools[a:b] for a, b in zip(sampler._offsets[:-1], sampler._offsets[1:])]
    for seed in range(200):
        ours, numpy_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        for _ in range(3):
            episode = sampler.sample(ours)
            j = numpy_rng.integers(len(sampler.start_days))
            chosen = numpy_rng.choice(pools[j], size=sampler.task.n_stocks, replace=False)
            assert episode.start_day == sampler.start_days[j]
            assert episode.symbols == tuple(sorted(chosen.tolist()))
        assert ours.random() == numpy_rng.random()  # and leaves the stream where NumPy would


def test_batch_draws_equal_one_at_a_time_draws_and_advance_the_same_generators():
    sampler = _sampler("medium", "val")
    one_at_a_time = [np.random.default_rng(seed) for seed in range(6)]
    batched = [np.random.default_rng(seed) for seed in range(6)]
    slots = np.array([4, 1, 5])
    start_days, symbols = sampler.sample_many(List(batched), slots)
    for row, slot in enumerate(slots):
        episode = sampler.sample(one_at_a_time[slot])
        assert (start_days[row], tuple(symbols[row].tolist())) == (episode.start_day, episode.symbols)
    for a, b in zip(one_at_a_time, batched):
        assert a.random() == b.random()


def test_the_draw_is_the_same_compiled_and_interpreted():
    sampler = _sampler("hard", "test")
    arrays = (sampler.start_days, sampler._offsets, sampler._pools)
    compiled, python = np.empty(25, dtype=np.int64), np.empty(25, dtype=np.int64)
    for seed in range(5):
        day = draw_episode(np.random.default_rng(seed), *arrays, compiled)
        assert draw_episode.py_func(np.random.default_rng(seed), *arrays, python) == day
        np.testing.assert_array_equal(compiled, python)
    start, symbols = np.empty(2, dtype=np.int64), np.empty((2, 25), dtype=np.int64)
    draw_episodes.py_func(List([np.random.default_rng(0)] * 2), np.array([0, 1]), *arrays, start, symbols)
    assert start[0] == draw_episode(np.random.default_rng(0), *arrays, compiled)
    assert [_mask.py_func(v) for v in (1, 30, 64)] == [1, 31, 127]
