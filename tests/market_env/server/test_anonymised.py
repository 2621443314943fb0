"""With ``anonymize=True`` no server body (create, reset, step, state, batch) names a real symbol, an ISO
date, a real price or a real share count: checked against the same episodes played in the clear."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
ACTIONS = ["BUY {0} 0.6", "HOLD", "SELL {0} 0.5", "BUY {0} 0.2\nBUY {1} 0.3"]


def play_session(client, anonymize: bool, obs_mode: str) -> tuple[list[dict], list[dict]]:
    """Every body of one medium episode (create, steps, state, a reset), and the step infos."""
    created = client.post("/sessions", json={"task": "medium", "split": "test", "obs_mode": obs_mode,
                                             "seed": 4, "anonymize": anonymize})  # fmt: skip
    assert created.status_code == 201
    body = created.json()
    sid, names = body["session_id"], body["info"]["symbols"]
    bodies, infos = [body], []
    for day in range(30):
        if obs_mode == "text":
            action = ACTIONS[day % len(ACTIONS)].format(names[day % 10], names[(day + 3) % 10])
        else:
            action = np.where(np.arange(10) % 3 == day % 3, 0.8, -0.5).tolist()
        step = client.post(f"/sessions/{sid}/step", json={"action": action}).json()
        bodies.append(step)
        infos.append(step["info"])
        bodies.append(client.get(f"/sessions/{sid}/state").json())
    bodies.append(client.post(f"/sessions/{sid}/reset", json={"seed": 5}).json())
    client.delete(f"/sessions/{sid}")
    return bodies, infos


def play_batch(client, anonymize: bool) -> list[dict]:
    created = client.post("/batches", json={"task": "medium", "split": "test", "n_envs": 3, "seed": 4,
                                            "anonymize": anonymize, "encoding": "json"}).json()  # fmt: skip
    bodies = [created]
    for day in range(31):  # past the episode end: grades and the next episodes' names
        actions = np.where(np.arange(10) % 3 == day % 3, 0.8, -0.5)[None].repeat(3, axis=0).tolist()
        bodies.append(client.post(f"/batches/{created['session_id']}/step", json={"actions": actions}).json())
    bodies.append(client.post(f"/batches/{created['session_id']}/reset", json={"seed": 8}).json())
    return bodies


def secrets(clear_bodies: list[dict], clear_infos: list[dict]) -> tuple[set[str], set[float], set[int]]:
    """Real symbols, prices and nonzero share counts of the episode played in the clear."""
    symbols = set(clear_bodies[0]["info"]["symbols"])
    prices, shares = set(), set()
    for info in clear_infos:
        prices |= {round(p, 2) for p in info["prices"].values()}
        prices |= {round(t["price"], 2) for t in info["trades"]}
        shares |= {int(s) for s in info["positions"].values() if s} | {
            int(t["shares"]) for t in info["trades"]
        }
    return symbols, prices, shares


def leaks(text: str, symbols: set[str], prices: set[float], shares: set[int]) -> list[str]:
    found = [s for s in symbols if re.search(rf"(?<![A-Z_]){re.escape(s)}(?![A-Z_])", text)]
    found += ISO_DATE.findall(text)
    # whole numbers only: digit runs inside random hex session ids ("...a336f...") are not counts
    numbers = {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", text.replace(",", ""))}
    found += [f"price {p}" for p in prices if any(abs(n - p) < 0.006 for n in numbers if "." in str(n))]
    found += [f"shares {s}" for s in shares if float(s) in numbers and s > 100]
    return found


@pytest.mark.parametrize("obs_mode", ["text", "numeric"])  # the text observation prints prices and shares
def test_anonymised_session_bodies_reveal_no_symbol_date_price_or_share_count(client, obs_mode):
    clear, clear_infos = play_session(client, False, obs_mode)
    symbols, prices, shares = secrets(clear, clear_infos)
    assert symbols and prices and shares  # the clear episode traded: there is something to hide
    assert leaks(json.dumps(clear), symbols, prices, shares)  # the check finds them in the clear
    hidden, _ = play_session(client, True, obs_mode)
    assert leaks(json.dumps(hidden), symbols, prices, shares) == []
    states = [body for body in hidden if "positions" in body and "t" in body]
    assert states and all(state["state"] is None for state in states)  # no real start day or symbol index
    assert all(clear_state["state"] is not None for clear_state in clear if "t" in clear_state)


def test_anonymised_batch_bodies_reveal_no_symbol_or_date(client):
    clear, hidden = play_batch(client, False), play_batch(client, True)
    symbols = {s for names in clear[0]["info"]["symbols"] for s in names}
    assert ISO_DATE.search(json.dumps(clear)) and symbols
    assert leaks(json.dumps(hidden), symbols, set(), set()) == []
