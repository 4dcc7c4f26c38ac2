"""gradflowkit: measure how gradients flow through deep PyTorch networks.

The helper package of the book *Gradient Flow*. Modules, each with one concept:

- :mod:`~gradflowkit.seeding`: one seed switch (``GRADFLOW_SEED``) behind every random draw;
- :mod:`~gradflowkit.ensemble`: many ``DeepMLP`` nets with stacked weights, computed together;
- :mod:`~gradflowkit.ensemble_recurrent`: the same for recurrent regressors (RNN, LSTM, GRU);
- :mod:`~gradflowkit.trainer`: the one training loop: every member of an ensemble at once;
- :mod:`~gradflowkit.tasks`: what the trainer trains on (the digits, the adding problem);
- :mod:`~gradflowkit.member_optim`: SGD and Adam with a learning rate per ensemble member;
- :mod:`~gradflowkit.profiles`: backward-signal profiles of every member during training;
- :mod:`~gradflowkit.sweeps`: outcomes of learning-rate x seed sweeps (learned, silent, overflow);
- :mod:`~gradflowkit.activations`: activations and their closed-form derivatives;
- :mod:`~gradflowkit.initialization`: Gaussian (LeCun/Xavier/He), orthogonal, zero init;
- :mod:`~gradflowkit.nets`: ``DeepMLP``, a plain or residual deep fully-connected net;
- :mod:`~gradflowkit.gradients`: per-layer backward-signal and weight-gradient norms;
- :mod:`~gradflowkit.jacobians`: layer Jacobians, their products and singular values;
- :mod:`~gradflowkit.propagation`: per-layer forward and backward signal sizes, rates;
- :mod:`~gradflowkit.dead_units`: ReLU units that are never active on a data set;
- :mod:`~gradflowkit.matrices`: products of random matrices, non-normal transients;
- :mod:`~gradflowkit.overflow`: where a pass first overflows to inf and turns to NaN;
- :mod:`~gradflowkit.rnn`: a vanilla RNN and its backpropagation-through-time Jacobians;
- :mod:`~gradflowkit.clipping`: gradient clipping by global norm, per tensor, by value;
- :mod:`~gradflowkit.cliff`: Pascanu's one-unit recurrent net, its loss wall, descent paths;
- :mod:`~gradflowkit.batchnorm`: batch normalization by hand, weight-norm growth under SGD;
- :mod:`~gradflowkit.recurrent`: the adding problem, LSTM and GRU cells, gradient vs time;
- :mod:`~gradflowkit.spectral`: spectral norms of the weights during training, decay rates;
- :mod:`~gradflowkit.residual`: residual streams, the unrolled sum, branch Jacobians;
- :mod:`~gradflowkit.landscape`: loss-surface slices along filter-normalized directions;
- :mod:`~gradflowkit.paths`: a residual net's 2^n paths and the gradient per path length;
- :mod:`~gradflowkit.shattered`: dy/dx along a line of inputs and its autocorrelation;
- :mod:`~gradflowkit.data`: small real data sets that ship with installed packages;
- :mod:`~gradflowkit.training`: weight-change and accuracy measures of one net;
- :mod:`~gradflowkit.monitor`: hooks that record gradient flow while a model trains;
- :mod:`~gradflowkit.monitor_watch`: which activations a monitor watches, what it cannot see;
- :mod:`~gradflowkit.monitor_stats`: a record's statistics on the model's device, one transfer;
- :mod:`~gradflowkit.normfree`: Fixup, SkipInit, ReZero: recipes and their effect at init;
- :mod:`~gradflowkit.meanfield`: mean-field signal propagation, the edge of chaos;
- :mod:`~gradflowkit.transformer`: Transformer blocks with the LayerNorm before or after;
- :mod:`~gradflowkit.agc`: adaptive gradient clipping, unit by unit;
- :mod:`~gradflowkit.reference_models`: a ResNet-18 layout and a GPT-2-style Transformer;
- :mod:`~gradflowkit.diagnosis`: the book's symptom -> cause -> fix table, read from a monitor;
- :mod:`~gradflowkit.plotting`: the book's plots (computation never plots);
- :mod:`~gradflowkit.schematics`: schematic figures (Jacobian chain, residual block, paths);
- :mod:`~gradflowkit.explorer`: sliders over precomputed figures that work without a kernel;
- :mod:`~gradflowkit.plaintext`: TeX math as plain text (alt text, text reports);
- :mod:`~gradflowkit.reading`: reading time of a page; :mod:`~gradflowkit.roadmap`: the
  lessons and what each builds on.
"""

from .activations import ACTIVATIONS, activate, derivative, make_activation
from .clipping import clip_by_global_norm, clip_by_value, clip_grad_norm_, clip_per_tensor, global_norm
from .gradients import LayerProfile, input_gradients, layer_profile, parameter_grad_norms
from .initialization import INITS, init_linear_, init_std
from .jacobians import block_jacobians, chain, dense_layer_jacobian, module_jacobian, singular_values
from .nets import DeepMLP, NetConfig

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "INITS", "DeepMLP", "LayerProfile", "NetConfig", "activate",
    "block_jacobians", "chain", "clip_by_global_norm", "clip_by_value", "clip_grad_norm_",
    "clip_per_tensor", "dense_layer_jacobian", "derivative", "global_norm", "init_linear_",
    "init_std", "input_gradients", "layer_profile", "make_activation", "module_jacobian",
    "parameter_grad_norms", "singular_values",
]
