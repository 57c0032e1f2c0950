"""Decoding searches.

- :mod:`speechlobes.decoders.ctc`: CTC greedy and prefix beam search.
- :mod:`speechlobes.decoders.seq2seq`: greedy, sampling and beam search for any autoregressive
  model that offers ``step(tokens, state)`` and ``reorder(state, rows)``.

Import the submodule you need; this package imports nothing eagerly.
"""
