"""The book's figures: one function per picture, each returning a plotly ``Figure``, one module per chapter.

    from palmbook import viz
    viz.attention_map_figure(model.attention_maps(idx)[:, 0], tokens)

| module            | chapter                 | module           | chapter                             |
|-------------------|-------------------------|------------------|-------------------------------------|
| ``overview``      | 0 what PaLM is          | ``optimisers``   | 8 optimisers                        |
| ``tokenization``  | 1 tokenization          | ``training``     | 9 training (``live``: ``LivePlot``) |
| ``embeddings``    | 2 embeddings            | ``sampling``     | 10 generation                       |
| ``attention``     | 3 attention             | ``scale``        | 11 what scale buys                  |
| ``feed_forward``  | 4 the feed-forward layer| ``applications`` | 12 applications                     |
| ``loss``          | 5 output and loss       | ``efficiency``   | 13 efficiency                       |
| ``palm``          | 6 PaLM in one page      | ``scaling``      | 14 scaling up                       |
| ``backprop``      | 7 backpropagation       | ``common``       | palette, controls, shared charts    |

The modules are named as ``palmbook.scratch``'s are. Every interactive control is plotly's own (sliders, buttons,
dropdowns), so it keeps working on the static book page, with no kernel. The figures sit on top of the package:
they import its core modules, and nothing in the core imports them.
"""

from .applications import (
    confusion_figure,
    examples_table_figure,
    interval_figure,
    results_table,
    task_explorer,
    task_results_figure,
)
from .attention import attention_map_figure, rope_rotation_figure, softmax_temperature_figure
from .backprop import backward_pass_figure, descent_figure, memory_trace_figure
from .common import in_colab, in_notebook, show_with_script, svg_curves, timing_figure
from .efficiency import tradeoff_figure
from .embeddings import embedding_map_figure, logit_scale_figure
from .feed_forward import activation_figure, gated_unit_figure, swish_beta_figure
from .live import LivePlot
from .loss import logit_shift_figure, loss_and_log_z_figure, prediction_steps_figure
from .optimisers import clipping_figure, optimiser_paths_figure, seed_band_figure
from .overview import LANES, PALM_FAMILY, FamilyMember, family_tree_figure
from .palm import parameter_breakdown_figure
from .sampling import generation_speed_figure, repetition_figure, sampling_filters_figure
from .scale import cot_figure, curves_figure, emergence_figure, induction_figure, scaling_figure, shots_figure
from .scaling import compute_budget_figure
from .tokenization import TOKEN_KINDS, token_grid_figure, token_spans_html
from .training import lr_schedule_figure, spike_figure, training_runs_figure

__all__ = [
    "LANES",
    "PALM_FAMILY",
    "TOKEN_KINDS",
    "FamilyMember",
    "LivePlot",
    "activation_figure",
    "attention_map_figure",
    "backward_pass_figure",
    "clipping_figure",
    "compute_budget_figure",
    "confusion_figure",
    "cot_figure",
    "curves_figure",
    "descent_figure",
    "embedding_map_figure",
    "emergence_figure",
    "examples_table_figure",
    "family_tree_figure",
    "gated_unit_figure",
    "generation_speed_figure",
    "in_colab",
    "in_notebook",
    "induction_figure",
    "interval_figure",
    "logit_scale_figure",
    "logit_shift_figure",
    "loss_and_log_z_figure",
    "lr_schedule_figure",
    "memory_trace_figure",
    "optimiser_paths_figure",
    "parameter_breakdown_figure",
    "prediction_steps_figure",
    "repetition_figure",
    "results_table",
    "rope_rotation_figure",
    "sampling_filters_figure",
    "scaling_figure",
    "seed_band_figure",
    "shots_figure",
    "show_with_script",
    "softmax_temperature_figure",
    "spike_figure",
    "svg_curves",
    "swish_beta_figure",
    "task_explorer",
    "task_results_figure",
    "timing_figure",
    "token_grid_figure",
    "token_spans_html",
    "tradeoff_figure",
    "training_runs_figure",
]
