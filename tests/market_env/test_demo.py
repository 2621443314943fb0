"""The demo CLI runs end to end on the embedded data."""

from market_env import demo


def test_demo_plays_every_task_and_prints_grades(capsys):
    demo.main(["--split", "val", "--seed", "1"])
    out = capsys.readouterr().out
    assert out.startswith("Day 1 of 20")
    for task in ("easy", "medium", "hard"):
        assert f"\n{task} " in out
    assert out.count("score 0.") + out.count("score 1.") == 3
