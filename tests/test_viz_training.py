"""Chapter 9's figures besides the schedule, runs and spike figures (tests/test_viz_training_efficiency.py)."""

from palmbook.viz.training import precision_figure


def test_precision_figure_draws_each_runs_loss_and_a_box_of_its_speeds_past_the_first_step():
    recs = {
        p: [{"step": k, "loss": 5.0 - k / 10, "tokens_per_s": 100.0 * k} for k in (1, 2, 3)] for p in ("fp32", "bf16")
    }
    fig = precision_figure(recs, "t")
    assert [t.type for t in fig.data] == ["scatter", "box", "scatter", "box"]
    assert list(fig.data[0].y) == [4.9, 4.8, 4.7] and list(fig.data[1].y) == [200.0, 300.0]  # step 1 warms up
