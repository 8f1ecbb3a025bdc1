"""LivePlot, the notebook's live loss curve as a training callback: it records what the trainer hands it, draws in
Jupyter, VS Code and Colab (each shell faked here), stays silent in a terminal, and draws only on rank 0."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import IPython
import IPython.display
import plotly.graph_objects as go
import pytest
import torch

from palmbook.viz import LivePlot, in_colab, in_notebook
from palmbook.viz import live as live_module


# ---- the shells, as get_ipython() returns them
class ZMQInteractiveShell:
    """ipykernel's shell: JupyterLab / Notebook, and VS Code (whose Jupyter extension starts an ipykernel)."""

    def __init__(self) -> None:
        self.kernel = object()
        self.config = {"IPKernelApp": {"connection_file": "kernel-1234.json"}}


class Shell(ZMQInteractiveShell):
    """Colab's shell (google.colab._shell.Shell): a kernel shell under another class name."""


class TerminalInteractiveShell:
    """The ``ipython`` command in a terminal: no kernel, another app."""

    def __init__(self) -> None:
        self.config = {"TerminalIPythonApp": {"display_banner": False}}


class Recorder:
    """Stands in for IPython.display.display: keeps what was shown, and what each display_id update put there."""

    def __init__(self) -> None:
        self.shown: list = []
        self.updates: list[dict] = []

    def __call__(self, obj, raw: bool = False, display_id: bool | None = None):
        self.shown.append(obj)
        return SimpleNamespace(update=lambda bundle, raw=False: self.updates.append(bundle)) if display_id else None

    def drew(self) -> bool:
        return bool(self.shown or self.updates)


def _no_widgets(*args, **kwargs):
    raise ImportError("FigureWidget needs anywidget")  # what plotly >= 6 raises without the widget stack


@pytest.fixture
def shell(monkeypatch):
    """Pretend to run in a given shell: shell("jupyter" | "vscode" | "colab" | "terminal" | "python").

    Returns the display recorder. The widget stack is absent unless a test puts a FigureWidget back.
    """
    recorder = Recorder()
    monkeypatch.setattr(IPython.display, "display", recorder)
    monkeypatch.setattr(live_module.go, "FigureWidget", _no_widgets)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)

    def enter(name: str) -> Recorder:
        if name == "vscode":
            monkeypatch.setenv("VSCODE_PID", "4242")
        if name == "colab":
            monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        make = {"jupyter": ZMQInteractiveShell, "vscode": ZMQInteractiveShell, "colab": Shell,
                "terminal": TerminalInteractiveShell, "python": lambda: None}[name]  # fmt: skip
        current = make()
        monkeypatch.setattr(IPython, "get_ipython", lambda: current)
        return recorder

    return enter


def trainer(steps: int = 4, log_every: int = 2, rank: int = 0) -> SimpleNamespace:
    """The parts of a Trainer that the callback reads."""
    return SimpleNamespace(step=0, rank=rank, config=SimpleNamespace(steps=steps, log_every=log_every))


def run(plot: LivePlot, t: SimpleNamespace, eval_every: int = 2) -> None:
    """Drive the hooks as Trainer.fit does: a step record every step, an evaluation every eval_every, then the end."""
    for step in range(1, t.config.steps + 1):
        t.step = step
        plot.on_step_end(t, {"step": step, "loss": 10.0 - step})
        if step % eval_every == 0:
            plot.on_eval(t, {"step": step, "val_loss": 20.0 - step})
    plot.on_fit_end(t, SimpleNamespace())


# ---- which shells count as notebooks
@pytest.mark.parametrize(
    ("name", "expected"),
    [("jupyter", True), ("vscode", True), ("colab", True), ("terminal", False), ("python", False)],
)
def test_notebooks_are_told_apart_from_terminals_by_what_the_shell_is(shell, name, expected):
    shell(name)
    assert in_notebook() is expected


def test_colab_counts_as_a_notebook_whatever_its_shell_class_is_called(shell, monkeypatch):
    shell("colab")
    monkeypatch.setattr(IPython, "get_ipython", lambda: SimpleNamespace())  # no kernel, no config to go by
    assert in_colab() and in_notebook()


def test_a_kernel_app_in_the_config_is_enough_without_a_kernel_attribute(shell, monkeypatch):
    shell("python")
    monkeypatch.setattr(IPython, "get_ipython", lambda: SimpleNamespace(config={"IPKernelApp": {}}))
    assert in_notebook()


def test_a_script_that_never_imported_ipython_is_not_a_notebook(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not in_notebook()


# ---- what it records
def test_it_records_the_train_loss_every_log_every_steps_and_the_last_and_every_validation_loss(shell):
    shell("terminal")
    plot = LivePlot()
    run(plot, trainer(steps=5, log_every=2))
    assert plot.points["train"] == ([2, 4, 5], [8.0, 6.0, 5.0])
    assert plot.points["validation"] == ([2, 4], [18.0, 16.0])


def test_every_overrides_the_runs_log_every(shell):
    shell("terminal")
    plot = LivePlot(every=1)
    run(plot, trainer(steps=3, log_every=100))
    assert plot.points["train"][0] == [1, 2, 3]
    with pytest.raises(ValueError, match="every must be"):
        LivePlot(every=0)


def test_a_rollback_drops_the_points_of_the_undone_steps(shell):
    shell("terminal")
    plot, t = LivePlot(every=1), trainer(steps=6)
    for step in range(1, 5):
        t.step = step
        plot.on_step_end(t, {"loss": float(step)})
    plot.on_event(t, {"event": "rollback", "spike_step": 4, "to_step": 2})
    t.step = 3
    plot.on_step_end(t, {"loss": 0.5})
    assert plot.points["train"] == ([1, 2, 3], [1.0, 2.0, 0.5])


# ---- where it draws
@pytest.mark.parametrize("name", ["jupyter", "vscode", "colab"])
def test_it_draws_in_notebooks_and_the_last_drawing_holds_the_whole_curve(shell, name):
    recorder = shell(name)
    plot = LivePlot(min_interval_s=3600)  # one drawing at the first point, then only the final one
    run(plot, trainer(steps=4, log_every=2))
    assert len(recorder.shown) == 1 and len(recorder.updates) == 1  # drawn at step 2, redrawn once at the end
    final = recorder.updates[-1]
    if name == "colab":  # Colab draws HTML only, with plotly.js from its CDN
        assert "application/vnd.plotly.v1+json" not in final
        assert "cdn.plot.ly" in final["text/html"] and "[2,4]" in final["text/html"].replace(" ", "")
    else:
        train, validation = final["application/vnd.plotly.v1+json"]["data"]
        assert (list(train["x"]), list(train["y"])) == ([2, 4], [8.0, 6.0])
        assert (list(validation["x"]), list(validation["y"])) == ([2, 4], [18.0, 16.0])


def test_with_the_widget_stack_jupyter_gets_a_figure_widget_updated_in_place(shell, monkeypatch):
    recorder = shell("jupyter")

    class FigureWidget(go.Figure):  # the widget's part that matters here: a figure, displayed once
        pass

    monkeypatch.setattr(live_module.go, "FigureWidget", FigureWidget)
    plot = LivePlot()
    run(plot, trainer(steps=4, log_every=2))
    assert recorder.shown == [plot.figure] and isinstance(plot.figure, FigureWidget) and not recorder.updates
    assert list(plot.figure.data[0].x) == [2, 4]


@pytest.mark.parametrize("name", ["terminal", "python"])
def test_it_stays_silent_outside_notebooks_but_still_records(shell, name):
    recorder = shell(name)
    plot = LivePlot()
    run(plot, trainer())
    assert not recorder.drew() and plot.figure is None
    assert plot.points["train"][0] == [2, 4]


def test_only_rank_0_draws_or_records(shell):
    recorder = shell("jupyter")
    plot = LivePlot()
    run(plot, trainer(rank=1))
    assert not recorder.drew() and plot.points["train"] == ([], [])


def test_draw_false_never_draws_even_in_a_notebook(shell):
    recorder = shell("jupyter")
    run(LivePlot(draw=False), trainer())
    assert not recorder.drew()


def test_a_failing_display_turns_the_plot_off_instead_of_stopping_training(shell, monkeypatch):
    shell("jupyter")

    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("front end went away")

    monkeypatch.setattr(IPython.display, "display", broken)
    plot = LivePlot(min_interval_s=0)  # it would redraw at every point
    run(plot, trainer())  # must not raise
    assert len(calls) == 1 and plot.points["train"][0] == [2, 4]


# ---- with the real trainer
def test_the_trainer_hands_it_the_losses_it_logs(shell):
    from palmbook import PaLM, PaLMConfig
    from palmbook.train import TrainConfig, Trainer

    shell("terminal")
    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny", max_seq_len=8))
    blocks = torch.randint(0, 1024, (16, 9), generator=torch.Generator().manual_seed(1))
    config = TrainConfig(steps=4, batch_size=4, precision="fp32", device="cpu", progress=False, log_every=2,
                         eval_every=2, eval_batches=1)  # fmt: skip
    plot = LivePlot()
    result = Trainer(model, config, blocks, blocks[:4], callbacks=[plot]).fit()
    steps, losses = plot.points["train"]
    assert steps == [2, 4] and losses == [r["loss"] for r in result.history if r["step"] in (2, 4)]
    assert plot.points["validation"][0] == [e["step"] for e in result.evals] == [2, 4]
